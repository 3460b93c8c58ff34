"""Run every scenario for every system against one private redis-server; write RESULTS.md.

    python -m benchmarks.compare                 # full run, 3 repetitions, <= 20 min
    python -m benchmarks.compare --quick         # before a hot-path change: 1-2 minutes
    python -m benchmarks.compare --systems minique,bullmq-node --n 50000
    python -m benchmarks.compare --soak          # 10 minutes of mixed load (benchmarks/soak.py)

``--quick`` runs minique and BullMQ-Node (when benchmarks/node/node_modules exists) once per
scenario, prints the ratios, and writes its report to benchmarks/.quick/ (not committed), so
the published RESULTS.md and chart stay as the full run left them. Run it on main and on
your branch, and compare the ratio column: a quick run is one sample each, so a change
within about 20% is noise here; confirm a real one with ``--systems minique,bullmq-node``
(3 alternated repetitions).

Each measurement is a fresh subprocess of the system's own runtime (node, the peers' venv,
the arq venv, or the main venv for minique) so that no system's pins or event loop leak into
another. Install those runtimes once with ``bash benchmarks/setup.sh``; matplotlib must be in
the main venv for the chart. Systems that cannot run here are skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import soak, soak_report
from benchmarks.redis_server import RedisServer, RespClient, parse_info

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PEERS_PY = BENCH / ".venv-peers" / "bin" / "python"
ARQ_PY = BENCH / ".venv-peers-arq" / "bin" / "python"
# The repository's venv; in a git worktree without one, the venv running the harness.
MAIN_PY = ROOT / ".venv" / "bin" / "python"
if not MAIN_PY.exists():
    MAIN_PY = Path(sys.executable)
NODE_SCRIPT = BENCH / "node" / "bench.mjs"
BASELINE = "bullmq-node"
QUICK_SYSTEMS = ("minique", BASELINE)
QUICK_DIR = BENCH / ".quick"

ADD_SCENARIOS = frozenset({"add_one", "add_bulk", "add_concurrent"})


@dataclass(frozen=True)
class System:
    key: str
    label: str
    runtime: str  # "node" or a python path
    module: str  # python module, or the node script
    rate_hint: float  # rough jobs/s, only to size the first (warm-up) run
    variant: str = ""
    skip_scenarios: frozenset[str] = frozenset()
    skip_reason: str = ""
    min_redis: tuple[int, int] | None = None
    min_redis_why: str = ""
    setup: str = "bash benchmarks/setup.sh"

    def command(self) -> list[str]:
        if self.runtime == "node":
            return ["node", self.module]
        cmd = [self.runtime, "-m", self.module]
        return cmd + (["--variant", self.variant] if self.variant else [])


def _py(path: Path) -> str:
    return str(path)


SYSTEMS: list[System] = [
    System("minique", "minique", _py(MAIN_PY), "benchmarks.systems.minique_system", 10000),
    System("bullmq-node", "BullMQ (Node)", "node", str(NODE_SCRIPT), 10000),
    System("bullmq-py", "bullmq (Python)", _py(PEERS_PY), "benchmarks.systems.bullmq_py_system", 2000),
    System("arq", "arq (poll 10 ms)", _py(ARQ_PY), "benchmarks.systems.arq_system", 1000),
    System("saq", "SAQ", _py(PEERS_PY), "benchmarks.systems.saq_system", 1200),
    System(
        "rq",
        "RQ SimpleWorker",
        _py(PEERS_PY),
        "benchmarks.systems.rq_system",
        400,
        variant="simple",
    ),
    System(
        "rq-fork",
        "RQ Worker (fork)",
        _py(PEERS_PY),
        "benchmarks.systems.rq_system",
        40,
        variant="fork",
        skip_scenarios=ADD_SCENARIOS,
        skip_reason="same producer as RQ SimpleWorker",
    ),
    System("streaq", "streaq", _py(PEERS_PY), "benchmarks.systems.streaq_system", 800),
    System(
        "chasquimq",
        "chasquimq",
        _py(PEERS_PY),
        "benchmarks.systems.chasquimq_system",
        20000,
        min_redis=(8, 6),
        min_redis_why="its engine issues XADD ... IDMP and XACKDEL",
    ),
]
EXTRA_SYSTEMS: list[System] = [
    # The same worker without prefetch: one fetch per free slot, nothing held ahead.
    System(
        "minique-noprefetch",
        "minique (no prefetch)",
        _py(MAIN_PY),
        "benchmarks.systems.minique_system",
        10000,
        variant="noprefetch",
    ),
    # `minique worker` runs on uvloop when it is installed (and uvicorn serves apps on it);
    # this shows what that adds, to the worker and to the producer.
    System(
        "minique-uvloop",
        "minique (on uvloop)",
        _py(MAIN_PY),
        "benchmarks.systems.minique_system",
        10000,
        variant="uvloop",
    ),
    # BullMQ keeps every completed job by default; this one keeps minique's default (the last
    # 1,000, none older than 24 h), so that both delete the jobs they finish.
    System(
        "bullmq-node-retention",
        "BullMQ (Node), last 1,000 completed kept",
        "node",
        str(NODE_SCRIPT),
        10000,
        variant="retention",
        skip_scenarios=ADD_SCENARIOS,
        skip_reason="same producer as BullMQ (Node)",
    ),
    System(
        "arq-default",
        "arq (default poll 0.5 s)",
        _py(ARQ_PY),
        "benchmarks.systems.arq_system",
        2,
        variant="default",
    ),
]


@dataclass(frozen=True)
class Scenario:
    key: str
    runner: str
    title: str
    concurrency: int = 1
    procs: int = 1
    latency: bool = False


SCENARIOS: list[Scenario] = [
    Scenario("add_one", "add_one", "Add one by one (awaited, one producer)"),
    Scenario("add_bulk", "add_bulk", "Add in bulk (chunks of 500)"),
    Scenario("add_concurrent", "add_concurrent", "Add from 50 concurrent tasks"),
    Scenario("process_c1", "process", "Process queued jobs: 1 worker process, concurrency 1"),
    Scenario(
        "process_c50",
        "process",
        "Process queued jobs: 1 worker process, concurrency 50",
        concurrency=50,
    ),
    Scenario(
        "process_2p",
        "process",
        "Process queued jobs: 2 worker processes, concurrency 50 each",
        concurrency=50,
        procs=2,
    ),
    Scenario(
        "latency",
        "latency",
        "Pickup latency: single jobs at 200/s to an idle worker (concurrency 50)",
        concurrency=50,
        latency=True,
    ),
    Scenario(
        "mixed",
        "mixed",
        "Mixed load: add from 50 tasks while 1 worker runs 10 ms jobs at concurrency 100",
    ),
]


@dataclass
class Mode:
    reps: int
    warmup: bool
    target_s: float
    n_min: int
    n_max: int
    latency_s: float
    timeout_s: float
    budget_s: float


@dataclass
class Cell:
    system: System
    scenario: Scenario
    results: list[dict[str, Any]] = field(default_factory=list)
    na: str = ""
    errors: list[str] = field(default_factory=list)
    est_rate: float = 0.0

    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("ok")]


# ------------------------------------------------------------------------------ discovery


def probe(system: System, redis_version: tuple[int, int]) -> tuple[dict[str, str] | None, str]:
    """The system's versions, or why it is skipped."""
    if system.min_redis and redis_version < system.min_redis:
        need = ".".join(map(str, system.min_redis))
        have = ".".join(map(str, redis_version))
        return None, (
            f"needs Redis >= {need} ({system.min_redis_why}); this redis-server is {have}. "
            "Point --redis-server at a newer binary to include it."
        )
    if system.runtime != "node" and not Path(system.runtime).exists():
        return None, f"{system.runtime} missing; run `{system.setup}`"
    if system.runtime == "node" and not (BENCH / "node" / "node_modules" / "bullmq").exists():
        return None, "benchmarks/node/node_modules missing; run `npm install` in benchmarks/node"
    try:
        proc = subprocess.run(
            [*system.command(), "versions"], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot start: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        return None, lines[-1][:300]
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, f"unreadable versions output: {proc.stdout[-200:]!r}"


def machine_info(redis: RedisServer) -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "CPU": cpu,
        "cores (os.cpu_count)": str(os.cpu_count()),
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python (harness)": platform.python_version(),
        "Node": node or "?",
        "redis-server": f"{redis.version()} (private, --save '' --appendonly no, 127.0.0.1)",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --------------------------------------------------------------------------------- running


def choose_n(cell: Cell, mode: Mode, args: argparse.Namespace, warm: bool = False) -> int:
    if cell.scenario.latency:
        return max(20, int(200 * mode.latency_s))
    if warm:  # only sizes the counted runs, from a guess: keep it short
        hint = cell.system.rate_hint * (3 if cell.scenario.key in ADD_SCENARIOS else 1)
        return max(mode.n_min, min(mode.n_max, int(hint * mode.target_s / 2)))
    hint = cell.system.rate_hint * (3 if cell.scenario.key in ADD_SCENARIOS else 1)
    rate = cell.est_rate or hint
    n = int(rate * mode.target_s)
    return max(mode.n_min, min(mode.n_max, n))


def run_one(cell: Cell, n: int, redis: RedisServer, mode: Mode) -> dict[str, Any]:
    sc = cell.scenario
    cmd = [
        *cell.system.command(),
        "run",
        "--scenario",
        sc.runner,
        "--url",
        redis.url,
        "--n",
        str(n),
        "--concurrency",
        str(sc.concurrency),
        "--procs",
        str(sc.procs),
        "--timeout",
        str(mode.timeout_s),
    ]
    if cell.system.runtime == "node" and cell.system.variant:
        cmd += ["--variant", cell.system.variant]  # the node script takes options after "run"
    redis.flushall()
    cpu_before = redis_cpu_seconds(redis)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=mode.timeout_s + 60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "harness timeout"}
    cpu_used = redis_cpu_seconds(redis) - cpu_before
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        result = {"ok": False, "error": f"exit {proc.returncode}: {tail[0][:300]}"}
    if result.get("ok") and result.get("n"):
        # The whole measurement's server CPU: for processing scenarios the enqueue (in bulk
        # where the library has it) is included, for every system alike.
        result["redis_cpu_us"] = cpu_used * 1e6 / float(result["n"])
    return result


