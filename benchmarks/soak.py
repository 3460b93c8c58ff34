"""Soak: minutes of mixed load on a private Redis; judges that nothing grows without bound.

    python -m benchmarks.compare --soak                      # 10 minutes
    python -m benchmarks.compare --soak --soak-seconds 120   # shorter
    python -m benchmarks.soak --soak-seconds 120             # the same

It starts a private ``redis-server`` on 127.0.0.1 (a free port, no persistence), one
producer process adding ``--soak-rate`` jobs per second and ``--soak-workers`` worker
processes (``benchmarks/soak_load.py`` has the mix: 1-50 ms jobs, 5% failed attempts with
retries and backoff, grouped and delayed jobs, a scheduler firing every second). Every
``--soak-sample-every`` seconds it records throughput, pickup latency (p50/p99, from the job
becoming ready to its processor starting), Redis ``used_memory``, each worker's RSS, the
queue's counts and the events stream's length. At the end it writes the samples as JSON,
plots them, puts a section into benchmarks/RESULTS.md and prints one verdict line
(``benchmarks/soak_growth.py``). Exit status: 0 bounded, 1 something grows, 2 the run broke
(a process died, nothing was processed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import soak_growth, soak_load, soak_report
from benchmarks.redis_server import RedisServer

BENCH = Path(__file__).resolve().parent
DEFAULT_SECONDS = 600.0


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = DEFAULT_SECONDS
    rate: float = 500.0
    workers: int = 2
    concurrency: int = 50
    sample_every: float = 0.0  # 0: 5 s, or less for a short run (at least 15 samples)
    redis_server: str = "redis-server"
    out: str = str(BENCH / "soak.json")
    plot: str = str(BENCH / "soak.png")
    results: str = str(BENCH / "RESULTS.md")  # "": no section written
    command: str = "python -m benchmarks.compare --soak"

    def interval(self) -> float:
        return self.sample_every or max(0.25, min(5.0, self.seconds / 15))


@dataclass
class Child:
    role: str
    proc: asyncio.subprocess.Process
    log: Path
    inbox: list[dict[str, Any]] = field(default_factory=list)
    ready: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (Linux /proc), or None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


async def _read(child: Child) -> None:
    assert child.proc.stdout is not None
    async for raw in child.proc.stdout:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if msg.get("ready"):
            child.ready = True
        else:
            child.inbox.append(msg)


async def _spawn(role: str, url: str, args: list[str], logdir: Path) -> Child:
    log = logdir / f"{role}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.soak_load", role.split("-")[0], "--url", url, *args,
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd=BENCH.parent,
            limit=16 * 1024 * 1024)
    return Child(role, proc, log)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _sample(t: float, dt: float, queue: Any, producer: Child, workers: list[Child],
                  redis_cpu0: float) -> dict[str, Any]:
    lat: dict[str, list[float]] = {k: [] for k in soak_load.KINDS}
    done = failed = 0
    for w in workers:
        msgs, w.inbox = w.inbox, []
        for m in msgs:
            done += int(m.get("done", 0))
            failed += int(m.get("failed", 0))
            for kind, values in m.get("lat", {}).items():
                lat[kind].extend(values)
    msgs, producer.inbox = producer.inbox, []
    added = sum(int(m.get("added", 0)) for m in msgs)
    add_errors = sum(int(m.get("errors", 0)) for m in msgs)
    everything = sorted(x for v in lat.values() for x in v)
    info = await queue.redis.info("memory")
    cpu = await queue.redis.info("cpu")
    stats = await queue.get_stats()
    events_len = int(await queue.redis.xlen(queue.keys.events))
    sample: dict[str, Any] = {
        "t": round(t, 2),
        "dt": round(dt, 3),
        "added": added,
        "add_errors": add_errors,
        "done": done,
        "failed_attempts": failed,
        "throughput": done / dt if dt > 0 else 0.0,
        "pickups": len(everything),
        "p50_ms": percentile(everything, 50),
        "p99_ms": percentile(everything, 99),
        "max_ms": everything[-1] if everything else float("nan"),
        "by_kind": {k: {"n": len(v), "p50_ms": percentile(sorted(v), 50),
                        "p99_ms": percentile(sorted(v), 99)} for k, v in lat.items() if v},
        "redis_used_memory": int(info["used_memory"]),
        "redis_rss": int(info.get("used_memory_rss", 0)),
        "redis_cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]) - redis_cpu0,
        "worker_rss": [rss_bytes(w.pid) for w in workers],
        "producer_rss": rss_bytes(producer.pid),
        "waiting": stats["waiting"],
        "active": stats["active"],
        "delayed": stats["delayed"],
        "completed": stats["completed"],
        "failed": stats["failed"],
        "backlog": stats["waiting"] + stats["active"] + stats["delayed"],
        "events_len": events_len,
    }
    return sample


def judge(samples: list[dict[str, Any]]) -> list[soak_growth.Judgement]:
    ts = [s["t"] for s in samples]
    done = [s["done"] for s in samples]
    out = [soak_growth.judge("redis_used_memory", ts, [s["redis_used_memory"] for s in samples], done)]
    n_workers = len(samples[0]["worker_rss"]) if samples else 0
    for i in range(n_workers):
        rss = [s["worker_rss"][i] for s in samples]
        if all(r is not None for r in rss):
            out.append(soak_growth.judge(f"worker_rss[{i}]", ts, rss, done))
    prss = [s["producer_rss"] for s in samples]
    if samples and all(r is not None for r in prss):
        out.append(soak_growth.judge("producer_rss", ts, prss, done))
    out.append(soak_growth.judge("backlog", ts, [s["backlog"] for s in samples], done))
    out.append(soak_growth.judge("events_len", ts, [s["events_len"] for s in samples], done))
    return out


def machine(redis: RedisServer) -> dict[str, str]:
    try:
        from benchmarks.compare import machine_info

        return machine_info(redis)
    except Exception as exc:  # the soak does not need node, which machine_info asks
        return {"OS": f"{platform.system()} {platform.release()}", "error": repr(exc),
                "cores (os.cpu_count)": str(os.cpu_count())}


async def soak(cfg: SoakConfig) -> tuple[int, dict[str, Any]]:
    """Runs the soak; returns (exit status, the record written as JSON)."""
    from minique import Queue

    interval = cfg.interval()
    report_every = min(1.0, interval / 2)
    record: dict[str, Any] = {"config": asdict(cfg), "samples": [], "errors": []}
    record["config"]["sample_every"] = interval
    record["mix"] = {
        "job_ms": [soak_load.MIN_MS, soak_load.MAX_MS], "fail_rate": soak_load.FAIL_RATE,
        "attempts": soak_load.ATTEMPTS, "backoff": soak_load.BACKOFF,
        "grouped": soak_load.GROUPED, "groups": soak_load.GROUPS,
        "group_concurrency": soak_load.GROUP_CONCURRENCY, "delayed": soak_load.DELAYED,
        "scheduler_every_s": 1.0,
    }
    status = 0
    with RedisServer(cfg.redis_server) as redis, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        logdir = Path(tmp)
        record["machine"] = machine(redis)
        record["started"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"soak: redis-server {redis.version()} at {redis.url}; {cfg.seconds:g} s at "
              f"{cfg.rate:g} jobs/s, {cfg.workers} worker processes x {cfg.concurrency}, "
              f"a sample every {interval:g} s", flush=True)
        queue = Queue(soak_load.QUEUE, url=redis.url)
        common = ["--report-every", str(report_every)]
        workers = [await _spawn(f"worker-{i}", redis.url,
                                [*common, "--concurrency", str(cfg.concurrency), "--seed", str(i + 1)],
                                logdir) for i in range(cfg.workers)]
        producer = await _spawn("producer", redis.url, [*common, "--rate", str(cfg.rate)], logdir)
        children = [*workers, producer]
        readers = [asyncio.create_task(_read(c)) for c in children]
        try:
            deadline = time.monotonic() + 60
            while not all(c.ready for c in children):
                dead = [c for c in children if c.proc.returncode is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError("a process did not start: " + "; ".join(
                        f"{c.role}: {_tail(c.log, 5)}" for c in (dead or children)))
                await asyncio.sleep(0.05)
            cpu = await queue.redis.info("cpu")
            cpu0 = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
            start = last = time.monotonic()
            end = start + cfg.seconds
            while (now := time.monotonic()) < end:
                await asyncio.sleep(min(interval - (now - start) % interval, end - now))
                now = time.monotonic()
                sample = await _sample(now - start, now - last, queue, producer, workers, cpu0)
                last = now
                record["samples"].append(sample)
                print(f"[{sample['t']:6.0f}s] {sample['throughput']:6.0f} jobs/s  pickup p50 "
                      f"{sample['p50_ms']:6.2f} p99 {sample['p99_ms']:7.2f} ms  redis "
                      f"{sample['redis_used_memory'] / 2**20:6.1f} MiB  worker RSS "
                      + "/".join(f"{(r or 0) / 2**20:.0f}" for r in sample["worker_rss"])
                      + f" MiB  backlog {sample['backlog']}", flush=True)
                dead = [c for c in children if c.proc.returncode is not None]
                if dead:
                    raise RuntimeError("; ".join(f"{c.role} exited with {c.proc.returncode}: "
                                                 f"{_tail(c.log)}" for c in dead))
        except RuntimeError as exc:
            record["errors"].append(str(exc))
            status = 2
        finally:
            await _stop([producer])
            await _stop(workers)
            for r in readers:
                r.cancel()
            record["redis_commands"] = await _commandstats(queue)
            await queue.close()
    samples = record["samples"]
    judgements = judge(samples) if samples else []
    bounded, line = soak_growth.verdict(judgements)
    if status == 0 and sum(s["done"] for s in samples) == 0:
        record["errors"].append("no job was processed")
        status = 2
    if status == 0 and not bounded:
        status = 1
    record["judgements"] = [{**asdict(j), "growth": j.growth} for j in judgements]
    record["verdict"] = line if status != 2 else "soak verdict: BROKEN: " + " | ".join(record["errors"])
    record["status"] = status
    return status, record


async def _commandstats(queue: Any) -> list[dict[str, Any]]:
    """Redis time by command over the whole run (INFO commandstats), most first."""
    try:
        stats = await queue.redis.info("commandstats")
    except Exception:
        return []
    rows = [{"command": k.removeprefix("cmdstat_"), "calls": int(v["calls"]), "usec": int(v["usec"])}
            for k, v in stats.items() if isinstance(v, dict) and "usec" in v]
    return sorted(rows, key=lambda r: -r["usec"])[:12]


async def _stop(children: list[Child]) -> None:
    for c in children:
        if c.proc.returncode is None:
            c.proc.send_signal(signal.SIGTERM)
    for c in children:
        try:
            await asyncio.wait_for(c.proc.wait(), 20)
        except TimeoutError:
            c.proc.kill()
            await c.proc.wait()


def run(cfg: SoakConfig) -> int:
    """Runs the soak and writes its outputs; returns the exit status."""
    status, record = asyncio.run(soak(cfg))
    for key in ("out", "plot", "results"):  # paths in the repository, as the repository names them
        path = Path(record["config"][key]).resolve()
        if record["config"][key] and path.is_relative_to(BENCH.parent):
            record["config"][key] = str(path.relative_to(BENCH.parent))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    note = soak_report.write_plot(record, Path(cfg.plot)) if record["samples"] else "no samples"
    if note:
        print(f"soak: no plot ({note})", flush=True)
    if cfg.results and status != 2:
        soak_report.update_results(Path(cfg.results), record, Path(cfg.plot), plot_note=note)
    written = [str(out), *([cfg.plot] if not note else []),
               *([cfg.results] if cfg.results and status != 2 else [])]
    print("soak: wrote " + ", ".join(written), flush=True)
    print(record["verdict"], flush=True)
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The soak's options (also offered by ``benchmarks.compare``)."""
    g = parser.add_argument_group("soak")
    g.add_argument("--soak-seconds", type=float, default=DEFAULT_SECONDS,
                   help="duration of the load (default 600)")
    g.add_argument("--soak-rate", type=float, default=500.0, help="jobs added per second (500)")
    g.add_argument("--soak-workers", type=int, default=2, help="worker processes (2)")
    g.add_argument("--soak-concurrency", type=int, default=50, help="per worker process (50)")
    g.add_argument("--soak-sample-every", type=float, default=0.0,
                   help="seconds between samples (default 5, less for short runs)")
    g.add_argument("--soak-out", default=str(BENCH / "soak.json"), help="samples as JSON")
    g.add_argument("--soak-plot", default=str(BENCH / "soak.png"))
    g.add_argument("--soak-results", default=str(BENCH / "RESULTS.md"),
                   help="Markdown file that gets the soak section ('' for none)")


def config_from(args: argparse.Namespace, command: str) -> SoakConfig:
    return SoakConfig(seconds=args.soak_seconds, rate=args.soak_rate, workers=args.soak_workers,
                      concurrency=args.soak_concurrency, sample_every=args.soak_sample_every,
                      redis_server=args.redis_server, out=args.soak_out, plot=args.soak_plot,
                      results=args.soak_results, command=command)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    add_arguments(parser)
    args = parser.parse_args()
    command = " ".join(["python -m benchmarks.soak", *(shlex.quote(a) for a in sys.argv[1:])])
    sys.exit(run(config_from(args, command)))


if __name__ == "__main__":
    main()
