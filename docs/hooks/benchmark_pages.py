"""MkDocs hook: publishes the benchmark reports from benchmarks/ as pages of the site.

The reports are written by the benchmark scripts next to their code (benchmarks/*.md and the
chart), so the site takes them from there instead of keeping copies that would drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPORTS = ("RESULTS.md", "RESULTS-uvloop.md", "RESULTS-prefetch.md", "RESULTS-issue17.md",
           "PROFILE.md", "RELIABILITY.md", "ratios.png", "ratios-prefetch.png",
           "ratios-issue17.png", "soak.png")


def on_files(files: Files, config: Any) -> Files:
    bench = Path(config["docs_dir"]).parent / "benchmarks"
    for name in REPORTS:
        files.append(File.generated(config, f"benchmarks/{name}", abs_src_path=str(bench / name)))
    return files
