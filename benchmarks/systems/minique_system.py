"""minique, run from the main venv (/work/main/.venv) like any other system.

The API this adapter expects (``benchmarks.compare`` skips minique, with the reason, when
``python -m benchmarks.systems.minique_system versions`` fails)::

    from minique import Queue, Worker
    q = Queue("bench", url=url)
    await q.add("noop", {"i": 1})
    await q.add_bulk([("noop", data, {}) for data in items])    # (name, data, options)
    stats = await q.get_stats()   # waiting, active, completed, failed, delayed, total
    w = Worker("bench", processor, url=url, concurrency=50)      # async def processor(job)
    await w.run(); await w.close()
    await q.obliterate(force=True); await q.close()
"""

from __future__ import annotations

import asyncio
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from benchmarks.systems._runner import QUEUE, Adapter, Recorder, main

try:
    from minique import Queue, Worker
except ImportError as exc:  # the engine has not landed yet
    sys.exit(f"minique is not importable yet: {exc}")

REQUIRED: dict[str, tuple[type, tuple[str, ...]]] = {
    "Queue": (Queue, ("add", "add_bulk", "get_stats", "obliterate", "close")),
    "Worker": (Worker, ("run", "close")),
}


def _missing() -> list[str]:
    return [
        f"{name}.{attr}"
        for name, (cls, attrs) in REQUIRED.items()
        for attr in attrs
        if not hasattr(cls, attr)
    ]


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


class Minique(Adapter):
    name = "minique"

    def versions(self) -> dict[str, str]:
        missing = _missing()
        if missing:
            sys.exit("minique lacks " + ", ".join(missing))
        import minique

        return {
            "minique": str(getattr(minique, "__version__", _version("minique-queue"))),
            "redis-py (main venv)": _version("redis"),
            "hiredis (main venv)": _version("hiredis"),
            "msgspec (main venv)": _version("msgspec"),
        }

    async def connect(self, url: str) -> None:
        self.queue = Queue(QUEUE, url=url)

    async def disconnect(self) -> None:
        await self.queue.close()

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.add("noop", data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        await self.queue.add_bulk([("noop", d, {}) for d in items])

    async def queued(self) -> int:
        stats = await self.queue.get_stats()
        return int(stats["waiting"])

    async def check_done(self, n: int) -> str | None:
        # `completed` may be trimmed by retention (keep-last-N), so it is not compared with n;
        # the harness separately checks that exactly n jobs ran.
        s = await self.queue.get_stats()
        ok = s["failed"] == 0 and s["waiting"] == 0 and s["active"] == 0 and s["delayed"] == 0
        return None if ok and s["completed"] > 0 else str(s)

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        async def noop(job: Any) -> None:
            await rec.handle(job.data)

        async def serve() -> None:
            worker = Worker(QUEUE, noop, url=url, concurrency=concurrency,
                            prefetch=self.variant != "noprefetch")
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.close()))
            await worker.run(handle_signals=False)

        if self.variant == "uvloop":
            import uvloop  # as `minique worker` does when uvloop is installed

            uvloop.run(serve())
        else:
            asyncio.run(serve())


if __name__ == "__main__":
    main(Minique)
