"""The scenario driver shared by every Python system adapter (stdlib only).

Each adapter module (``benchmarks/systems/<name>_system.py``) subclasses :class:`Adapter`
with a few calls into its own library, and ends with ``main(MyAdapter)``. It is run by
``benchmarks.compare`` with the python of the venv that has that library installed::

    python -m benchmarks.systems.saq_system versions
    python -m benchmarks.systems.saq_system run --scenario process --url URL --n 5000 \
        --concurrency 50 --procs 1
    python -m benchmarks.systems.saq_system worker --url URL --concurrency 50   # spawned by run

``run`` prints one JSON object on its last stdout line.

How completion is observed, the same way for every system (and in ``node/bench.mjs``):
the benchmark's processor calls :meth:`Recorder.started` / :meth:`Recorder.finished`, and a
flusher thread in each worker process sends its counters to Redis every 10 ms
(``INCRBY bench:done``, ``HSETNX bench:first``, ``HSET bench:last``, ``RPUSH bench:lat``).
Timestamps are taken in the processor itself, so the flush interval does not affect timing.
They use ``time.monotonic()`` (CLOCK_MONOTONIC, system-wide on Linux), so a timestamp taken
by the producer can be compared with one taken in a worker process.
A measurement counts only when ``bench:done`` equals N (each job ran exactly once) *and* the
library itself reports that nothing is left queued/active/failed (``Adapter.check_done``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.redis_server import RespClient, as_int

KEY_DONE = "bench:done"
KEY_FIRST = "bench:first"
KEY_LAST = "bench:last"
KEY_LAT = "bench:lat"
KEY_READY = "bench:ready"
QUEUE = "bench"

SCENARIOS = (
    "add_one",
    "add_bulk",
    "add_concurrent",
    "process",
    "latency",
    "mixed",
)

BULK_CHUNK = 500
ADD_TASKS = 50
LATENCY_RATE = 200.0
MIXED_SLEEP = 0.010
MIXED_CONCURRENCY = 100


CURRENT: Recorder | None = None  # the worker process's recorder (for by-name job functions)


class NotAvailable(Exception):
    """The system lacks the feature a scenario needs (reported as n/a)."""


def payload(i: int) -> dict[str, Any]:
    """The small dict every job carries."""
    return {"i": i, "user": f"u-{i % 100000:05d}", "tags": ["bench", "noop"], "n": 3.5}


class Recorder:
    """Per-worker-process counters, flushed to Redis by a background thread."""

    def __init__(self, url: str, sleep: float = 0.0, interval: float = 0.010) -> None:
        self.url = url
        self.sleep = sleep
        self.interval = interval
        self.pid = os.getpid()
        self.count = 0
        self.flushed = 0
        self.first: float | None = None
        self.first_sent = False
        self.last = 0.0
        self.lat: list[float] = []
        self.lock = threading.Lock()
        self.client = RespClient.from_url(url)
        thread = threading.Thread(target=self._loop, name="bench-flusher", daemon=True)
        thread.start()

    def ready(self) -> None:
        with self.lock:  # the flusher thread shares this connection
            self.client.call("INCR", KEY_READY)

    # --- called by the system's processor -------------------------------------------------
    def started(self, data: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        sent = data.get("t")
        if sent is not None:
            self.lat.append(now - float(sent))

    def finished(self) -> None:
        self.last = time.monotonic()
        self.count += 1
        if os.getpid() != self.pid:  # a forked child (RQ's work horse): flush right now
            self._flush_forked()

    async def handle(self, data: dict[str, Any]) -> None:
        """The whole benchmark job body for asyncio systems."""
        self.started(data)
        if self.sleep:
            await asyncio.sleep(self.sleep)
        self.finished()

    def handle_sync(self, data: dict[str, Any]) -> None:
        self.started(data)
        if self.sleep:
            time.sleep(self.sleep)
        self.finished()

    # --- flushing --------------------------------------------------------------------------
    def _commands(self) -> list[tuple[object, ...]]:
        cmds: list[tuple[object, ...]] = []
        count = self.count
        if count != self.flushed:
            cmds.append(("INCRBY", KEY_DONE, count - self.flushed))
            cmds.append(("HSET", KEY_LAST, self.pid, repr(self.last)))
            self.flushed = count
        if self.first is not None and not self.first_sent:
            cmds.append(("HSETNX", KEY_FIRST, self.pid, repr(self.first)))
            self.first_sent = True
        if self.lat:
            lat, self.lat = self.lat, []
            cmds.append(("RPUSH", KEY_LAT, *(repr(x) for x in lat)))
        return cmds

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            if os.getpid() != self.pid:
                return
            with self.lock:
                cmds = self._commands()
                if cmds:
                    self.client.pipeline(cmds)

    def _flush_forked(self) -> None:
        pid = os.getpid()
        client = RespClient.from_url(self.url)
        try:
            cmds: list[tuple[object, ...]] = [
                ("INCRBY", KEY_DONE, 1),
                ("HSET", KEY_LAST, pid, repr(self.last)),
            ]
            if self.first is not None:
                cmds.append(("HSETNX", KEY_FIRST, pid, repr(self.first)))
            if self.lat:
                cmds.append(("RPUSH", KEY_LAT, *(repr(x) for x in self.lat)))
            client.pipeline(cmds)
        finally:
            client.close()


class Adapter:
    """What a system must provide. Producer methods run in the ``run`` process."""

    name = "?"
    has_bulk = True  # a documented bulk-enqueue call exists
    has_concurrency = True  # one worker process can run several jobs at once

    def __init__(self, variant: str = "") -> None:
        self.variant = variant

    def versions(self) -> dict[str, str]:
        raise NotImplementedError

    async def connect(self, url: str) -> None:
        raise NotImplementedError

    async def disconnect(self) -> None:
        return None

    async def add(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        raise NotAvailable("no bulk add")

    async def add_concurrent(self, n: int, tasks: int) -> None:
        """Add n jobs from ``tasks`` concurrent asyncio tasks (sync systems override)."""

        async def one(start: int) -> None:
            for i in range(start, n, tasks):
                await self.add(payload(i))

        await asyncio.gather(*(one(k) for k in range(tasks)))

    async def queued(self) -> int:
        """Jobs waiting to be processed, as the library reports it."""
        raise NotImplementedError

    async def check_done(self, n: int) -> str | None:
        """None when the library agrees all n jobs completed, else what is still off."""
        left = await self.queued()
        return None if left == 0 else f"{left} still queued"

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        """Run the library's worker in this process until killed; jobs call ``rec.handle``."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------
# the controller side ("run")


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values or []]


