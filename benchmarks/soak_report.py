"""The soak's plot and its section of benchmarks/RESULTS.md (from the record soak.py writes).

The section sits between two markers, so a later soak replaces it and
``benchmarks.compare`` keeps it when it rewrites the rest of RESULTS.md.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

START = "<!-- soak:start (written by benchmarks/soak.py; kept by benchmarks.compare) -->"
END = "<!-- soak:end -->"
MiB = 1024 * 1024


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def duration(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} minutes"


def write_plot(record: dict[str, Any], path: Path) -> str:
    """Four panels over time; returns "" or why no plot was written."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    samples = record["samples"]
    cfg = record["config"]
    ts = [s["t"] / 60 for s in samples]
    end = ts[-1] if ts else 0.0
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    thr, lat, mem, rss = axes
    thr.plot(ts, [s["added"] / s["dt"] for s in samples], label="added/s", linewidth=1)
    thr.plot(ts, [s["throughput"] for s in samples], label="completed/s", linewidth=1)
    thr.set_ylabel("jobs/s")
    thr.set_ylim(bottom=0)
    lat.plot(ts, [s["p50_ms"] for s in samples], label="p50", linewidth=1)
    lat.plot(ts, [s["p99_ms"] for s in samples], label="p99", linewidth=1)
    sched = [s["by_kind"].get("scheduled", {}).get("p99_ms", float("nan")) for s in samples]
    lat.plot(ts, sched, ".", markersize=3, label="scheduler firings (p99 of the sample)")
    lat.set_yscale("log")
    lat.set_ylabel("pickup latency, ms")
    mem.plot(ts, [s["redis_used_memory"] / MiB for s in samples], label="Redis used_memory",
             linewidth=1)
    mem.set_ylabel("MiB")
    mem.set_ylim(bottom=0)
    for i in range(len(samples[0]["worker_rss"]) if samples else 0):
        rss.plot(ts, [(s["worker_rss"][i] or 0) / MiB for s in samples], label=f"worker {i} RSS",
                 linewidth=1)
    rss.plot(ts, [(s["producer_rss"] or 0) / MiB for s in samples], label="producer RSS",
             linewidth=1, linestyle="--")
    rss.set_ylabel("MiB")
    rss.set_ylim(bottom=0, top=rss.get_ylim()[1] * 1.3)  # room for the legend
    rss.set_xlabel("minutes")
    for ax in axes:
        # The thirds the verdict compares (the first is warm-up).
        ax.axvspan(end / 3, 2 * end / 3, color="0.93", zorder=0)
        ax.axvspan(2 * end / 3, end, color="0.85", zorder=0)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Soak: {duration(cfg['seconds'])}, {cfg['rate']:g} jobs/s offered, {cfg['workers']} worker "
        f"processes x {cfg['concurrency']}\n{record['verdict'].split(':')[1].strip()} "
        "(middle third light grey vs last third dark grey)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return ""


def _third(samples: list[dict[str, Any]], which: int) -> list[dict[str, Any]]:
    end = samples[-1]["t"] if samples else 0.0
    return [s for s in samples if which * end / 3 <= s["t"] < (which + 1) * end / 3
            or (which == 2 and s["t"] == end)]


def _med(values: list[Any]) -> float:
    vals = _finite(values)
    return statistics.median(vals) if vals else float("nan")


def _range(values: list[Any], fmt: str) -> str:
    vals = _finite(values)
    if not vals:
        return "-"
    return f"{format(statistics.median(vals), fmt)} ({format(min(vals), fmt)}-{format(max(vals), fmt)})"