def redis_cpu_seconds(redis: RedisServer) -> float:
    """The server's CPU time so far (INFO cpu: user + system, main thread and all)."""
    client = RespClient.from_url(redis.url)
    try:
        info = parse_info(client.call("INFO", "cpu"))  # type: ignore[arg-type]
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def describe(result: dict[str, Any]) -> str:
    if result.get("ok"):
        if "p99_ms" in result:
            return f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
        return f"{result['rate']:,.0f} jobs/s (n={result['n']}, {result['seconds']:.2f} s)"
    return str(result.get("na") or result.get("error", "?"))


def run_all(
    cells: dict[tuple[str, str], Cell],
    systems: list[System],
    mode: Mode,
    redis: RedisServer,
    args: argparse.Namespace,
    started: float,
) -> list[str]:
    notes: list[str] = []
    failures: dict[str, int] = {}
    for sc in SCENARIOS:
        if args.scenarios and sc.key not in args.scenarios:
            continue
        rounds = mode.reps + (1 if mode.warmup and not sc.latency else 0)
        for rep in range(rounds):
            warm = mode.warmup and not sc.latency and rep == 0
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for system in order:
                cell = cells[(system.key, sc.key)]
                if cell.na:
                    continue
                if failures.get(system.key, 0) >= 4:
                    cell.na = f"failed: {system.key} failed 4 measurements; skipped the rest"
                    continue
                if time.monotonic() - started > mode.budget_s:
                    note = f"time budget ({mode.budget_s:.0f} s) reached: later measurements skipped"
                    if note not in notes:
                        notes.append(note)
                        print("!", note, flush=True)
                    cell.errors.append("skipped: time budget")
                    continue
                n = choose_n(cell, mode, args, warm)
                t0 = time.monotonic()
                result = run_one(cell, n, redis, mode)
                tag = "warm-up" if warm else f"rep {rep + (0 if mode.warmup and not sc.latency else 1)}"
                print(
                    f"[{time.monotonic() - started:6.0f}s] {sc.key:<15} {system.key:<12} {tag:<8} "
                    f"{describe(result)}  ({time.monotonic() - t0:.1f} s)",
                    flush=True,
                )
                if "na" in result:
                    cell.na = str(result["na"])
                    continue
                if result.get("ok"):
                    if not sc.latency:
                        cell.est_rate = float(result["rate"])
                    if not warm:
                        cell.results.append(result)
                else:
                    failures[system.key] = failures.get(system.key, 0) + 1
                    cell.errors.append(str(result.get("error")))
                    if not warm:
                        cell.results.append(result)
                    if len(cell.errors) >= 2:  # do not keep burning time on a broken cell
                        cell.na = "failed: " + cell.errors[-1]
    return notes


