"""One namespace for job ids: every string id is safe, and no custom id can take the form of
an id the queue makes itself (issue #12, section 4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from minique import JobFailed, Queue, Worker

# Ids that look like other keys or fields of the queue: a key suffix (":logs"), a key kind
# ("j:", "logs:", "meta"), the finish script's field separator, a hash tag, whitespace.
TRICKY_IDS = ["rep:logs", "logs:rep", "j:rep", "x|y|c|0|0", "meta", "{other:queue}",
              "with space", "ü-ïd", "rep:logs:logs", "sched", "schedule:1"]


async def queue_keys(q: Queue) -> set[str]:
    match = q.keys.base.replace("{", "[{]").replace("}", "[}]") + "*"
    return {k.decode() async for k in q.redis.scan_iter(match=match)}


async def test_removing_a_job_leaves_the_job_named_like_its_logs(queue: Queue) -> None:
    rep = await queue.add("x", 1, job_id="rep")
    await rep.log("a line of rep")
    other = await queue.add("x", 2, job_id="rep:logs")
    await other.log("a line of rep:logs")
    assert await rep.remove()
    survivor = await queue.get_job("rep:logs")
    assert survivor is not None and survivor.state == "waiting" and survivor.data == 2
    assert await queue.get_job_logs("rep:logs") == ["a line of rep:logs"]
    assert await queue.get_job_logs("rep") == []


async def test_a_job_named_like_another_jobs_logs_can_be_added(queue: Queue) -> None:
    acct = await queue.add("x", 1, job_id="acct")
    await acct.log("written before")
    logs_like = await queue.add("x", 2, job_id="acct:logs")  # was a raw WRONGTYPE error
    assert logs_like.id == "acct:logs" and (await queue.get_job("acct:logs")) is not None
    await logs_like.log("its own line")
    assert await queue.get_job_logs("acct") == ["written before"]
    assert await queue.get_job_logs("acct:logs") == ["its own line"]


async def test_every_key_a_job_owns_is_its_own_for_any_id(queue: Queue, redis_url: str) -> None:
    """Hash and log list of each tricky id: written, read back, run by a worker (the finish
    script parses ids), and deleted with the job, without touching any other job's keys."""
    for job_id in TRICKY_IDS:
        job = await queue.add("x", {"id": job_id}, job_id=job_id, remove_on_complete=False)
        await job.log(f"log of {job_id}")
        await job.update_progress(50)
    for job_id in TRICKY_IDS:
        assert await queue.get_job_logs(job_id) == [f"log of {job_id}"]
        stored = await queue.get_job(job_id)
        assert stored is not None and stored.data == {"id": job_id} and stored.progress == 50
    owned = {job_id: {queue.keys.job(job_id), queue.keys.logs(job_id)} for job_id in TRICKY_IDS}
    all_owned = set().union(*owned.values())
    assert len(all_owned) == 2 * len(TRICKY_IDS)  # no two jobs share a key
    assert all_owned <= await queue_keys(queue)

    async def proc(job: Any) -> Any:
        if job.id == "x|y|c|0|0":
            raise ValueError("fails on purpose")
        return job.id

    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    for job_id in TRICKY_IDS:
        job = await queue.get_job(job_id)
        assert job is not None
        if job_id == "x|y|c|0|0":
            with pytest.raises(JobFailed, match="fails on purpose"):
                await job.wait_until_finished(timeout=10)
        else:
            assert await job.wait_until_finished(timeout=10) == job_id
    await worker.close()
    await task
    queue_own = await queue_keys(queue) - all_owned
    for job_id in TRICKY_IDS:
        assert await queue.remove_job(job_id)
        left = await queue_keys(queue)
        assert not owned[job_id] & left, f"{job_id}: keys left after remove"
        later = TRICKY_IDS[TRICKY_IDS.index(job_id) + 1:]
        for other in later:
            assert owned[other] <= left, f"removing {job_id} touched {other}"
    # Only keys of the queue itself remain: the ones it had, and the answers kept for a
    # re-send of the removals (lua/wrappers/once.lua: a hash per minute).
    left = {k for k in await queue_keys(queue) if not k.startswith(f"{queue.keys.base}:once:")}
    assert left <= queue_own


@pytest.mark.parametrize("job_id", ["123", "0", "sched:nightly:1:1767225600000", "sched:"])
async def test_generated_id_forms_are_refused_at_add(queue: Queue, job_id: str) -> None:
    with pytest.raises(ValueError, match="job_id") as info:
        await queue.add("x", 1, job_id=job_id)
    assert "plain integer" in str(info.value) or "reserved" in str(info.value)
    with pytest.raises(ValueError, match="job_id"):
        await queue.add_bulk([("x", 1), ("x", 2, {"job_id": job_id})])
    assert await queue_keys(queue) == set()  # nothing written


async def test_generated_ids_never_meet_custom_ids(queue: Queue, redis_url: str) -> None:
    """Automatic ids and scheduler firings coexist with every allowed custom id."""
    custom = await queue.add("x", "custom", job_id="1a")
    auto = await queue.add("x", "auto")
    await queue.upsert_job_scheduler("nightly", every=60, job_name="x", data="fired")
    firing = (await queue.get_job_schedulers())[0].pending_job_id
    assert firing is not None and firing.startswith("sched:nightly:")
    assert auto.id.isdigit() and len({custom.id, auto.id, firing}) == 3
    for job_id, data in ((custom.id, "custom"), (auto.id, "auto"), (firing, "fired")):
        job = await queue.get_job(job_id)
        assert job is not None and job.data == data
