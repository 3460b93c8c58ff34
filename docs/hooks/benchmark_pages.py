"""MkDocs hook: publishes the benchmark reports from benchmarks/ as pages of the site.

The reports are written by the benchmark scripts next to their code (benchmarks/*.md and the
chart), so the site takes them from there instead of keeping copies that would drift.

The pages link to the reports by their place in the repository (``../../benchmarks/X.md``
from ``docs/design/``), so the links work where the Markdown is read as it is (GitHub, an
editor); the site serves the reports at ``benchmarks/`` inside it, one level up less, and
``on_page_markdown`` rewrites the links to that.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
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


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    depth = len(PurePosixPath(page.file.src_uri).parent.parts)
    in_repo = "../" * (depth + 1) + "benchmarks/"
    in_site = "../" * depth + "benchmarks/"
    return markdown.replace(f"]({in_repo}", f"]({in_site}")
