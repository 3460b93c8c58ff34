"""The soak benchmark (benchmarks/soak.py): its verdict, its RESULTS.md section, and a short
run end to end through ``python -m benchmarks.compare --soak``. No timing is asserted: the
figures are the benchmark's business; these check that it runs, measures and judges."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, server_binary

from benchmarks import soak_growth, soak_report

MiB = 1024 * 1024


def series(n: int, f: object) -> tuple[list[float], list[float], list[int]]:
    ts = [float(i) for i in range(1, n + 1)]
    return ts, [f(t) for t in ts], [500] * n  # type: ignore[operator]


def fake_record() -> dict[str, Any]:
    """A record as benchmarks/soak.py writes it, with 30 samples of a quiet run."""
    sample = {"t": 0.0, "dt": 1.0, "added": 100, "done": 100, "failed_attempts": 5,
              "throughput": 100.0, "p50_ms": 1.0, "p99_ms": 5.0,
              "by_kind": {"scheduled": {"n": 1, "p50_ms": 2.0, "p99_ms": 2.0}},
              "redis_used_memory": 3 * MiB, "redis_cpu_s": 0.1, "worker_rss": [40 * MiB],
              "producer_rss": 40 * MiB, "backlog": 10, "events_len": 1000}
    return {"config": {"seconds": 30.0, "sample_every": 1.0, "rate": 100.0, "workers": 1,
                       "concurrency": 50, "command": "python -m benchmarks.compare --soak"},
            "mix": {"job_ms": [1, 50], "fail_rate": 0.05, "attempts": 3,
                    "backoff": {"delay": 0.05}, "grouped": 0.3, "groups": 200,
                    "group_concurrency": 2, "delayed": 0.05},
            "machine": {}, "started": "now", "verdict": "",
            "samples": [{**sample, "t": float(i + 1)} for i in range(30)]}


def test_flat_memory_is_bounded() -> None:
    ts, ys, done = series(60, lambda t: 50 * MiB + (t % 3) * 100_000)
    j = soak_growth.judge("worker_rss[0]", ts, ys, done)
    assert j.judged and not j.grows
    assert soak_growth.verdict([j])[0] is True


def test_memory_that_levels_off_is_bounded() -> None:
    # Fills during the first third (a cache, retention sets reaching their caps), then flat.
    ts, ys, done = series(60, lambda t: 4 * MiB + min(t, 15) * MiB)
    assert not soak_growth.judge("redis_used_memory", ts, ys, done).grows


def test_a_leak_grows() -> None:
    # 100 bytes per job at 500 jobs per 1-second sample, for 5 minutes: 5 MB between the
    # medians of the last two thirds, above the RSS floor (2 MiB).
    ts, ys, done = series(300, lambda t: 40 * MiB + t * 500 * 100)
    j = soak_growth.judge("worker_rss[1]", ts, ys, done)
    assert j.grows and j.growth > 0
    ok, line = soak_growth.verdict([j])
    assert not ok and line.startswith("soak verdict: GROWS") and "worker_rss[1]" in line


def test_a_growing_backlog_grows() -> None:
    ts, ys, done = series(60, lambda t: 30 * t)
    assert soak_growth.judge("backlog", ts, ys, done).grows


def test_too_few_samples_are_not_judged() -> None:
    j = soak_growth.judge("redis_used_memory", [1.0, 2.0, 3.0], [1.0, 2 * MiB, 9 * MiB], [1, 1, 1])
    assert not j.judged and not j.grows
    assert "NOT JUDGED" in soak_growth.verdict([j])[1]


def test_a_new_soak_replaces_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nthe comparison tables\n")
    record = fake_record()
    for verdict in ("soak verdict: BOUNDED: run-one", "soak verdict: BOUNDED: run-two"):
        record["verdict"] = verdict
        soak_report.update_results(results, record, tmp_path / "soak.png")
    text = results.read_text()
    assert text.startswith("# Results\n\nthe comparison tables\n")
    assert text.count(soak_report.START) == 1 and text.count(soak_report.END) == 1
    assert "run-two" in text and "run-one" not in text
    assert soak_report.kept_section(text).endswith(soak_report.END)


@pytest.mark.slow  # opt-in (--run-slow): the default run stays under 10 minutes
def test_soak_runs_end_to_end(tmp_path: Path) -> None:
    server = server_binary()
    cmd = [sys.executable, "-m", "benchmarks.compare", "--soak", "--soak-seconds", "5",
           "--soak-rate", "200", "--soak-out", str(tmp_path / "soak.json"),
           "--soak-plot", str(tmp_path / "soak.png"), "--soak-results", str(tmp_path / "RESULTS.md"),
           *(["--redis-server", server] if server else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    # A 5-second run may judge either way (its warm-up is short); the exit status must match.
    assert last.startswith("soak verdict: ")
    assert (proc.returncode == 1) == last.startswith("soak verdict: GROWS")

    record = json.loads((tmp_path / "soak.json").read_text())
    samples = record["samples"]
    assert len(samples) >= 10
    assert record["verdict"] == last and record["status"] == proc.returncode
    assert sum(s["done"] for s in samples) > 500
    assert sum(s["added"] for s in samples) > 500
    assert sum(s["failed_attempts"] for s in samples) > 0
    kinds = {k for s in samples for k in s["by_kind"]}
    assert {"fresh", "delayed", "retry", "scheduled"} <= kinds
    assert all(s["redis_used_memory"] > 0 for s in samples)
    assert all(len(s["worker_rss"]) == 2 for s in samples)
    if sys.platform == "linux":
        assert all(r and r > 0 for s in samples for r in s["worker_rss"])
    assert {j["series"] for j in record["judgements"]} >= {
        "redis_used_memory", "worker_rss[0]", "worker_rss[1]", "backlog", "events_len"}

    section = (tmp_path / "RESULTS.md").read_text()
    assert section.startswith(soak_report.START) and last in section
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "soak.png").stat().st_size > 10_000
