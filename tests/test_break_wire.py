"""Break tests for the wire: concurrent adds that coalesce while one call is in flight,
cancels at every point of an add, re-sends by redis-py, hostile ids, killed connections,
replies a restarting Redis gives, and a worker killed with jobs held ahead.

The promises attacked (README, docs/guide/queue.md, docs/guide/workers.md): a re-sent call
never changes anything twice; an add that returned added exactly one job, one that raised
or was cancelled before its call went out added none; every job added is processed once
(or fails visibly), and a job that kills its worker counts as stalled. Each test
describes the bug a break run found, fixed since, and fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from chaos.proxy import ChaosProxy
from helpers import ROOT, wait_until
from resend import held_replies, proxied_queue

from minique import Queue
from minique.errors import AddOutcomeUnknown
from minique.server import RedisServer

# ----- helpers ----------------------------------------------------------------------------


async def _turns(condition: Callable[[], bool], message: str, limit: int = 10_000) -> None:
    """Lets the event loop run one turn at a time until ``condition`` holds (a window a
    poll every 10 ms would miss)."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{message} not reached within {limit} loop turns")


async def _job_ids(q: Queue) -> set[str]:
    prefix = q.keys.job_prefix
    return {k.decode()[len(prefix):] async for k in q.redis.scan_iter(match=f"{prefix}*",
                                                                       count=1000)}


async def _held_reply(proxy: ChaosProxy, admin: Any, call: Awaitable[Any]) -> Any:
    """One call's outcome, its first reply lost (resend.held_replies); raises its error."""
    [outcome] = await held_replies(proxy, admin, [call])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# ----- adds cancelled while they wait ----------------------------------------------------


async def test_an_add_cancelled_while_its_coalesced_call_reserves_ids_adds_nothing(
        queue: Queue) -> None:
    """docs/guide/queue.md: "An add cancelled while it waits was never sent and
    adds nothing". Add A is in flight; add B (automatic id) waits behind it. When A's reply
    comes, the flusher takes B off the waiting list and, since the producer has no ids
    reserved, first reserves a block with INCRBY. B is cancelled during that INCRBY (a
    wait_for timing out, say): its call has not been sent, the flusher checked for cancels
    before the INCRBY and never again, so B's job is added anyway although B's caller got
    CancelledError. The window opens on every 100th automatic id (and on every first add
    of a producer), so under load a cancelled waiting add now and then leaves a job."""
    a = asyncio.create_task(queue.add("a", 1, job_id="a"))
    await asyncio.sleep(0)  # A's call is out
    b = asyncio.create_task(queue.add("b", 2))
    await _turns(lambda: len(queue._pending_adds) == 1, "B waits behind A")
    await a
    # The flusher has taken B; its first await is the INCRBY reserving ids.
    await _turns(lambda: not queue._pending_adds, "the flusher took B")
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    # Whatever the flusher does next, it does within a few loop turns.
    await wait_until(lambda: queue._flusher is not None and queue._flusher.done(),
                     message="the flusher ended")
    assert await _job_ids(queue) == {"a"}, "a cancelled add that was never sent added a job"


async def test_an_add_cancelled_while_its_coalesced_call_waits_behind_a_bulk_adds_nothing(
        queue: Queue) -> None:
    """The same promise, with custom ids (no INCRBY): the flusher takes waiting
    adds off the list, drops the cancelled ones, then waits for the producer's lock, which
    an add_bulk holds while its call is out. An add cancelled during that wait is sent
    anyway and its job added."""
    await queue.add("warm", 0, job_id="warm")
    big = [("bulk", os.urandom(200_000)) for _ in range(40)]  # a call that takes a while
    a = asyncio.create_task(queue.add("a", 1, job_id="a"))
    await asyncio.sleep(0)  # A's call is out, under the lock
    b = asyncio.create_task(queue.add("b", 2, job_id="b"))
    bulk = asyncio.create_task(queue.add_bulk(big))
    await _turns(lambda: len(queue._pending_adds) == 1, "B waits behind A")
    await a
    # The bulk has the lock now; the flusher has taken B and waits for the lock.
    await _turns(lambda: not queue._pending_adds, "the flusher took B")
    assert not bulk.done()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    await bulk
    await wait_until(lambda: queue._flusher is not None and queue._flusher.done(),
                     message="the flusher ended")
    assert "b" not in await _job_ids(queue), "a cancelled add that was never sent added a job"