class Run:
    def __init__(self, adapter: Adapter, module: str, args: argparse.Namespace) -> None:
        self.adapter = adapter
        self.module = module
        self.args = args
        self.url: str = args.url
        self.n: int = args.n
        self.deadline: float = time.monotonic() + float(args.timeout)
        self.redis = RespClient.from_url(self.url)
        self.workers: list[subprocess.Popen[bytes]] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # --- worker processes ------------------------------------------------------------------
    def spawn_workers(self, procs: int, concurrency: int, sleep: float) -> None:
        cmd = [
            sys.executable,
            "-m",
            self.module,
            "worker",
            "--url",
            self.url,
            "--concurrency",
            str(concurrency),
            "--sleep",
            str(sleep),
            "--max-seconds",
            str(int(self.args.timeout) + 30),
        ]
        if self.args.variant:
            cmd += ["--variant", self.args.variant]
        # Worker logs are discarded unless BENCH_DEBUG is set (then they reach our stderr).
        err = None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL
        for _ in range(procs):
            self.workers.append(
                subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
            )

    def stop_workers(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + 3
        for p in self.workers:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.workers = []

    def check_workers_alive(self) -> None:
        for p in self.workers:
            if p.poll() is not None:
                raise RuntimeError(f"a worker process exited early with code {p.returncode}")

    async def wait_ready(self, procs: int) -> None:
        while as_int(self.redis.call("GET", KEY_READY)) < procs:
            self.check_workers_alive()
            if self.left() < 0:
                raise TimeoutError("workers never became ready")
            await asyncio.sleep(0.01)

    async def wait_done(self, n: int) -> None:
        while True:
            done = as_int(self.redis.call("GET", KEY_DONE))
            if done >= n:
                return
            self.check_workers_alive()
            if self.left() < 0:
                raise TimeoutError(f"only {done} of {n} jobs completed before the timeout")
            await asyncio.sleep(0.01)  # timing comes from the workers' own timestamps

    async def verify(self, n: int) -> None:
        """The library must agree, and nothing may have run twice."""
        end = time.monotonic() + 10
        while True:
            problem = await self.adapter.check_done(n)
            if problem is None:
                break
            if time.monotonic() > end:
                raise RuntimeError(f"library does not report {n} completed: {problem}")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        done = as_int(self.redis.call("GET", KEY_DONE))
        if done != n:
            raise RuntimeError(f"{done} job executions for {n} jobs")

    def span(self) -> tuple[float, float]:
        firsts = _floats(self.redis.call("HVALS", KEY_FIRST))
        lasts = _floats(self.redis.call("HVALS", KEY_LAST))
        return min(firsts), max(lasts)

    async def fill(self, n: int) -> None:
        """Queue n jobs the fastest documented way, and check they are all queued."""
        if self.adapter.has_bulk:
            for start in range(0, n, BULK_CHUNK):
                await self.adapter.add_bulk([payload(i) for i in range(start, min(n, start + BULK_CHUNK))])
        else:
            await self.adapter.add_concurrent(n, ADD_TASKS)
        await self.expect_queued(n)

    async def expect_queued(self, n: int) -> None:
        queued = await self.adapter.queued()
        if queued != n:
            raise RuntimeError(f"{queued} jobs queued after adding {n}")

    # --- scenarios -------------------------------------------------------------------------
    async def add_one(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        for i in range(self.n):
            await self.adapter.add(payload(i))
        elapsed = time.perf_counter() - t0
        await self.expect_queued(self.n)
        return {"seconds": elapsed}

    async def add_bulk(self) -> dict[str, Any]:
        if not self.adapter.has_bulk:
            raise NotAvailable("no bulk add API")
        batches = [
            [payload(i) for i in range(s, min(self.n, s + BULK_CHUNK))] for s in range(0, self.n, BULK_CHUNK)
        ]
        t0 = time.perf_counter()
        for batch in batches:
            await self.adapter.add_bulk(batch)
        elapsed = time.perf_counter() - t0
        await self.expect_queued(self.n)
        return {"seconds": elapsed, "chunk": BULK_CHUNK}

    async def add_concurrent(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        await self.adapter.add_concurrent(self.n, ADD_TASKS)
        elapsed = time.perf_counter() - t0
        await self.expect_queued(self.n)
        return {"seconds": elapsed, "tasks": ADD_TASKS}

    async def process(self) -> dict[str, Any]:
        conc, procs = self.args.concurrency, self.args.procs
        if conc > 1 and not self.adapter.has_concurrency:
            if procs == 1:
                raise NotAvailable("one job at a time per worker process")
            conc = 1  # several processes still make sense: run each at its only setting
        await self.fill(self.n)
        self.spawn_workers(procs, conc, 0.0)
        await self.wait_done(self.n)
        first, last = self.span()
        await self.verify(self.n)
        return {"seconds": last - first, "concurrency": conc, "procs": procs}

    async def mixed(self) -> dict[str, Any]:
        if not self.adapter.has_concurrency:
            raise NotAvailable("one job at a time per worker process")
        self.spawn_workers(1, MIXED_CONCURRENCY, MIXED_SLEEP)
        await self.wait_ready(1)
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        await self.adapter.add_concurrent(self.n, ADD_TASKS)
        await self.wait_done(self.n)
        _, last = self.span()
        await self.verify(self.n)
        return {
            "seconds": last - t0,
            "concurrency": MIXED_CONCURRENCY,
            "sleep_ms": MIXED_SLEEP * 1000,
        }

    async def latency(self) -> dict[str, Any]:
        conc = self.args.concurrency if self.adapter.has_concurrency else 1
        self.spawn_workers(1, conc, 0.0)
        await self.wait_ready(1)
        await asyncio.sleep(1.0)  # let the worker settle into its idle wait
        t0 = time.perf_counter()
        for i in range(self.n):
            delay = t0 + i / LATENCY_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            data = payload(i)
            data["t"] = time.monotonic()
            await self.adapter.add(data)
        add_seconds = time.perf_counter() - t0
        await self.wait_done(self.n)
        await self.verify(self.n)
        lat = sorted(_floats(self.redis.call("LRANGE", KEY_LAT, 0, -1)))
        if len(lat) != self.n:
            raise RuntimeError(f"{len(lat)} latency samples for {self.n} jobs")

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))] * 1000

        return {
            "seconds": add_seconds,
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "max_ms": lat[-1] * 1000,
            "add_rate": self.n / add_seconds,
            "concurrency": conc,
        }

    async def run(self) -> dict[str, Any]:
        scenario = self.args.scenario
        body: Callable[[], Awaitable[dict[str, Any]]] = getattr(self, scenario)
        await self.adapter.connect(self.url)
        try:
            out = await body()
        finally:
            self.stop_workers()
            await self.adapter.disconnect()
        out["n"] = self.n
        out["rate"] = self.n / out["seconds"] if out["seconds"] > 0 else 0.0
        out["ok"] = True
        return out


