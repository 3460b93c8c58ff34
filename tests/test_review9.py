"""Review 9 findings (session b5d03dd..96c66ad)."""

from __future__ import annotations

import asyncio

import pytest

from minique import Queue


async def _handed_back_firing(queue: Queue) -> str:
    """A scheduler's first firing, held by worker "w" as an earlier version held firings
    (driver.legacy_held_firing: they are never held now) and handed back without starting
    (its hold ran out, or a control change ended it): waiting again, never run."""
    from driver import finish, legacy_held_firing

    made = await queue.upsert_job_scheduler("s", every=60.0, job_name="old", data={"v": 1})
    firing = made.pending_job_id or ""
    held, token = await legacy_held_firing(queue)
    assert held == firing
    statuses, _, _ = await finish(queue, [(firing, token, "h", "", "", 0, -1, -1,
                                           "")], worker="w")
    assert statuses == [1]
    assert await queue.get_state(firing) == "waiting"
    return firing


async def test_removing_a_scheduler_withdraws_a_firing_handed_back_unstarted(
        queue: Queue) -> None:
    """remove_job_scheduler withdraws the pending firing ('nid') and one a worker holds
    ('lid', while 'held'). A firing taken to hold and handed back before it started (holds
    last 50 ms; any control change ends them) is waiting again, but it is neither: it ran
    after its scheduler was gone."""
    firing = await _handed_back_firing(queue)
    assert await queue.remove_job_scheduler("s") is True
    assert await queue.get_job(firing) is None, (
        f"the handed-back firing is {await queue.get_state(firing)} after the removal")


async def test_a_new_timing_withdraws_a_firing_handed_back_unstarted(queue: Queue) -> None:
    """The same for a new timing: the old generation's handed-back firing stayed waiting
    beside the new generation's."""
    firing = await _handed_back_firing(queue)
    await queue.upsert_job_scheduler("s", every=120.0, job_name="old", data={"v": 1})
    assert await queue.get_job(firing) is None, (
        f"the old generation's firing is {await queue.get_state(firing)}")


async def test_a_new_template_reaches_a_firing_handed_back_unstarted(queue: Queue) -> None:
    """And a new template: a waiting firing gets it, but not one handed back."""
    firing = await _handed_back_firing(queue)
    await queue.upsert_job_scheduler("s", every=60.0, job_name="new", data={"v": 2})
    job = await queue.get_job(firing)
    assert job is not None and job.state == "waiting"
    assert (job.name, job.data) == ("new", {"v": 2})


