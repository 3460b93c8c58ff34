"""The ``minique`` command: run workers, and inspect or act on queues.

    minique worker app.jobs:registry --queue reports --concurrency 5
    minique worker app.jobs:registry --burst      # run what is waiting, then exit
    minique queues                                # every queue, with its counts
    minique stats --queue reports
    minique jobs --queue reports --state failed
    minique retry --queue reports                 # every failed job; or give job ids
    minique pause --queue reports / minique resume --queue reports

Every Redis or URL problem is one line on stderr (``error: ...``) and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import click

from . import __version__, signals
from .cli_common import CliError, TargetError, prefix_option, run, url_option
from .cli_queues import COMMANDS
from .connection import connect
from .dashboard import dashboard_command
from .queue import Queue
from .redis_problems import PROBLEMS, describe, wait_until_reachable
from .registry import Registry
from .worker import Worker

log = logging.getLogger("minique.cli")

positive = click.FloatRange(min=0, min_open=True)


def load_target(spec: str) -> Any:
    """Imports ``package.module:attribute``. Raises TargetError (one line, exit status 2) when
    the module cannot be imported, whatever its import raised (a missing module, a
    SyntaxError, a NameError...): one line naming the exception, and the file and line it
    came from; the traceback is logged at DEBUG (``--log-level DEBUG``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        hint = ""
        if spec.endswith(".py") and not attr:
            # A file path: the module it names, run from the directory above its package.
            dotted = spec[:-3].strip("./").replace("/", ".").replace(os.sep, ".")
            hint = (f" (a file is named as a module and the attribute that holds the "
                    f"registry or function: {dotted}:registry, say, run from the directory "
                    f"that holds {spec.split('/')[0] if '/' in spec else 'it'})")
        raise TargetError(f"expected MODULE:ATTR, got {spec!r}{hint}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the module's own code may fail too: one line, not click's traceback
        log.debug("importing %s failed", module_name, exc_info=True)
        reason = str(exc) if isinstance(exc, ImportError) else _import_failure(exc)
        top = module_name.split(".")[0]
        if (isinstance(exc, ModuleNotFoundError) and exc.name == top and "." in module_name
                and os.path.basename(os.getcwd()) == top):
            # Run from inside the package: its name is not importable from there.
            reason += f" (this directory is {top}/ itself: run the command from the one above)"
        raise TargetError(f"cannot import {module_name!r}: {reason}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_name!r} has no attribute {attr!r}") from None


def _import_failure(exc: Exception) -> str:
    """``SyntaxError: invalid syntax (jobs.py, line 3)``: a SyntaxError's message names its
    file and line already; for anything else they are the innermost frame's."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return text
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return text
    return f"{text} ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"


LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)


def _worker_log_level(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``minique worker --log-level X``: where users put it first (it was "No such option")."""
    if value:
        logging.getLogger().setLevel(value.upper())


@click.group()
@click.version_option(__version__, "--version", prog_name="minique")
@click.option("--log-level", default=os.environ.get("MINIQUE_LOG_LEVEL", "INFO"), show_default=True,
              type=LOG_LEVELS)
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
@click.option("--concurrency", default=5, show_default=True, type=click.IntRange(min=1),
              help="Jobs at once per queue.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes under one supervisor that restarts any that dies.")
@click.option("--cpu-processes", default=0, show_default=True, type=click.IntRange(min=0),
              help="Run sync processors in this many child processes (CPU-bound jobs); a "
                   "timeout, cancel or shutdown kills the job's process.")
@click.option("--max-tasks-per-child", default=None, type=click.IntRange(min=1),
              help="With --cpu-processes: a child process exits after this many jobs and "
                   "a fresh one takes the next (memory a processor leaks is given back).")
@click.option("--lock-duration", default=30.0, show_default=True, type=positive,
              help="Lease of an active job (s).")
@click.option("--stalled-interval", default=30.0, show_default=True, type=positive,
              help="How often expired leases are taken back (s).")
@click.option("--max-stalled-count", default=1, show_default=True, type=click.IntRange(min=0),
              help="Times a job's lease may expire (its worker lost) before the job fails "
                   "(0: it fails at its first stall).")
@click.option("--shutdown-timeout", default=30.0, show_default=True, type=positive,
              help="Grace for running jobs at SIGTERM or SIGINT (s); a second signal exits at once.")
@click.option("--block-timeout", default=5.0, show_default=True, type=positive,
              help="Longest single wait for new jobs (s); a new or due job ends it sooner.")
@click.option("--prefetch/--no-prefetch", default=True, show_default=True,
              help="Hold short jobs ahead of free slots (held jobs obey every control).")
@click.option("--limiter-max", default=0, show_default=True, type=click.IntRange(min=0),
              help="Rate limit: jobs per window (0: none).")
@click.option("--limiter-duration", default=1.0, show_default=True, type=positive,
              help="Rate limit window (s).")
@click.option("--lock-renew-time", type=positive, default=None,
              help="How often leases are renewed (s). Default: lock duration / 2.")
@click.option("--heartbeat-interval", default=5.0, show_default=True, type=positive,
              help="How often the worker publishes that it is alive (s); it leaves the list of "
                   "workers after 3 intervals without one.")
@click.option("--sweep-interval", default=60.0, show_default=True, type=positive,
              help="How often retention is applied to quiet queues (s).")
@click.option("--name", "worker_name", default=None, help="Worker name (default host:pid:random).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics on this port (worker k of --processes: port + k).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the --metrics-port server binds to.")
@click.option("--burst", is_flag=True,
              help="Run until nothing is waiting or due and nothing runs, then exit (scripts, "
                   "CI); implies --fail-fast. The last line counts the jobs done and failed, and "
                   "what is left: waiting jobs of a paused queue, delayed jobs (retries too) "
                   "not due yet.")
@click.option("--fail-fast", is_flag=True,
              help="Exit at once if Redis cannot be reached at start-up (default: retry with "
                   "backoff; --burst implies it).")
@click.option("--log-level", type=LOG_LEVELS, default=None, expose_value=False, is_eager=True,
              callback=_worker_log_level,
              help="As `minique --log-level`, here too (DEBUG logs an import's traceback).")
def worker(target: str, queues: tuple[str, ...], url: str, prefix: str, concurrency: int,
           processes: int, cpu_processes: int, max_tasks_per_child: int | None,
           lock_duration: float, stalled_interval: float,
           max_stalled_count: int, shutdown_timeout: float, block_timeout: float,
           limiter_max: int, limiter_duration: float, lock_renew_time: float | None,
           heartbeat_interval: float, sweep_interval: float, worker_name: str | None,
           metrics_port: int | None, metrics_host: str, burst: bool, fail_fast: bool,
           prefetch: bool) -> None:
    """Run workers for TARGET, a Registry or processor given as MODULE:ATTR."""
    obj = load_target(target)
    if isinstance(obj, Registry):
        served = obj.queues()
        names = list(queues) or served
        if not names:
            raise TargetError(f"{target} has no processors")
        unknown = [n for n in names if n not in served]
        if unknown:
            # Its jobs would all fail with "no processor": refuse rather than eat the queue.
            raise TargetError(
                f"{target} has no processor for queue(s) {', '.join(map(repr, unknown))} "
                f"(--queue); it serves: {', '.join(served)}")
    elif callable(obj):
        if not queues:
            raise TargetError(f"{target} is a single processor: it needs --queue")
        names = list(queues)
    else:
        raise TargetError(f"{target} is neither a Registry nor a callable")
    # A script or CI job must not hang on a Redis that is not there.
    fail_fast = fail_fast or burst
    if metrics_port is not None and metrics_port + processes - 1 > 65535:
        raise click.BadParameter(
            f"worker {processes - 1} of --processes {processes} would serve metrics on port "
            f"{metrics_port + processes - 1}, above 65535", param_hint="--metrics-port")
    if processes > 1:
        # As a single worker does, before any child starts: a wrong password or DB index
        # is one error line (each child would fail so, and be restarted for ever), a Redis
        # that does not answer is waited for (or, with --fail-fast, an error).
        if not run(_reachable_or_fail(url, fail_fast), url):
            return  # a signal while waiting
        sys.exit(supervise(processes, burst=burst))
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
        for name in ("default_job_options", "backoff_strategies"):
            if name in opts:
                extra[name] = opts[name]
    settings: dict[str, Any] = {
        "lock_duration": lock_duration, "stalled_interval": stalled_interval,
        "max_stalled_count": max_stalled_count, "shutdown_timeout": shutdown_timeout,
        "block_timeout": block_timeout, "lock_renew_time": lock_renew_time,
        "heartbeat_interval": heartbeat_interval, "sweep_interval": sweep_interval,
        "prefetch": prefetch, **extra}

    async def run_all() -> None:
        try:
            workers = [Worker(name, obj, url=url, prefix=prefix, concurrency=concurrency,
                              limiter=limiter, processes=cpu_processes,
                              max_tasks_per_child=max_tasks_per_child, fail_fast=fail_fast,
                              burst=burst,
                              name=f"{worker_name}:{name}" if worker_name and len(names) > 1
                              else worker_name, **settings)
                       for name in names]
        except (ValueError, TypeError) as exc:  # e.g. a registry's worker_options
            raise CliError(f"cannot start the worker: {exc}") from None
        _install_signals(workers)
        # One wait for the whole command, before the start-up hooks need Redis: a single
        # line per attempt rather than one per queue.
        probe = connect(url)
        try:
            if not await wait_until_reachable(probe, url, fail_fast=fail_fast, log=log,
                                              what="minique worker",
                                              stopped=lambda: any(w._closing for w in workers)):
                return
        finally:
            await probe.aclose()
        for hook in obj.startup_hooks if isinstance(obj, Registry) else []:
            await hook(url, prefix)
        if metrics_port is not None:
            from .metrics import WorkerMetrics, start_metrics_server

            worker_metrics = WorkerMetrics()
            for w in workers:
                worker_metrics.attach(w)
            slot = int(os.environ.get("MINIQUE_WORKER_SLOT", "0"))
            start_metrics_server(metrics_port + slot, metrics_host)
        # The command's own handler (installed above) closes them all.
        try:
            await asyncio.gather(*(w.run(handle_signals=False) for w in workers))
        finally:
            for hook in obj.shutdown_hooks if isinstance(obj, Registry) else []:
                try:
                    await hook(url, prefix)
                except Exception:
                    log.exception("shutdown hook %r failed", hook)
        if burst:
            retried = sum(w.jobs_retried for w in workers)
            click.echo(f"burst: {sum(w.jobs_done for w in workers)} job(s) done, "
                       f"{sum(w.jobs_failed for w in workers)} failed"
                       f"{f', {retried} attempt(s) retried' if retried else ''}"
                       f"{await _left_for_later(names, url, prefix)}")

    run(run_all(), url)


async def _left_for_later(names: list[str], url: str, prefix: str) -> str:
    """What a burst leaves in its queues, for its last line: ``; 2 waiting (queue paused),
    1 delayed (next due in 0.5 s) left for later``, or "" when nothing is left. Read once,
    after the workers stopped; a Redis problem here costs only this part of the line."""
    redis = connect(url)
    try:
        waiting = delayed = 0
        paused = False
        next_due: float | None = None  # seconds, Redis clock
        for name in names:
            q = Queue(name, connection=redis, prefix=prefix)
            stats = await q.get_stats()
            waiting += stats["waiting"]
            delayed += stats["delayed"]
            if stats["waiting"] and await q.is_paused():
                paused = True
            first = await q.get_jobs("delayed", 0, 0) if stats["delayed"] else []
            due = first[0].delay_until if first else None
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
        secs, micros = await redis.time()
    except PROBLEMS as exc:
        log.warning("burst: cannot read what is left in the queue(s): %s", describe(exc, url))
        return ""
    finally:
        await redis.aclose()
    left = []
    if waiting:
        left.append(f"{waiting} waiting" + (" (queue paused)" if paused else ""))
    if delayed:
        when = ""
        if next_due is not None:
            wait = max(0.0, next_due - (int(secs) + int(micros) / 1e6))
            when = f" (next due in {wait:.1f} s)" if wait < 10 else f" (next due in {wait:.0f} s)"
        left.append(f"{delayed} delayed{when}")
    return f"; {', '.join(left)} left for later" if left else ""


async def _reachable_or_fail(url: str, fail_fast: bool) -> bool:
    """True once Redis answers; False if SIGTERM or SIGINT came while waiting for it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    probe = connect(url)
    try:
        return await wait_until_reachable(probe, url, fail_fast=fail_fast, log=log,
                                          what="minique worker", stopped=stop.is_set)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await probe.aclose()


def _install_signals(workers: list[Worker]) -> None:
    """SIGTERM/SIGINT close the workers gracefully, a second one exits at once, even while
    a job holds the event loop (minique/signals.py). Under a supervisor (``--processes N``)
    the supervisor's word comes through a pipe of its own (``MINIQUE_SUPERVISOR_FD``),
    never as a signal: a signal that reaches the whole process group (a terminal's Ctrl-C)
    or the whole cgroup (systemd's stop) reaches this process directly too, and a
    forwarded copy would count as the second signal."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    def close_all(why: str) -> None:
        if not tasks:
            grace = max((w.shutdown_timeout for w in workers), default=0.0)
            # (The pid tells apart the lines of a supervisor's children.)
            log.warning("%s: process %d finishing running jobs (grace %.0fs), then stopping; "
                        "a second signal exits at once", why, os.getpid(), grace)
            tasks.extend(loop.create_task(w.close()) for w in workers)

    signals.handle(close_all)
    fd = os.environ.pop("MINIQUE_SUPERVISOR_FD", None)
    if fd is not None:
        # A thread: it hears the supervisor even while a job holds the event loop.
        threading.Thread(target=_listen_to_supervisor, args=(int(fd), loop, close_all),
                         name="minique-supervisor", daemon=True).start()
    # The children start with SIGINT ignored (a Ctrl-C during their start-up is the
    # supervisor's to handle): from here on it is handled above.


def _listen_to_supervisor(fd: int, loop: asyncio.AbstractEventLoop,
                          close_all: Callable[[str], None]) -> None:
    """b"s": stop gracefully; b"k": exit now; the end of the pipe: the supervisor is gone
    (kill -9), and no one would restart or stop this worker: stop gracefully."""
    while True:
        try:
            word = os.read(fd, 64)
        except OSError:
            word = b""
        if b"k" in word:
            log.warning("supervisor: second signal: exiting now; leases will return the "
                        "running jobs")
            os._exit(1)
        if not word:
            os.close(fd)
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(close_all, "supervisor gone")
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(close_all, "supervisor")


def supervise(count: int, *, burst: bool = False) -> int:
    """Runs ``count`` copies of this worker command and restarts any that dies (in burst
    mode, one that exits with status 0 is done and stays down).

    A signal (SIGTERM, SIGINT) asks every child to finish its running jobs and stop, a
    second one to exit at once: through a pipe per child, not by forwarding the signal,
    which a child may have received directly already (a terminal's Ctrl-C reaches the
    process group, systemd's stop the whole cgroup) and would take as its second. A child
    whose supervisor dies (kill -9) reads the end of its pipe and stops as at a signal."""
    argv = [a for a in sys.argv[1:]]
    child_args = _strip_processes(argv)
    cmd = [sys.executable, "-m", "minique", *child_args]
    children: dict[int, subprocess.Popen[bytes]] = {}
    pipes: dict[int, int] = {}  # slot -> the write end of its child's pipe
    signals_seen = 0

    def tell(slot: int, word: bytes) -> None:
        with contextlib.suppress(OSError):  # the child has exited: nothing to tell
            os.write(pipes[slot], word)

    def spawn(slot: int) -> None:
        if slot in pipes:
            os.close(pipes.pop(slot))
        theirs, pipes[slot] = os.pipe()
        try:
            children[slot] = subprocess.Popen(
                cmd, pass_fds=(theirs,), preexec_fn=_ignore_sigint,
                env={**os.environ, "MINIQUE_WORKER_SLOT": str(slot),
                     "MINIQUE_SUPERVISOR_FD": str(theirs)})
        finally:
            os.close(theirs)
        log.info("supervisor: started worker %d (pid %d)", slot, children[slot].pid)
        if signals_seen:  # a signal came while it was being started: it missed the word
            tell(slot, b"s" if signals_seen == 1 else b"k")

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal signals_seen
        signals_seen += 1
        for slot, child in children.items():
            if child.poll() is None:
                tell(slot, b"s" if signals_seen == 1 else b"k")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for slot in range(count):
        spawn(slot)
    started = {slot: time.monotonic() for slot in children}
    delays: dict[int, float] = {}  # slot -> the wait before its last restart (s)
    due: dict[int, float] = {}  # slot -> when its pending restart starts it (monotonic)
    while True:
        alive = False
        now = time.monotonic()
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None:
                alive = True
            elif burst and code == 0:
                del children[slot]
            elif not signals_seen:
                if slot not in due:
                    delays[slot] = restart_delay(delays.get(slot, 0.0), now - started[slot])
                    due[slot] = now + delays[slot]
                    log.warning("supervisor: worker %d (pid %d) exited with %s; restarting "
                                "in %.0f s", slot, child.pid, code, delays[slot])
                # The wait is a due time, not a sleep: the other children stay watched, and
                # a signal meanwhile leaves this one down (signals_seen above).
                if now >= due[slot]:
                    del due[slot]
                    spawn(slot)
                    started[slot] = time.monotonic()
                alive = True
        if (signals_seen or burst) and not alive:
            for fd in pipes.values():
                os.close(fd)
            return 0
        time.sleep(0.2)


RESTART_DELAY_MAX = 60.0  # s
RESTART_STABLE_AFTER = 30.0  # s a child must live for its next restart to be immediate


def restart_delay(previous: float, lived: float) -> float:
    """Seconds before the supervisor restarts a child that exited after ``lived`` seconds,
    the previous restart of its slot having waited ``previous``: at once after a child that
    ran ``RESTART_STABLE_AFTER`` s or more, else 1 s doubling up to ``RESTART_DELAY_MAX``
    (a broken import or a rotated password must not restart it every second for ever)."""
    if lived >= RESTART_STABLE_AFTER:
        return 0.0
    return min(RESTART_DELAY_MAX, max(1.0, previous * 2))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


for command in COMMANDS:
    main.add_command(command)
main.add_command(dashboard_command)

if __name__ == "__main__":
    main()