def section(record: dict[str, Any], plot: Path, results: Path, plot_note: str = "") -> str:
    """The Markdown section for RESULTS.md, markers included."""
    cfg = record["config"]
    mix = record["mix"]
    samples = record["samples"]
    m = record.get("machine", {})
    lines = [START, "## Soak: mixed load over time (minique only)", ""]
    add = lines.append
    add(f"Generated {record['started']} by `{cfg['command']}`: {duration(cfg['seconds'])}, "
        f"a sample every {cfg['sample_every']:g} s. One private redis-server "
        f"({m.get('redis-server', '?').split(' ')[0]}) on 127.0.0.1; one producer process adding "
        f"{cfg['rate']:g} jobs/s on a steady clock; {cfg['workers']} worker processes at "
        f"concurrency {cfg['concurrency']}. Jobs sleep {mix['job_ms'][0]}-{mix['job_ms'][1]} ms; "
        f"{mix['fail_rate']:.0%} of attempts fail and are retried ({mix['attempts']} attempts, "
        f"exponential backoff from {mix['backoff']['delay'] * 1000:g} ms with jitter); "
        f"{mix['grouped']:.0%} of jobs belong to one of {mix['groups']} groups (at most "
        f"{mix['group_concurrency']} active per group); {mix['delayed']:.0%} are delayed; a job "
        "scheduler fires every second. Pickup latency is from the moment a job became ready "
        "(its add, its delay or backoff ending, its fire time) to its processor starting. "
        f"Machine: {m.get('CPU', '?')}, {m.get('cores (os.cpu_count)', '?')} cores, shared; "
        f"load average at start {m.get('load average at start', '?')}.")
    add("")
    add("| | middle third | last third |")
    add("|---|---|---|")
    mid, last = _third(samples, 1), _third(samples, 2)

    def row(label: str, key: str, fmt: str, scale: float = 1.0) -> None:
        cells = []
        for part in (mid, last):
            vals = [None if s[key] is None else s[key] / scale for s in part]
            cells.append(_range(vals, fmt))
        add(f"| {label} | {cells[0]} | {cells[1]} |")

    row("completed jobs/s, median (range of samples)", "throughput", ",.0f")
    row("pickup p50, ms", "p50_ms", ".2f")
    row("pickup p99, ms", "p99_ms", ".2f")
    row("Redis used_memory, MiB", "redis_used_memory", ".2f", MiB)
    for i in range(len(samples[0]["worker_rss"]) if samples else 0):
        cells = [_range([(s["worker_rss"][i] or 0) / MiB for s in part], ".1f") for part in (mid, last)]
        add(f"| worker {i} RSS, MiB | {cells[0]} | {cells[1]} |")
    row("backlog (waiting + active + delayed)", "backlog", ".0f")
    row("events stream entries", "events_len", ".0f")
    cpu = [(s["redis_cpu_s"], sum(x["done"] for x in samples[: i + 1])) for i, s in enumerate(samples)]
    if len(cpu) > 1 and cpu[-1][1] > 0:
        add(f"| Redis CPU per completed job, whole run | {cpu[-1][0] / cpu[-1][1] * 1e6:.0f} µs | |")
    sched = [s["by_kind"]["scheduled"]["p99_ms"] for s in samples if "scheduled" in s["by_kind"]]
    add(f"| scheduler firings: pickup, median of sample p99s (max) | {_med(sched):.1f} ms "
        f"({max(_finite(sched), default=float('nan')):.1f}) | |")
    total = sum(s["done"] for s in samples)
    failed = sum(s["failed_attempts"] for s in samples)
    add(f"| jobs completed / attempts failed, whole run | {total:,} / {failed:,} | |")
    add("")
    commands = record.get("redis_commands") or []
    busy = sum(c["usec"] for c in commands)
    if busy and total:
        add("Redis commands over the whole run (INFO commandstats: calls and µs per completed "
            "job; µs are wall time inside the command, a script's include the calls it makes, "
            "and a loaded machine inflates them, so read the calls): " + ", ".join(
                f"{c['command']} {c['usec'] / busy:.0%} ({c['calls'] / total:.2f} calls, "
                f"{c['usec'] / total:.0f} µs)" for c in commands[:6]) + ".")
        add("")
    add(f"**{record['verdict']}**")
    add("")
    add("The verdict compares the medians of the middle and last thirds of the run (the first "
        "third is warm-up); a series grows when it rose by more than its noise floor and by "
        "more than its allowance per job processed (benchmarks/soak_growth.py).")
    add("")
    if plot_note:
        add(f"(plot: {plot_note})")
    else:
        add(f"![soak: throughput, pickup latency, Redis memory and worker RSS over time]"
            f"({os.path.relpath(plot, results.parent)})")
    add("")
    add(END)
    return "\n".join(lines)


def kept_section(text: str) -> str:
    """The soak section of an existing RESULTS.md, markers included ("" when none)."""
    start = text.find(START)
    end = text.find(END, start)
    if start < 0 or end < 0:
        return ""
    return text[start:end + len(END)]


def update_results(results: Path, record: dict[str, Any], plot: Path, plot_note: str = "") -> None:
    """Replaces the soak section of ``results`` (or appends one)."""
    new = section(record, plot, results, plot_note)
    text = results.read_text() if results.exists() else ""
    old = kept_section(text)
    if old:
        text = text.replace(old, new)
    elif text:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    else:
        text = new + "\n"
    results.write_text(text)
