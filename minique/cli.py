"""The ``minique`` command: run workers, and inspect or act on queues.

    minique worker app.jobs:registry --queue reports --concurrency 5
    minique stats --queue reports
    minique jobs --queue reports --state failed
    minique retry --queue reports            # every failed job; or give job ids
    minique pause --queue reports / minique resume --queue reports
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from .connection import DEFAULT_URL
from .dashboard import dashboard_command
from .queue import Queue
from .registry import Registry
from .worker import Worker

T = TypeVar("T")
log = logging.getLogger("minique.cli")

url_option = click.option("--url", envvar="MINIQUE_REDIS_URL", default=DEFAULT_URL, show_default=True,
                          help="Redis URL (also $MINIQUE_REDIS_URL).")
prefix_option = click.option("--prefix", default="minique", show_default=True, help="Key prefix.")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def load_target(spec: str) -> Any:
    """Imports ``package.module:attribute``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:ATTR, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}") from None


@click.group()
@click.option("--log-level", default=os.environ.get("MINIQUE_LOG_LEVEL", "INFO"), show_default=True)
def main(log_level: str) -> None:
    """minique: a Redis job queue."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.command()
@click.argument("target")
@click.option("--queue", "queues", multiple=True, help="Queue to serve (repeatable). "
              "Default: every queue of the registry.")
@url_option
@prefix_option
@click.option("--concurrency", default=5, show_default=True, help="Jobs at once per queue.")
@click.option("--processes", default=1, show_default=True,
              help="Worker processes under one supervisor that restarts any that dies.")
@click.option("--cpu-processes", default=0, show_default=True,
              help="Run sync processors in this many child processes (CPU-bound jobs); a "
                   "timeout, cancel or shutdown kills the job's process.")
@click.option("--lock-duration", default=30.0, show_default=True, help="Lease of an active job (s).")
@click.option("--stalled-interval", default=30.0, show_default=True,
              help="How often expired leases are taken back (s).")
@click.option("--max-stalled-count", default=1, show_default=True)
@click.option("--shutdown-timeout", default=30.0, show_default=True,
              help="Grace for running jobs at SIGTERM (s).")
@click.option("--block-timeout", default=5.0, show_default=True)
@click.option("--prefetch/--no-prefetch", default=True, show_default=True,
              help="Hold short jobs ahead of free slots (held jobs obey every control).")
@click.option("--limiter-max", default=0, show_default=True, help="Rate limit: jobs per window.")
@click.option("--limiter-duration", default=1.0, show_default=True, help="Rate limit window (s).")
@click.option("--lock-renew-time", type=float, default=None,
              help="How often leases are renewed (s). Default: lock duration / 2.")
@click.option("--heartbeat-interval", default=5.0, show_default=True)
@click.option("--sweep-interval", default=60.0, show_default=True,
              help="How often retention is applied to quiet queues (s).")
@click.option("--name", "worker_name", default=None, help="Worker name (default host:pid:random).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (worker k of --processes: port + k).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
def worker(target: str, queues: tuple[str, ...], url: str, prefix: str, concurrency: int,
           processes: int, cpu_processes: int, lock_duration: float, stalled_interval: float,
           max_stalled_count: int, shutdown_timeout: float, block_timeout: float,
           limiter_max: int, limiter_duration: float, lock_renew_time: float | None,
           heartbeat_interval: float, sweep_interval: float, worker_name: str | None,
           metrics_port: int | None, metrics_host: str, prefetch: bool) -> None:
    """Run workers for TARGET, a Registry or processor given as MODULE:ATTR."""
    if processes > 1:
        sys.exit(supervise(processes))
    obj = load_target(target)
    if isinstance(obj, Registry):
        names = list(queues) or obj.queues()
        if not names:
            raise click.UsageError(f"{target} has no processors")
    elif callable(obj):
        if not queues:
            raise click.UsageError("a single processor needs --queue")
        names = list(queues)
    else:
        raise click.BadParameter(f"{target} is neither a Registry nor a callable")
    limiter: dict[str, float] | None = (
        {"max": limiter_max, "duration": limiter_duration} if limiter_max > 0 else None)
    extra: dict[str, Any] = {}
    if isinstance(obj, Registry) and obj.worker_options:
        # The registry's defaults fill in every flag left at its default.
        ctx = click.get_current_context()
        given = {name for name in ctx.params
                 if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
        opts = obj.worker_options
        concurrency = concurrency if "concurrency" in given else opts.get("concurrency", concurrency)
        if "limiter_max" not in given and "limiter" in opts:
            limiter = dict(opts["limiter"])
        for name in ("lock_duration", "stalled_interval", "max_stalled_count",
                     "shutdown_timeout", "block_timeout"):
            if name not in given and name in opts:
                extra[name] = opts[name]
        if "default_job_options" in opts:
            extra["default_job_options"] = opts["default_job_options"]

    async def run_all() -> None:
        for hook in obj.startup_hooks if isinstance(obj, Registry) else []:
            await hook(url, prefix)
        settings: dict[str, Any] = {
            "lock_duration": lock_duration, "stalled_interval": stalled_interval,
            "max_stalled_count": max_stalled_count, "shutdown_timeout": shutdown_timeout,
            "block_timeout": block_timeout, "lock_renew_time": lock_renew_time,
            "heartbeat_interval": heartbeat_interval, "sweep_interval": sweep_interval,
            "prefetch": prefetch, **extra}
        workers = [Worker(name, obj, url=url, prefix=prefix, concurrency=concurrency,
                          limiter=limiter, processes=cpu_processes,
                          name=f"{worker_name}:{name}" if worker_name and len(names) > 1
                          else worker_name, **settings)
                   for name in names]
        if metrics_port is not None:
            from .metrics import WorkerMetrics, start_metrics_server

            worker_metrics = WorkerMetrics()
            for w in workers:
                worker_metrics.attach(w)
            slot = int(os.environ.get("MINIQUE_WORKER_SLOT", "0"))
            start_metrics_server(metrics_port + slot, metrics_host)
        # The workers share one SIGTERM/SIGINT handler (minique/signals.py).
        await asyncio.gather(*(w.run(handle_signals=True) for w in workers))

    _run(run_all())


def supervise(count: int) -> int:
    """Runs ``count`` copies of this worker command and restarts any that dies."""
    argv = [a for a in sys.argv[1:]]
    child_args = _strip_processes(argv)
    cmd = [sys.executable, "-m", "minique", *child_args]
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def spawn(slot: int) -> None:
        children[slot] = subprocess.Popen(cmd, env={**os.environ, "MINIQUE_WORKER_SLOT": str(slot)})
        log.info("supervisor: started worker %d (pid %d)", slot, children[slot].pid)

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(count):
        spawn(slot)
    restarts: dict[int, float] = {}
    while True:
        alive = False
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None:
                alive = True
            elif not stopping:
                # Back off a child that keeps dying at once, so a broken import cannot spin.
                wait = 1.0 if time.monotonic() - restarts.get(slot, 0.0) < 5 else 0.0
                log.warning("supervisor: worker %d (pid %d) exited with %s; restarting",
                            slot, child.pid, code)
                time.sleep(wait)
                restarts[slot] = time.monotonic()
                spawn(slot)
                alive = True
        if stopping and not alive:
            return 0
        time.sleep(0.2)


def _strip_processes(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return out


def _queue(name: str, url: str, prefix: str) -> Queue:
    return Queue(name, url=url, prefix=prefix)


@main.command()
@click.option("--queue", "queues", multiple=True, required=True)
@url_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(queues: tuple[str, ...], url: str, prefix: str, as_json: bool) -> None:
    """Counts by state for each queue."""

    async def go() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in queues:
            q = _queue(name, url, prefix)
            out[name] = {**await q.get_stats(), "paused": await q.is_paused()}
            await q.close()
        return out

    result = _run(go())
    if as_json:
        click.echo(json.dumps(result))
        return
    cols = ["waiting", "active", "completed", "failed", "delayed", "total", "paused"]
    click.echo(f"{'queue':<20}" + "".join(f"{c:>11}" for c in cols))
    for name, row in result.items():
        click.echo(f"{name:<20}" + "".join(f"{row[c]!s:>11}" for c in cols))


@main.command()
@click.option("--queue", required=True)
@click.option("--state", default="failed", show_default=True,
              type=click.Choice(["waiting", "active", "completed", "failed", "delayed"]))
@click.option("--start", default=0, show_default=True)
@click.option("--end", default=49, show_default=True)
@url_option
@prefix_option
def jobs(queue: str, state: str, start: int, end: int, url: str, prefix: str) -> None:
    """List the jobs of one state."""

    async def go() -> None:
        q = _queue(queue, url, prefix)
        for job in await q.get_jobs(state, start, end):
            reason = f"  {job.failed_reason}" if job.failed_reason else ""
            click.echo(f"{job.id}\t{job.name}\tattempts={job.attempts_made}{reason}")
        await q.close()

    _run(go())


@main.command()
@click.option("--queue", required=True)
@click.option("--state", default="failed", show_default=True, type=click.Choice(["failed", "completed"]))
@click.argument("job_ids", nargs=-1)
@url_option
@prefix_option
def retry(queue: str, state: str, job_ids: tuple[str, ...], url: str, prefix: str) -> None:
    """Send failed jobs (all, or the given ids) back to waiting."""

    async def go() -> int:
        q = _queue(queue, url, prefix)
        try:
            if not job_ids:
                return await q.retry_jobs(state)
            for job_id in job_ids:
                await q.retry_job(job_id)
            return len(job_ids)
        finally:
            await q.close()

    click.echo(f"retried {_run(go())} job(s)")


def _queue_action(name: str, doc: str, action: Callable[[Queue], Awaitable[Any]]) -> None:
    @main.command(name=name, help=doc)
    @click.option("--queue", required=True)
    @url_option
    @prefix_option
    def command(queue: str, url: str, prefix: str) -> None:
        async def go() -> Any:
            q = _queue(queue, url, prefix)
            try:
                return await action(q)
            finally:
                await q.close()

        result = _run(go())
        click.echo(f"{name}: {queue}" + (f" ({result})" if result is not None else ""))


_queue_action("pause", "Stop every worker taking jobs from a queue.", lambda q: q.pause())
_queue_action("resume", "Let workers take jobs from a paused queue again.", lambda q: q.resume())
_queue_action("drain", "Remove every waiting job of a queue.", lambda q: q.drain())

main.add_command(dashboard_command)

if __name__ == "__main__":
    main()