# ----- calls redis-py re-sends after a timeout ---------------------------------------------


async def test_a_log_line_resent_after_a_timeout_is_appended_once(
        redis_server: RedisServer) -> None:
    """docs/guide/workers.md: "Every call that changes state is either idempotent
    or carries an identity chosen before its first send". ``job.log()`` /
    ``queue.add_log()`` is an RPUSH in a script with no identity: its reply is lost (a
    stalled link, a Redis slower than the socket timeout), redis-py re-sends it, and the
    line is in the job's log twice (add_log even returns 3 for the second line)."""
    async with proxied_queue(redis_server, "bw-log") as (q, direct, proxy):
        await q.add("x", 1, job_id="j")
        await q.add_log("j", "first")  # the client's connection is open and warm
        lines = await _held_reply(proxy, direct.redis, q.add_log("j", "second"))
        assert await direct.get_job_logs("j") == ["first", "second"]
        assert lines == 2


async def test_a_remove_resent_after_a_timeout_reports_the_removal(
        redis_server: RedisServer) -> None:
    """``remove_job`` whose first send ran but whose reply was lost: redis-py's
    re-send finds no job and the caller is told False ("no such job") although its own
    call removed it. Nothing changes twice, but the answer is the re-send's, not the
    call's (``promote_job`` likewise raises InvalidJobState "not delayed" after promoting)."""
    async with proxied_queue(redis_server, "bw-remove") as (q, direct, proxy):
        await q.add("x", 1, job_id="j")
        await q.get_job("j")  # the client's connection is open
        removed = await _held_reply(proxy, direct.redis, q.remove_job("j"))
        assert await direct.get_job("j") is None
        assert removed is True, "the call removed the job, yet remove_job says it did not"


async def test_a_promote_and_a_progress_resent_after_a_timeout_act_once(
        redis_server: RedisServer) -> None:
    """The same class: ``promote_job`` re-sent after it promoted raised InvalidJobState
    ("not delayed"), and a re-sent progress emitted its event twice."""
    async with proxied_queue(redis_server, "bw-promote") as (q, direct, proxy):
        await q.add("x", 1, job_id="j", delay=600)
        await q.get_job("j")  # the client's connection is open
        await _held_reply(proxy, direct.redis, q.promote_job("j"))
        assert await direct.get_state("j") == "waiting"
        before = await direct.redis.xlen(direct.keys.events)
        await _held_reply(proxy, direct.redis, q.update_progress("j", 50))
        events = await direct.redis.xrange(direct.keys.events, "-", "+")
        progress = [e for e in events[before - len(events):] if e[1].get(b"ev") == b"progress"]
        assert len(progress) == 1, progress


# ----- hostile input and odd replies -------------------------------------------------------


async def test_a_job_id_that_cannot_be_encoded_fails_only_its_own_add(queue: Queue) -> None:
    """A job id (or name) with a lone surrogate ('\\udc80', what os.fsdecode gives
    for a non-UTF-8 file name) is not checked when the add is prepared (a group name is:
    ValueError). It fails only when the call is packed, inside the coalesced call, so every
    other add that waited with it raises its UnicodeEncodeError and adds nothing: innocent
    callers fail for another caller's bad input."""
    a = asyncio.create_task(queue.add("a", 1, job_id="a"))
    await asyncio.sleep(0)  # A's call is out; the next adds wait and then go together
    good = [asyncio.create_task(queue.add("good", i, job_id=f"g{i}")) for i in range(3)]
    bad = asyncio.create_task(queue.add("bad", 0, job_id="bad-\udc80"))
    await a
    outcomes = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(outcomes[-1], ValueError)  # the bad add fails, fine
    errors = [o for o in outcomes[:-1] if isinstance(o, BaseException)]
    assert not errors, f"good adds failed for the bad one's id: {errors!r}"
    assert await _job_ids(queue) == {"a", "g0", "g1", "g2"}


class _LoadingProxy(ChaosProxy):
    """Answers every FCALL with the error a Redis that is loading its dataset gives (after
    a restart, while the AOF or RDB loads) while ``loading`` is set."""

    loading: bool = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def up() -> None:
            while data := await reader.read(65536):
                if self.loading and (b"FCALL" in data or b"EVALSHA" in data):
                    writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
                    continue
                up_writer.write(data)

        async def down() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)

        for coro in (up(), down()):
            task = asyncio.create_task(coro)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)
        self._writers.update((writer, up_writer))


