"""An add whose outcome is unknown is settled: no copy of it runs once it is settled.

Break round 37: an add that Redis never answered (``AddOutcomeUnknown``) left its
sequence number as a gap in the producer's record, and a gap runs when its call comes. A
copy of the call held in the network then added the job after ``get_job()`` had said
there was none, and a caller who had added it again on that answer got it twice. The
producer now fences such a call (lua/fence_add.lua) before its next call goes, on
``Queue.settle`` / ``FlowProducer.settle``, and at ``close()``
(minique/unsettled.py). Each test here holds every send of a call at a proxy, so that the
call never reaches Redis, and then delivers one copy late, straight to Redis; each fails
on the code before the fix (the late copy adds the job).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import producer_queue
from redis.exceptions import ResponseError
from reply_proxy import ReplyProxy

from minique import FlowProducer, Queue
from minique.errors import AddNotSent, AddOutcomeUnknown, SettleError
from minique.server import RedisServer


def _is_add_request(request: Any) -> bool:
    """An add.lua or add_flow.lua call (as a function: the library is loaded)."""
    return (bool(request) and request[0].upper() == b"FCALL"
            and request[1].endswith((b"_add", b"_add_flow")))


class HeldCalls:
    """A proxy's ``on_request`` that keeps, and never forwards, every add call while
    ``holding``; the connection drops, as on a dead link."""

    def __init__(self) -> None:
        self.holding = False
        self.held: list[list[bytes]] = []

    async def __call__(self, _no: int, request: Any) -> str | None:
        if self.holding and _is_add_request(request):
            self.held.append(request)
            return "drop"
        return None


async def _late_copy(admin: Any, request: list[bytes]) -> Any:
    """The held request reaching Redis late, byte for byte as the producer sent it (its
    reply goes nowhere: a refusal is as good as any)."""
    try:
        return await admin.execute_command(*request)
    except ResponseError as exc:
        return exc


async def _job_keys(admin: Any, q: Queue) -> list[str]:
    """The ids of the job hashes of ``q`` (not their sub-keys: logs, dependencies)."""
    cut = len(q.keys.job_prefix)
    keys = [k async for k in admin.scan_iter(match=q.keys.job_prefix + "*", count=1000)]
    return sorted(k.decode()[cut:] for k in keys if b":" not in k[cut:])


@pytest.fixture
async def held(library_server: tuple[RedisServer, Any]) -> Any:
    s, admin = library_server
    calls = HeldCalls()
    proxy = await ReplyProxy(s.port, on_request=calls).start()
    try:
        yield proxy, calls, admin
    finally:
        await proxy.close()


async def _unknown_add(q: Queue, calls: HeldCalls, **options: Any) -> AddOutcomeUnknown:
    calls.holding = True
    with pytest.raises(AddOutcomeUnknown) as caught:
        await q.add("sync", {"n": 1}, **options)
    calls.holding = False
    assert calls.held, "the proxy held no send of the add"
    return caught.value


@pytest.mark.parametrize("pool", ["own link", "blocking pool"])
async def test_a_settled_add_that_never_ran_stays_unadded_when_a_late_copy_comes(
        held: Any, pool: str) -> None:
    proxy, calls, admin = held
    q = producer_queue(proxy.url, "settle-late", pool)
    try:
        await q.add("warm", None)  # the producer's record exists
        error = await _unknown_add(q, calls)
        assert "settle" in str(error)
        [job_id] = error.job_ids
        assert await q.settle(error) == {job_id: None}
        for request in calls.held:
            await _late_copy(admin, request)
        assert await q.get_job(job_id) is None, "a late copy of a settled add ran"
        assert await q.settle(error) == {job_id: None}  # settling again: the same answer
        again = await q.add("sync", {"n": 1})
        assert len(await _job_keys(admin, q)) == 2, "the job was added twice"
        assert again.id != job_id
    finally:
        await q.close()


async def test_the_next_add_settles_an_unknown_one_before_it_goes(held: Any) -> None:
    """No settle(): the producer fences the unknown call before its next call, so a caller
    that added the job again (on get_job() saying there is none) has it once."""
    proxy, calls, admin = held
    q = Queue("settle-next", url=proxy.url)
    try:
        error = await _unknown_add(q, calls, job_id="order-1")
        assert await q.get_job("order-1") is None
        await q.add("sync", {"n": 1}, job_id="order-1")
        job = await q.get_job("order-1")
        assert job is not None
        await admin.delete(q.keys.job("order-1"))  # done and removed by retention
        await admin.delete(q.keys.base + ":dedup:order-1")
        for request in calls.held:
            await _late_copy(admin, request)
        assert await q.get_job("order-1") is None, "a late copy added the job a second time"
        assert await q.settle(error) == {"order-1": None}
    finally:
        await q.close()


async def test_a_late_copy_that_runs_before_the_settle_is_reported_added(held: Any) -> None:
    proxy, calls, admin = held
    q = Queue("settle-ran", url=proxy.url)
    try:
        error = await _unknown_add(q, calls)
        [job_id] = error.job_ids
        await _late_copy(admin, calls.held[0])
        assert await q.settle(error) == {job_id: job_id}
        for request in calls.held:
            await _late_copy(admin, request)
        assert await _job_keys(admin, q) == [job_id]
    finally:
        await q.close()


async def test_close_settles_what_is_unknown(held: Any) -> None:
    proxy, calls, admin = held
    q = Queue("settle-close", url=proxy.url)
    error = await _unknown_add(q, calls)
    await q.close()
    for request in calls.held:
        await _late_copy(admin, request)
    assert await _job_keys(admin, q) == [], f"a late copy of {error.job_ids} ran after close()"


async def test_an_unknown_add_bulk_is_settled_per_job(held: Any) -> None:
    """add_bulk's pipelined calls (250 jobs each): every send of the second call is held,
    and the first one's reply is lost with the connection (it ran); settle names the
    first call's jobs added and the second's not."""
    proxy, calls, admin = held
    q = Queue("settle-bulk", url=proxy.url)
    seen = 0

    async def second_call_held(no: int, request: Any) -> str | None:
        nonlocal seen
        if calls.holding and _is_add_request(request):
            seen += 1
            if seen >= 2:
                calls.held.append(request)
                return "drop"
        return None

    proxy.on_request = second_call_held
    calls.holding = True
    try:
        with pytest.raises(AddOutcomeUnknown) as caught:
            await q.add_bulk([("t", {"i": i}) for i in range(400)])
        calls.holding = False
        error = caught.value
        settled = await q.settle(error)
        assert list(settled) == error.job_ids
        not_added = {job_id for job_id, made in settled.items() if made is None}
        assert len(not_added) == 150
        assert all(made == job_id for job_id, made in settled.items() if made is not None)
        for request in calls.held:
            await _late_copy(admin, request)
        stored = await _job_keys(admin, q)
        assert len(stored) == 250, "a late copy of a settled call ran"
        assert not set(stored) & not_added
    finally:
        await q.close()


async def test_an_unknown_flow_is_settled(held: Any) -> None:
    proxy, calls, admin = held
    flow = FlowProducer(url=proxy.url)
    tree = {"name": "report", "queue": "settle-flow", "opts": {"job_id": "parent-1"},
            "children": [{"name": "part", "queue": "settle-flow", "opts": {"job_id": f"c{i}"}}
                         for i in range(3)]}
    q = Queue("settle-flow", url=proxy.url)
    calls.holding = True
    try:
        with pytest.raises(AddOutcomeUnknown) as caught:
            await flow.add(tree)
        calls.holding = False
        assert calls.held
        assert await flow.settle(caught.value) is False
        for request in calls.held:
            await _late_copy(admin, request)
        assert await _job_keys(admin, q) == [], "a late copy of a settled flow ran"
        with pytest.raises(ValueError):
            await q.settle(caught.value)
        await flow.add(tree)
        assert len(await _job_keys(admin, q)) == 4
    finally:
        await flow.close()
        await q.close()


async def test_an_add_waits_for_the_fence_and_is_not_sent_while_redis_is_away(held: Any) -> None:
    proxy, calls, admin = held
    q = Queue("settle-away", url=proxy.url)
    try:
        error = await _unknown_add(q, calls)
        proxy.refuse = True
        with pytest.raises(AddNotSent):
            await q.add("sync", {"n": 2})
        with pytest.raises(SettleError):
            await q.settle(error)
        proxy.refuse = False
        job = await q.add("sync", {"n": 3})
        for request in calls.held:
            await _late_copy(admin, request)
        assert await _job_keys(admin, q) == [job.id]
        assert await q.settle(error) == {error.job_ids[0]: None}
    finally:
        await q.close()


async def test_settle_refuses_an_error_of_another_queue(held: Any) -> None:
    proxy, calls, _admin = held
    q = Queue("settle-mine", url=proxy.url)
    other = Queue("settle-other", url=proxy.url)
    try:
        error = await _unknown_add(q, calls)
        with pytest.raises(ValueError, match="Queue that raised it"):
            await other.settle(error)
    finally:
        await q.close()
        await other.close()
