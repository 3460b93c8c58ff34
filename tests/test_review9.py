"""Review 9 findings (session b5d03dd..96c66ad)."""

from __future__ import annotations

from minique import Queue


async def _handed_back_firing(queue: Queue) -> str:
    """A scheduler's first firing, taken to hold by worker "w" and handed back without
    starting (its hold ran out, or a control change ended it): waiting again, never run."""
    from driver import finish, take

    made = await queue.upsert_job_scheduler("s", every=60.0, job_name="old", data={"v": 1})
    firing = made.pending_job_id or ""
    reply = await take(queue, "w", 0, 1)
    assert reply[8].decode() == firing
    statuses, _, _ = await finish(queue, [(firing, reply[9].decode(), "h", "", "", 0, -1, -1,
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