def _worker_main(adapter: Adapter, args: argparse.Namespace) -> None:
    # Bounded: whatever happens, this process ends by itself.
    timer = threading.Timer(args.max_seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    global CURRENT
    rec = CURRENT = Recorder(args.url, sleep=args.sleep)
    rec.ready()
    adapter.run_worker(args.url, args.concurrency, rec)


def main(adapter_cls: type[Adapter]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["versions", "run", "worker"])
    parser.add_argument("--scenario", choices=SCENARIOS)
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--variant", default="")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    adapter = adapter_cls(args.variant)
    module = adapter_cls.__module__
    if module == "__main__":
        module = sys.modules["__main__"].__spec__.name  # type: ignore[union-attr]

    if args.command == "versions":
        print(json.dumps({**adapter.versions(), "python": platform.python_version()}))
        return
    if args.command == "worker":
        _worker_main(adapter, args)
        return

    run = Run(adapter, module, args)
    try:
        if args.variant == "uvloop":
            # The producer side on uvloop too, as in an app served by uvicorn (which uses
            # it when installed) or a `minique worker` process adding jobs.
            import uvloop
            result = uvloop.run(run.run())
        else:
            result = asyncio.run(run.run())
    except NotAvailable as exc:
        result = {"ok": False, "na": str(exc)}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        run.stop_workers()
    print(json.dumps(result), flush=True)
