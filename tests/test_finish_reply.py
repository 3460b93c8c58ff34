"""The finish call's reply layout (lua/finish.lua): the take's reply (header, then the jobs),
then one status per result, for a first call and for the same call re-sent; read with
minique.worker.split_finish_reply."""

from __future__ import annotations

import pytest
from driver import HEADER, JOB_FIELDS, fetch
from helpers import wait_until

from minique import Queue, scripts
from minique.worker import HEADER_STARTED_MS, encode_results, split_finish_reply


def _call(queue: Queue, results: list[tuple[object, ...]], want: int, call_id: str) -> list[object]:
    return [queue.keys.job_prefix, want, 30000, "w-layout", 0, 0, 1000, 0, 0, call_id,
            len(results), *encode_results(results)]


# A worker's calls count up ("7"); other callers' ids are any string, as long as msgpack's
# str8 and str16 too (the record is matched on its packed bytes; lua/finish.lua).
@pytest.mark.parametrize("call_id", ["7", "layout-1", "a/b/1", "x" * 40, "y" * 300],
                         ids=["counting", "named", "slashes", "str8", "str16"])
async def test_statuses_come_last_in_a_first_call_and_in_its_resend(
        queue: Queue, call_id: str) -> None:
    await queue.add_bulk([("j", i) for i in range(4)])
    taken = await fetch(queue, 2, worker="w-layout")
    assert len(taken) == 2
    gone = ("no-such-job", "1", "c", b"\xc0", "", 0, -1, -1, "", "")
    results = [(job_id, token, "c", b"\xc0", "", 0, -1, -1, "", "") for job_id, token in taken]
    args = _call(queue, [*results, gone], 2, call_id)
    first = await scripts.run(queue.redis, "finish", queue.keys.vector, args)
    # The re-send comes at a later ms of the Redis clock, so the start time it answers
    # tells the first call's from its own.
    first_ms = int(first[HEADER_STARTED_MS])

    async def clock_moved() -> bool:
        sec, usec = await queue.redis.time()
        return sec * 1000 + usec // 1000 > first_ms
    await wait_until(clock_moved, timeout=5, message="the Redis clock past the first call")
    again = await scripts.run(queue.redis, "finish", queue.keys.vector, args)  # a re-send
    replies, started = [], []
    for reply in (first, again):
        statuses, take = split_finish_reply(list(reply), 3)
        assert [int(s) for s in statuses] == [1, 1, 2]  # completed, completed, gone
        assert int(take[0]) == 0 and int(take[1]) == 2  # status ok, two taken for slots
        body = take[HEADER:]
        assert len(body) == 2 * JOB_FIELDS
        replies.append([(body[i], body[i + 1]) for i in range(0, len(body), JOB_FIELDS)])
        started.append(int(take[HEADER_STARTED_MS]))  # the active jobs' start time (ms)
    assert replies[0] == replies[1]  # the re-send answers with the same jobs and tokens
    # Their start time is the first call's, as stored, in the re-send's answer too.
    stored = {int(await queue.redis.hget(queue.keys.job(r[0].decode()), "pon"))
              for r in replies[0]}
    assert stored == {started[0]} and started[1] == started[0]
    assert {jid for jid, _ in taken}.isdisjoint(r[0].decode() for r in replies[0])
    stats = await queue.get_stats()
    assert stats["completed"] == 2 and stats["active"] == 2 and stats["waiting"] == 0


async def test_a_call_without_results_is_the_take_reply_alone(queue: Queue) -> None:
    await queue.add("j", 1)
    reply = await scripts.run(queue.redis, "finish", queue.keys.vector,
                              _call(queue, [], 1, "layout-2"))
    statuses, take = split_finish_reply(list(reply), 0)
    assert statuses == [] and len(take) == HEADER + JOB_FIELDS