# -------------------------------------------------------------------------------- reporting


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x == x else "-"


def fmt_ratio(x: float | None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"


def ratios(cells: dict[tuple[str, str], Cell], systems: list[System]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for sc in SCENARIOS:
        if sc.latency:
            continue
        base = cells.get((BASELINE, sc.key))
        base_ok = base.ok() if base else []
        if not base_ok:
            continue
        base_rate = med([r["rate"] for r in base_ok])
        for s in systems:
            ok = cells[(s.key, sc.key)].ok()
            if ok:
                out[(s.key, sc.key)] = med([r["rate"] for r in ok]) / base_rate
    return out


def write_chart(path: Path, systems: list[System], rat: dict[tuple[str, str], float]) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed in the harness venv; no chart written"
    scen = [sc for sc in SCENARIOS if not sc.latency and any((s.key, sc.key) in rat for s in systems)]
    shown = [s for s in systems if any((s.key, sc.key) in rat for sc in scen)]
    if not scen or not shown:
        return "no ratios to plot"
    fig, ax = plt.subplots(figsize=(13, 6.5))
    width = 0.8 / len(shown)
    for k, s in enumerate(shown):
        xs = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(scen))]
        ys = [rat.get((s.key, sc.key), 0.0) for sc in scen]
        ax.bar(xs, [y if y > 0 else float("nan") for y in ys], width, label=s.label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(scen)))
    ax.set_xticklabels([sc.key for sc in scen])
    ax.set_ylabel(f"throughput / {BASELINE} (log scale)")
    ax.set_title("Throughput relative to BullMQ-Node (same machine, same Redis, median of runs)")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2g", fontsize=6, padding=1)  # type: ignore[arg-type]
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ""