async def test_an_add_asks_again_when_its_held_parent_was_taken_again_before_it_looked(
        queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """add_flow asks the holder of a held parent to hand it back and returned {-1, ms};
    flows._after_hand_back then read the parent's (st, tok) to wait for a change. Read a
    round trip after the call, it could already be the answer: handed back and taken to
    hold again by another worker, who was never asked (it took the parent after the
    control change). The add then waited for that worker until its deadline (the hold
    left plus a second; then InvalidJobState) instead of asking it at once."""
    from driver import HEADER, finish, take
    from helpers import wait_until

    from minique import scripts

    reports = queue
    parent = await reports.add("p", 1)
    reply = await take(reports, "w", 0, 1, hold_ms=2000)
    token = reply[HEADER + 1].decode()
    run = scripts.run
    second: list[str] = []
    cv: list[bytes] = []

    async def racing(client: object, name: str, *args: object) -> object:
        out = await run(client, name, *args)  # type: ignore[arg-type]
        if name == "add_flow" and int(out[0]) == -1 and not second:
            # Before the caller looks: "w" answers, and "w2" takes the parent to hold.
            statuses, _, _ = await finish(
                reports, [(parent.id, token, "h", "", "", 0, -1, -1, "")], worker="w")
            assert statuses == [1]
            again = await take(reports, "w2", 0, 1, hold_ms=2000)
            cv.append(await reports.redis.hget(reports.keys.meta, "cv"))
            second.append(again[HEADER + 1].decode())
        return out

    monkeypatch.setattr(scripts, "run", racing)
    adding = asyncio.create_task(reports.add("c", 2, parent=parent))
    await wait_until(lambda: bool(second), message="the parent taken again by w2")

    async def asked_again() -> bool:
        return adding.done() or await reports.redis.hget(reports.keys.meta, "cv") != cv[0]
    try:
        await wait_until(asked_again, timeout=1.5, message="w2 asked to hand back")
        assert not adding.done(), adding.exception()
    except BaseException:
        adding.cancel()
        raise
    statuses, _, _ = await finish(
        reports, [(parent.id, second[0], "h", "", "", 0, -1, -1, "")], worker="w2")
    assert statuses == [1]
    child = await asyncio.wait_for(adding, 10)
    assert await parent.get_state() == "waiting-children"
    assert await child.get_state() == "waiting"


async def test_removing_a_scheduler_withdraws_every_firing_held(queue: Queue) -> None:
    """A short every-N scheduler whose firing F1 a worker holds while the next, F2, falls
    due and is taken to hold too (by another worker, or the same one's next grant): the
    scheduler's 'lid' names F2 only, so remove_job_scheduler withdraws F2 and F1, handed
    back later, waited to run after its scheduler was gone. 'lid' keeps the last 8
    firings taken now, and the removal withdraws every one held."""
    from driver import asking_holders, finish

    f1, tok1, f2, tok2 = await _two_firings_held(queue)
    removing = await asking_holders(queue, queue.remove_job_scheduler("s"))
    await finish(queue, [(f2, tok2, "h", "", "", 0, -1, -1, "")], worker="w2")
    await finish(queue, [(f1, tok1, "h", "", "", 0, -1, -1, "")], worker="w")
    assert await asyncio.wait_for(removing, 10) is True
    assert await queue.get_job(f2) is None
    assert await queue.get_job(f1) is None, f"F1 is {await queue.get_state(f1)}"


async def test_a_new_timing_withdraws_every_firing_held(queue: Queue) -> None:
    """The same for an upsert with a new timing: every firing of the old generation that
    workers hold is withdrawn, not only the one taken last."""
    from driver import asking_holders, finish

    f1, tok1, f2, tok2 = await _two_firings_held(queue)
    upserting = await asking_holders(queue, queue.upsert_job_scheduler("s", every=3600.0))
    await finish(queue, [(f2, tok2, "h", "", "", 0, -1, -1, "")], worker="w2")
    await finish(queue, [(f1, tok1, "h", "", "", 0, -1, -1, "")], worker="w")
    again = await asyncio.wait_for(upserting, 10)
    assert await queue.get_job(f1) is None and await queue.get_job(f2) is None
    assert again.pending_job_id not in (f1, f2)


async def _two_firings_held(queue: Queue) -> tuple[str, str, str, str]:
    """A scheduler every 50 ms whose first firing F1 worker "w" holds while the next, F2,
    falls due and worker "w2" takes it to hold, as workers of an earlier version held
    firings (driver.legacy_held_firing): (F1, its token, F2, its token)."""
    from driver import legacy_held_firing
    from helpers import wait_until

    made = await queue.upsert_job_scheduler("s", every=0.05)
    f1 = made.pending_job_id or ""
    held1, tok1 = await legacy_held_firing(queue, "w")
    assert held1 == f1
    taken: list[tuple[str, str]] = []

    async def next_taken() -> bool:
        s = await queue.get_job_scheduler("s")
        if s is not None and s.pending_job_id not in (None, f1) and not taken:
            sec, usec = await queue.redis.time()
            due = (s.next_run or 0) * 1000
            if int(sec) * 1000 + int(usec) // 1000 >= due:
                taken.append(await legacy_held_firing(queue, "w2"))
        return bool(taken)
    await wait_until(next_taken, timeout=5, message="the next firing taken to hold")
    f2, tok2 = taken[0]
    assert f2 != f1
    return f1, tok1, f2, tok2
