"""The README's first command, in its short (CI) mode, on a machine with no Redis running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from minique.server import free_port


def test_demo_short_runs_end_to_end(tmp_path: Path) -> None:
    # A port where nothing answers: the demo must start its own Redis.
    env = {**os.environ, "MINIQUE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for suffix in ("SPAPI_ENDPOINT", "ADS_ENDPOINT", "LWA_TOKEN_URL", "ADS_TOKEN_URL"):
        env.pop("AMAZON_" + suffix, None)
    done = subprocess.run([sys.executable, "-m", "processors.demo", "--short"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "starting a private one" in out
    assert "queue stats" in out and "manual-sync" in out
    for line in out.splitlines():
        if line.lstrip().startswith(("data-sync ", "manual-sync ")) and "%" not in line:
            fields = line.split()
            assert fields[4] == "0", line  # failed column
    reports = [Path(line.strip()) for line in out.splitlines() if line.strip().endswith(".html")]
    # Seller 1 sells in the US and Canada: a report per marketplace.
    assert len(reports) == 3 and all(p.is_file() and p.is_relative_to(tmp_path) for p in reports)
    assert "webhooks received" in out and "0 with a valid signature" not in out
