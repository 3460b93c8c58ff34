"""Attacks on the suspect held job (docs/design/leases.md, "What counts as a stall", the
*suspect* bullets): a held job that a dead holder's hold gave back is marked (lua/stalled.lua:
'hrc'), the take's reply says so (lua/includes/take.lua: the 13th field), and a worker that
holds it starts it only once Redis has answered its start note (minique/worker.py:
_Running.suspect/start_known)."""

from __future__ import annotations

import asyncio
from typing import Any

from driver import die_holding, finish, take
from helpers import wait_until

from minique import Queue, Worker, scripts
from minique.worker import HEADER, JOB_FIELDS


def _marks(reply: list[Any]) -> dict[str, bytes]:
    """job id -> b"1" for a job the take marked suspect ('!' after its stalled count)."""
    body = reply[HEADER:]
    return {body[i].decode(): b"1" if body[i + 9].endswith(b"!") else b""
            for i in range(0, len(body), JOB_FIELDS)}


async def test_the_first_dead_holders_hold_marks_the_job_suspect_on_a_fresh_queue(
        queue: Queue) -> None:
    """Found by a break run, fixed since. lua/stalled.lua gave a dead holder's held job
    back with HINCRBY hrc, but set meta 'xs' only in count_stall (a stall counted), and
    includes/take.lua reads 'hrc' only when meta 'xs' is set. So on a queue where no job
    had stalled yet, the normal case for a first crash, the take after the first give-back
    did not read hrc and its 13th field was '': the job was not suspect, the next
    prefetching worker started it without waiting for its start note, and if it was
    poison the results waiting in that worker were lost at the second crash too. The
    other tests marked jobs by hand with HSET meta xs 1, which hid it. Expected: the
    take's reply marks h suspect ('1')."""
    await queue.add("x", 1, job_id="h")
    await die_holding(queue, ["h"])
    assert await queue.redis.hget(queue.keys.job("h"), "hrc") == b"1"
    # A prefetching worker: one free slot busy elsewhere, so it takes h to hold.
    await queue.add("x", 0, job_id="a", priority=1)
    reply = await take(queue, "w2", 1, 1)
    marks = _marks(reply)
    assert "h" in marks, f"h not taken: {marks}"
    assert marks["h"] == b"1", (
        f"h was given back by a dead holder's hold (hrc=1) but the take does not mark it "
        f"suspect (13th field {marks['h']!r}); meta xs = "
        f"{await queue.redis.hget(queue.keys.meta, 'xs')!r}")


async def test_close_while_a_suspect_job_waits_for_its_note_under_client_pause(
        redis_url: str, qname: str, client: Any) -> None:
    """Passes (regression guard). A warm prefetching worker (concurrency 1) holds suspect
    jobs (marked as stalled.lua does: hrc, meta xs, enqueue_return); while one waits for
    the answer to its start note, Redis stalls every write (CLIENT PAUSE 800 WRITE) and
    the worker is closed with a 0.2 s grace. close() must return, and every job, the
    waiting one included, runs exactly once in the end (a second worker takes the rest)."""
    q = Queue(qname, url=redis_url)
    runs: dict[str, int] = {}

    async def work(job: Any) -> None:
        runs[job.id] = runs.get(job.id, 0) + 1

    w = Worker(qname, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(w.run(handle_signals=False))
    w2: Worker | None = None
    task2: asyncio.Task[None] | None = None
    try:
        await q.add_bulk([("x", i, {"job_id": f"w{i}"}) for i in range(300)])
        await wait_until(lambda: len(runs) >= 300, timeout=20, message="warm-up done")
        mark = ("local jk = JP .. ARGV[2]; redis.call('ZREM', K.delayed, ARGV[2]); "
                "redis.call('HINCRBY', jk, 'hrc', 1); redis.call('HSET', K.meta, 'xs', '1'); "
                "enqueue_return(jk, ARGV[2], '')")
        await q.add_bulk([("x", i, {"job_id": f"s{i}", "delay": 600}) for i in range(50)])
        for i in range(50):
            await q.redis.eval(scripts.eval_source(mark), len(q.keys.vector),
                               *q.keys.vector, q.keys.job_prefix, f"s{i}")

        def waiting_on_note() -> bool:
            return any(r.start_known is not None and not r.start_known.done()
                       for r in list(w._running.values()))
        await wait_until(waiting_on_note, timeout=20, interval=0,
                         message="a suspect job waits for its start note")
        await client.execute_command("CLIENT", "PAUSE", 800, "WRITE")
        await asyncio.wait_for(w.close(timeout=0.2), timeout=15)
        await asyncio.wait_for(task, timeout=5)
        w2 = Worker(qname, work, url=redis_url, concurrency=1, lock_duration=1.0)
        task2 = asyncio.create_task(w2.run(handle_signals=False))
        await wait_until(lambda: len(runs) >= 350, timeout=30, message="every job ran")
        stats = await q.get_stats()
        await wait_until(lambda: _completed(q, 350), timeout=30, message="all completed")
        twice = {k: v for k, v in runs.items() if v > 1}
        assert not twice, f"ran more than once: {twice}; stats {stats}"
    finally:
        if w2 is not None and task2 is not None:
            await w2.close(timeout=2)
            await task2
        if not task.done():
            await w.close(timeout=2)
            await task
        await q.obliterate(force=True)
        await q.close()


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def test_a_suspect_job_removed_while_its_start_is_asked_does_not_run(
        queue: Queue) -> None:
    """A worker holds a suspect job and asks Redis to start it (its worker waits for the
    answer before running it). A removal that reached Redis first wins, as it would for a
    job fetched one at a time: the start is refused (2, gone) and the job deleted. A plain
    held job's start note still runs on (it had started), as before."""
    await queue.add_bulk([("x", i, {"job_id": f"j{i}"}) for i in range(2)])
    await die_holding(queue, ["j0", "j1"])
    _, held, _ = await finish(queue, [], 0, hold=2, hold_ms=30000, worker="w")
    assert [i for i, _ in held] == ["j0", "j1"]
    removals = [asyncio.create_task(queue.remove_job(i)) for i in ("j0", "j1")]
    await wait_until(lambda: _both_removed(queue), message="both marked removed")
    now = await queue.redis.time()
    ms = str(int(now[0]) * 1000 + int(now[1]) // 1000)
    statuses, _, _ = await finish(queue, [(*held[0], "S", "", "", 0, -1, -1, ms),
                                          (*held[1], "s", "", "", 0, -1, -1, ms)], 0,
                                  worker="w")
    assert statuses == [2, 1]
    assert await queue.get_job("j0") is None
    assert await queue.get_state("j1") == "active"  # started there: it runs on
    removals[0].cancel()
    removals[1].cancel()
    await asyncio.gather(*removals, return_exceptions=True)


async def _both_removed(q: Queue) -> bool:
    return all([await q.redis.hget(q.keys.job(i), "st") == b"removed" for i in ("j0", "j1")])