def write_results(
    path: Path,
    cells: dict[tuple[str, str], Cell],
    systems: list[System],
    versions: dict[str, dict[str, str]],
    skipped: dict[str, str],
    machine: dict[str, str],
    mode: Mode,
    args: argparse.Namespace,
    command: str,
    elapsed: float,
    notes: list[str],
    chart_note: str,
    chart_name: str,
) -> None:
    rat = ratios(cells, systems)
    lines: list[str] = []
    add = lines.append
    add("# Benchmark results: minique vs BullMQ-Node and the Python peers")
    add("")
    add(f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by:")
    add("")
    add("```")
    add(command)
    add("```")
    add("")
    add(
        f"Mode: {'quick' if args.quick else 'full'}; {mode.reps} counted repetition(s) per "
        f"measurement{' after one warm-up run that sizes N' if mode.warmup else ''}; systems "
        f"alternate within each repetition; wall time {elapsed / 60:.1f} min. "
        "This machine is shared and noisy: read the ratios, not the absolute figures."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for k, v in machine.items():
        add(f"| {k} | {v} |")
    add("")
    add("## Versions")
    add("")
    add("| system | versions |")
    add("|---|---|")
    for s in systems:
        if s.key in versions:
            vs = ", ".join(f"{k} {v}" for k, v in versions[s.key].items())
            add(f"| {s.label} | {vs} |")
    for key, why in skipped.items():
        add(f"| {key} | **skipped**: {why} |")
    add("")
    add("## How it is measured")
    add("")
    add(
        "- One private `redis-server` for the whole run (`FLUSHALL` before every measurement). "
        "Every measurement is a fresh subprocess of the system's own runtime; worker processes "
        "are separate subprocesses."
    )
    add(
        "- Jobs are no-ops with a small dict payload. Each system's processor reports to the "
        "harness through a flusher thread (every 10 ms: `INCRBY bench:done`, first/last "
        "timestamps). A measurement counts only when all N jobs ran exactly once **and** the "
        "library's own counts agree: nothing left waiting, active or failed, and N completed "
        "records where the library keeps them all (BullMQ, RQ, arq)."
    )
    add(
        "- Add scenarios time the producer only, then check the library reports N queued. "
        "Processing scenarios queue N jobs first (bulk where available), start the workers, "
        "and time from the first job's start to the last job's end. Mixed load times from the "
        "first add until the last job ends. Latency is add-call start → processor start, "
        "for single jobs sent at 200/s to a worker that has idled for 1 s."
    )
    add(
        "- N is sized per system so a run lasts about "
        f"{mode.target_s:g} s (between {mode.n_min} and {mode.n_max} jobs); jobs/s is N / time. "
        "Ratio = system median / BullMQ-Node median for the same scenario."
    )
    add(
        "- Each system uses its documented API with defaults, except: arq's `poll_delay` is "
        "10 ms (its 0.5 s default starts one batch per poll, ~2 jobs/s at `max_jobs=1`; "
        "`--systems arq-default` measures the default). RQ has no in-process concurrency: its "
        "concurrency-50 and mixed rows are n/a, its two-process row runs each process at "
        "concurrency 1, and its latency row runs at concurrency 1. RQ's forking `Worker` reuses "
        "RQ's producer, so it has no add rows. Python peers run on the stock asyncio loop.\n"
        "- Concurrency counts jobs *running* at once. minique's worker also prefetches while "
        "jobs are short (at most 5 ms of work per slot, at most 200 jobs, by the measured "
        "average duration), so at concurrency 1 one script call serves a batch of no-op jobs "
        "run one after another; BullMQ fetches the next job as it finishes one (one round "
        "trip per job). This is a default of minique, not a benchmark setting."
    )
    for note in notes:
        add(f"- Note: {note}")
    add("")
    if not chart_note:
        add(f"![throughput ratios]({chart_name})")
        add("")
    else:
        add(f"(chart: {chart_note})")
        add("")
    for sc in SCENARIOS:
        if args.scenarios and sc.key not in args.scenarios:
            continue
        add(f"## {sc.title}")
        add("")
        if sc.latency:
            add("| system | p50 ms | p99 ms | max ms | p99 range | jobs | runs |")
            add("|---|---:|---:|---:|---|---:|---|")
        else:
            add(f"| system | jobs/s (median) | min | max | vs {BASELINE} | N | runs |")
            add("|---|---:|---:|---:|---:|---:|---|")
        for s in systems:
            cell = cells[(s.key, sc.key)]
            ok = cell.ok()
            runs = f"{len(ok)}/{len(cell.results)}" if cell.results else "0"
            if not ok:
                why = cell.na or (cell.errors[-1] if cell.errors else "not run")
                label = "n/a" if cell.na and not cell.na.startswith("failed") else "error"
                add(f"| {s.label} | {label}: {why[:160]} |" + " |" * 5)
                continue
            if sc.latency:
                p99s = [r["p99_ms"] for r in ok]
                add(
                    f"| {s.label} | {med([r['p50_ms'] for r in ok]):.2f} | {med(p99s):.2f} | "
                    f"{med([r['max_ms'] for r in ok]):.1f} | {min(p99s):.2f}-{max(p99s):.2f} | "
                    f"{ok[0]['n']} | {runs} |"
                )
            else:
                rates = [r["rate"] for r in ok]
                ns = sorted({int(r["n"]) for r in ok})
                n_txt = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
                add(
                    f"| {s.label} | {fmt_rate(med(rates))} | {fmt_rate(min(rates))} | "
                    f"{fmt_rate(max(rates))} | {fmt_ratio(rat.get((s.key, sc.key)))} | "
                    f"{n_txt} | {runs} |"
                )
        add("")
    lines += redis_cpu_lines(cells, systems, args)
    add("## Reproduce")
    add("")
    add("```")
    add("bash benchmarks/setup.sh          # peers venvs + npm install (once)")
    add(command)
    add("```")
    add("")
    # The soak writes its own section (benchmarks/soak.py): keep it across a rewrite.
    kept = soak_report.kept_section(path.read_text()) if path.exists() else ""
    if kept:
        lines += [kept, ""]
    path.write_text("\n".join(lines))


def redis_cpu_lines(cells: dict[tuple[str, str], Cell], systems: list[System],
                    args: argparse.Namespace) -> list[str]:
    """A table of the Redis server's CPU per job (µs, median of the runs) for each
    throughput scenario, and its ratio to BullMQ-Node's in the same run."""
    out = ["## Redis CPU per job", "",
           "The server's CPU time (`INFO cpu`, user + system) over the whole measurement, "
           "divided by N: what decides how far one Redis goes. Processing scenarios include "
           "the enqueue (in bulk where the library has it), so the processing cost alone is "
           "the processing row less the bulk-add row. Lower is better; the ratio is to "
           f"{BASELINE} in the same run.", "",
           "| scenario | " + " | ".join(s.label for s in systems) + " |",
           "|---|" + "---:|" * len(systems)]
    for sc in SCENARIOS:
        if sc.latency or (args.scenarios and sc.key not in args.scenarios):
            continue
        meds: dict[str, float] = {}
        for s in systems:
            cell = cells.get((s.key, sc.key))
            vals = [r["redis_cpu_us"] for r in (cell.ok() if cell else []) if "redis_cpu_us" in r]
            if vals:
                meds[s.key] = med(vals)
        if not meds:
            continue
        base = meds.get(BASELINE)
        row = []
        for s in systems:
            v = meds.get(s.key)
            if v is None:
                row.append("-")
            elif base and s.key != BASELINE:
                row.append(f"{v:.1f} ({v / base:.2f}x)")
            else:
                row.append(f"{v:.1f}")
        out.append(f"| {sc.title} | " + " | ".join(row) + " |")
    out.append("")
    return out


def print_summary(cells: dict[tuple[str, str], Cell], systems: list[System]) -> None:
    """The medians and ratios on stdout (what a contributor compares before and after)."""
    rat = ratios(cells, systems)
    print(f"\n{'scenario':<15}" + "".join(f"{s.key:>22}" for s in systems), flush=True)
    for sc in SCENARIOS:
        row = []
        for s in systems:
            cell = cells.get((s.key, sc.key))
            ok = cell.ok() if cell else []
            if not ok:
                row.append("-")
            elif sc.latency:
                row.append(f"p99 {med([r['p99_ms'] for r in ok]):.2f} ms")
            else:
                r = rat.get((s.key, sc.key))
                row.append(f"{fmt_rate(med([r['rate'] for r in ok]))}/s"
                           + (f" {fmt_ratio(r)}" if r is not None and s.key != BASELINE else ""))
        if any(x != "-" for x in row):
            print(f"{sc.key:<15}" + "".join(f"{x:>22}" for x in row), flush=True)
    print("\nRedis CPU per job (µs, enqueue included; ratio to the baseline)", flush=True)
    for sc in SCENARIOS:
        if sc.latency:
            continue
        vals = {}
        for s in systems:
            cell = cells.get((s.key, sc.key))
            got = [r["redis_cpu_us"] for r in (cell.ok() if cell else []) if "redis_cpu_us" in r]
            if got:
                vals[s.key] = med(got)
        if vals:
            base = vals.get(BASELINE)
            cols = []
            for s in systems:
                v = vals.get(s.key)
                text = "-" if v is None else f"{v:.1f}"
                if v is not None and base and s.key != BASELINE:
                    text += f" {v / base:.2f}x"
                cols.append(f"{text:>22}")
            print(f"{sc.key:<15}" + "".join(cols), flush=True)


# ------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="about 2 minutes, 1 repetition")
    parser.add_argument(
        "--systems",
        default="",
        help="comma list of: " + ",".join(s.key for s in SYSTEMS + EXTRA_SYSTEMS),
    )
    parser.add_argument(
        "--scenarios", default="", help="comma list of: " + ",".join(s.key for s in SCENARIOS)
    )
    parser.add_argument("--n", type=int, default=0, help="upper bound on N per measurement")
    parser.add_argument("--reps", type=int, default=0, help="counted repetitions (default 3, quick 1)")
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    parser.add_argument("--out", default="", help="report (default benchmarks/RESULTS.md; "
                        "with --quick benchmarks/.quick/RESULTS.md)")
    parser.add_argument("--chart", default="", help="chart (default next to the report)")
    parser.add_argument("--soak", action="store_true",
                        help="run the soak instead (benchmarks/soak.py; --soak-* options)")
    soak.add_arguments(parser)
    args = parser.parse_args()
    command = " ".join(["python -m benchmarks.compare", *(shlex.quote(a) for a in sys.argv[1:])])
    if args.soak:
        sys.exit(soak.run(soak.config_from(args, command)))
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if not args.out:
        args.out = str(QUICK_DIR / "RESULTS.md" if args.quick else BENCH / "RESULTS.md")
    if not args.chart:
        args.chart = str(Path(args.out).with_name("ratios.png"))

    if args.quick:
        mode = Mode(
            reps=1,
            warmup=False,
            target_s=0.6,
            n_min=100,
            n_max=10000,
            latency_s=1.0,
            timeout_s=30,
            budget_s=240,
        )
    else:
        mode = Mode(
            reps=3,
            warmup=True,
            target_s=2.0,
            n_min=100,
            n_max=60000,
            latency_s=4.0,
            timeout_s=90,
            budget_s=19 * 60,
        )
    if args.n:
        mode.n_max = args.n
    if args.reps:
        mode.reps = args.reps

    catalogue = {s.key: s for s in SYSTEMS + EXTRA_SYSTEMS}
    if args.systems:
        unknown = [k for k in args.systems.split(",") if k not in catalogue]
        if unknown:
            parser.error(f"unknown systems: {unknown}")
        wanted = [catalogue[k] for k in args.systems.split(",")]
        if BASELINE not in args.systems.split(","):
            print(f"note: {BASELINE} not selected, so no ratios", flush=True)
    elif args.quick:
        wanted = [catalogue[k] for k in QUICK_SYSTEMS]
    else:
        wanted = list(SYSTEMS)
    unknown_sc = [k for k in args.scenarios if k not in {s.key for s in SCENARIOS}]
    if unknown_sc:
        parser.error(f"unknown scenarios: {unknown_sc}")

    started = time.monotonic()
    with RedisServer(args.redis_server) as redis:
        machine = machine_info(redis)
        rv = tuple(int(x) for x in redis.version().split(".")[:2])
        redis_version = (rv[0], rv[1])
        print(f"redis-server {redis.version()} at {redis.url}", flush=True)
        versions: dict[str, dict[str, str]] = {}
        skipped: dict[str, str] = {}
        systems: list[System] = []
        for s in wanted:
            found, why = probe(s, redis_version)
            if found is None:
                skipped[s.label] = why
                print(f"skip {s.key}: {why}", flush=True)
                continue
            versions[s.key] = found
            systems.append(s)
            print(f"{s.key}: {found}", flush=True)
        cells: dict[tuple[str, str], Cell] = {}
        for s in systems:
            for sc in SCENARIOS:
                cell = Cell(s, sc)
                if sc.key in s.skip_scenarios:
                    cell.na = s.skip_reason
                cells[(s.key, sc.key)] = cell
        notes = run_all(cells, systems, mode, redis, args, started)
    elapsed = time.monotonic() - started
    machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())

    print_summary(cells, systems)
    chart = Path(args.chart)
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart_note = write_chart(chart, systems, ratios(cells, systems))
    out = Path(args.out)
    write_results(
        out,
        cells,
        systems,
        versions,
        skipped,
        machine,
        mode,
        args,
        command,
        elapsed,
        notes,
        chart_note,
        os.path.relpath(chart, out.parent),
    )
    raw = {f"{k[0]}/{k[1]}": {"results": c.results, "na": c.na, "errors": c.errors} for k, c in cells.items()}
    out.with_name("results-raw.json").write_text(
        json.dumps(
            {
                "command": command,
                "versions": versions,
                "skipped": skipped,
                "machine": machine,
                "cells": raw,
            },
            indent=1,
        )
    )
    print(f"wrote {out} and {chart} in {elapsed / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