async def test_an_add_answered_loading_raises_a_redis_error(redis_server: RedisServer) -> None:
    """Found restarting Redis with appendonly yes under producers (3,800 of 50,000
    adds): while it loads, Redis answers every command with -LOADING, which redis-py maps
    to BusyLoadingError, a ConnectionError, not a ResponseError. The add's own link
    (minique/own_link.py) raises only ResponseErrors and returns any other error object as
    the reply, so the add dies with ``TypeError: 'BusyLoadingError' object is not
    subscriptable``: not a Redis error, not AddOutcomeUnknown, and not retried as the
    client's retry policy (ConnectionError) would. Nothing was added, but the caller cannot
    tell that from a bug in its own code."""
    proxy = _LoadingProxy(redis_server.port)
    await proxy.start()
    q = Queue("bw-loading", url=proxy.url)
    try:
        await q.add("warm", 0)
        proxy.loading = True
        # Tried again by the retry policy (Redis did not run it), then told as an add
        # whose outcome is unknown (an earlier attempt may have run before a restart).
        with pytest.raises(AddOutcomeUnknown, match="BusyLoadingError"):
            await q.add("x", 1)
    finally:
        proxy.loading = False
        await q.obliterate(force=True)
        await q.close()
        await proxy.close()


# ----- worker processes ---------------------------------------------------------------------


def _worker(url: str, prefix: str, target: str, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "minique", "--log-level", "ERROR", "worker",
           f"tests.break_wire_procs:{target}", "--queue", "bw", "--url", url, "--prefix",
           prefix, "--lock-duration", "1", "--stalled-interval", "1", "--block-timeout", "1",
           *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def test_a_held_job_that_crashes_its_worker_counts_as_stalled_the_next_time(
        redis_url: str, procs: list[Any], tmp_path: Path) -> None:
    """docs/design/leases.md: a started job whose lease runs out counts as stalled, "and a
    job that kills its worker (OOM, a crash in native code) is exactly what the limit is
    for". A warm worker takes short jobs in batches, holding most of them ahead; when a
    held job starts, Redis learns of it only with the worker's next call. A job that
    crashes its worker at once (here os.kill 9 as its first act) never gets that call out:
    Redis takes it back as a held job that never started, with no stall recorded. It was
    held again and again, so max_stalled_count never counted a crash: a poison job could
    kill workers for ever. Now such a job comes back suspect, and a worker that holds it
    starts it only once Redis knows of the start (with the results waiting to go): its
    crash in a second prefetching worker counts, and no job run before it is lost.
    With --concurrency 1 the poison, third in its batch, is held."""
    prefix = f"bwp{random.randrange(10**9)}"
    q = Queue("bw", url=redis_url, prefix=prefix)
    crash_log = tmp_path / "crashes"
    try:
        crashy = _worker(redis_url, prefix, "registry", "--concurrency", "1")
        procs.append(crashy)
        await q.add_bulk([("run", {}) for _ in range(200)])  # measured short: it holds ahead
        await wait_until(lambda: _stats_done(q, 200), timeout=20, message="warm-up done")
        poison = (await q.add_bulk([("run", {}), ("run", {}),
                                    ("poison", {"crash_log": str(crash_log)}),
                                    *[("run", {}) for _ in range(30)]]))[2]
        await wait_until(lambda: crashy.poll() is not None, timeout=20,
                         message="the poison job crashed its worker")
        assert len((await asyncio.to_thread(crash_log.read_text)).split()) == 1
        # A second worker like the first takes the crashed worker's jobs back.
        crashy2 = _worker(redis_url, prefix, "registry", "--concurrency", "1")
        procs.append(crashy2)
        await wait_until(lambda: crashy2.poll() is not None, timeout=30,
                         message="the poison job crashed the second worker")
        assert len((await asyncio.to_thread(crash_log.read_text)).split()) == 2
        survivor = _worker(redis_url, prefix, "safe", "--concurrency", "1", "--no-prefetch")
        procs.append(survivor)
        await wait_until(lambda: _state_is(q, poison.id, "completed"), timeout=20,
                         message="the poison job ran in the survivor")
        outcomes = [a.outcome for a in await q.get_job_attempts(poison.id)]
        assert outcomes == ["stalled", "completed"], (
            f"the second crash left no trace: attempts {outcomes}")
        # The jobs that ran before it in the second worker were saved before it started
        # (a job that finished while its result waited for the next call, then lost at the
        # crash, had counted a stall at each crash, and failed at the second).
        await wait_until(lambda: _stats_done(q, 233), timeout=20,
                         message="every job done, none failed")
        assert (await q.get_stats())["failed"] == 0
    finally:
        await q.obliterate(force=True)
        await q.close()


async def _stats_done(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def _state_is(q: Queue, job_id: str, state: str) -> bool:
    return await q.get_state(job_id) == state


# ----- attacks that pass (regression guards) ------------------------------------------------


async def test_concurrent_adds_with_random_cancels_and_killed_connections_never_duplicate(
        queue: Queue, client: Any) -> None:
    """Passes. 600 concurrent adds (half with custom ids), 30% under wait_for with tiny
    timeouts, 100 more cancelled after random short delays, while another client kills
    every other connection (CLIENT KILL) now and then. Every add that returned has exactly
    one job; no job has two copies; the jobs of cancelled adds are the documented
    ambiguous case (cancelled after the call went out)."""
    rng = random.Random(7)
    outcome: dict[int, str] = {}

    async def one(i: int) -> None:
        call = queue.add("n", {"i": i}, job_id=f"c{i}" if i % 2 else None)
        try:
            if rng.random() < 0.3:
                await asyncio.wait_for(call, rng.choice([0, 1e-6, 1e-4, 1e-3]))
            else:
                await call
            outcome[i] = "ok"
        except (asyncio.CancelledError, TimeoutError):
            outcome[i] = "cancelled"
        except AddOutcomeUnknown:
            outcome[i] = "unknown"

    async def killer() -> None:
        for _ in range(5):
            await asyncio.sleep(rng.uniform(0, 0.01))
            await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    tasks = []
    for i in range(600):
        tasks.append(asyncio.create_task(one(i)))
        if rng.random() < 0.2:
            await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    for t in rng.sample(tasks, 100):
        loop.call_later(rng.random() * 0.005, t.cancel)
    await asyncio.gather(killer(), *tasks, return_exceptions=True)
    copies: dict[int, int] = {}
    for job_id in await _job_ids(queue):
        job = await queue.get_job(job_id)
        assert job is not None
        copies[job.data["i"]] = copies.get(job.data["i"], 0) + 1
    assert not {i: n for i, n in copies.items() if n > 1}
    assert not [i for i, o in outcome.items() if o == "ok" and copies.get(i) != 1]


@pytest.mark.parametrize("size", [6_000_000])
async def test_huge_hostile_adds_cancelled_mid_write_leave_whole_jobs_and_a_usable_link(
        queue: Queue, size: int) -> None:
    """Passes. Adds of several MB (more than the socket buffer, so the write must drain),
    with ids and names holding '|', newlines, NULs and non-ASCII, cancelled at random
    points of the write, one by one, by add and by add_bulk. A cancelled add may have run
    (its bytes were handed to the transport, whose close flushes them: documented as
    "may have added its job"), but never twice, never cut short, and the next add works."""
    rng = random.Random(3)
    big = os.urandom(size)
    returned: dict[str, str] = {}
    for i in range(12):
        job_id = f"k|\n\x00é-{i}"
        if i % 2:
            call: Awaitable[Any] = queue.add("big|\n\x00ü", {"i": i, "b": big}, job_id=job_id)
        else:
            call = queue.add_bulk([("big|\n\x00ü", {"i": i, "b": big}, {"job_id": job_id})])
        task = asyncio.ensure_future(call)
        await asyncio.sleep(rng.uniform(0, 0.02))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, AddOutcomeUnknown):
            await task
            returned[job_id] = "ok"
        after = await queue.add("small", {"after": i})
        got = await queue.get_job(after.id)
        assert got is not None and got.data == {"after": i}
    for job_id in await _job_ids(queue):
        job = await queue.get_job(job_id)
        assert job is not None
        if job.name != "small":
            assert job.name == "big|\n\x00ü" and job.data["b"] == big
            assert job.id == f"k|\n\x00é-{job.data['i']}"
    ids = await _job_ids(queue)
    assert set(returned) <= ids
