"""FlowProducer.add_bulk (BullMQ's ``flowProducer.addBulk``): several trees in one script
call, all or nothing, against a real Redis with real workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import wait_until

from minique import FlowError, FlowProducer, InvalidJobState, Queue, Worker, flows


@pytest.fixture
async def flow(redis_url: str, qname: str) -> AsyncIterator[FlowProducer]:
    producer = FlowProducer(url=redis_url, prefix=f"fb-{qname}")
    yield producer
    for q in list(producer._queues.values()):
        await q.obliterate(force=True)
    await producer.close()


def tree(i: int, kids: int = 2) -> dict[str, Any]:
    return {"name": "parent", "queue": "reports", "data": i, "children": [
        {"name": "child", "queue": "syncs", "data": [i, k], "children": [
            {"name": "leaf", "queue": "syncs", "data": [i, k, 0]}] if k == 0 else []}
        for k in range(kids)]}


async def total(flow: FlowProducer) -> int:
    return sum([(await flow._queue(n).get_stats())["total"] for n in ("reports", "syncs")])


async def test_trees_are_added_together_and_each_parent_runs_after_its_own_children(
        flow: FlowProducer, redis_url: str) -> None:
    roots = await flow.add_bulk([tree(0), tree(1, kids=3), tree(2, kids=1)])
    assert [r.job.data for r in roots] == [0, 1, 2]
    assert [len(r.children) for r in roots] == [2, 3, 1]
    assert [c.job.data for c in roots[1].children] == [[1, 0], [1, 1], [1, 2]]
    assert roots[0].children[0].children[0].job.data == [0, 0, 0]
    for r in roots:
        assert await r.job.get_state() == "waiting-children"
        assert await r.children[0].job.get_state() == "waiting-children"  # it has a leaf
    # Each tree's parent counts its own children only: tree 2's parent waits for one.
    assert (await roots[2].job.get_dependencies_count())["unprocessed"] == 1
    assert (await roots[1].job.get_dependencies_count())["unprocessed"] == 3

    seen: dict[Any, Any] = {}

    async def parent(job: Any) -> Any:
        values = await job.get_children_values()
        seen[job.data] = sorted(tuple(v) for v in values.values())
        return job.data

    async def child(job: Any) -> Any:
        return job.data

    workers = [Worker("reports", parent, url=redis_url, prefix=flow.prefix),
               Worker("syncs", child, url=redis_url, prefix=flow.prefix)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    try:
        for r in roots:
            await r.job.wait_until_finished(timeout=15)
    finally:
        for w in workers:
            await w.close()
        await asyncio.gather(*tasks)
    assert seen == {0: [(0, 0), (0, 1)], 1: [(1, 0), (1, 1), (1, 2)], 2: [(2, 0)]}


async def test_an_existing_custom_id_in_a_later_tree_writes_nothing(flow: FlowProducer) -> None:
    await flow._queue("syncs").add("x", 1, job_id="taken")
    before = await total(flow)
    bad = tree(1)
    bad["children"][1]["opts"] = {"job_id": "taken"}
    with pytest.raises(InvalidJobState, match="exists already"):
        await flow.add_bulk([tree(0), bad])
    assert await total(flow) == before  # the first tree is not there either
    # The automatic ids were not used up: the next add takes the next one.
    roots = await flow.add_bulk([tree(2)])
    assert roots[0].job.id == "1"


async def test_a_job_id_twice_across_trees_is_refused_before_anything_is_sent(
        flow: FlowProducer) -> None:
    one, two = tree(0), tree(1)
    one["opts"] = {"job_id": "p"}
    two["opts"] = {"job_id": "p"}
    with pytest.raises(FlowError, match="tree 1: job 'p' of queue 'reports' is in an earlier"):
        await flow.add_bulk([one, two])
    # The same id in two queues is two jobs.
    two["queue"] = "other"
    roots = await flow.add_bulk([one, two])
    assert [r.job.id for r in roots] == ["p", "p"]
    assert await flow._queue("other").get_job_ids("waiting-children") == ["p"]


@pytest.mark.parametrize("trees, message", [
    ({"name": "p", "queue": "reports"}, "a list of trees, got dict"),
    ("trees", "a list of trees, got str"),
    ([{"name": "p", "queue": "reports"}, 42], "tree 1: flow node 1 must be a dict"),
    ([{"name": "p", "queue": "reports"}, {"name": "p", "queue": "reports", "x": 1}],
     r"tree 1: flow node 1: unknown key\(s\) \['x'\]"),
])
async def test_bad_input_names_the_tree_and_writes_nothing(
        flow: FlowProducer, trees: Any, message: str) -> None:
    with pytest.raises(FlowError, match=message):
        await flow.add_bulk(trees)
    assert await total(flow) == 0


async def test_the_job_limit_counts_every_tree(flow: FlowProducer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flows, "MAX_NODES", 7)
    await flow.add_bulk([tree(0)])  # 4 jobs
    with pytest.raises(FlowError, match="at most 7 jobs in all"):
        await flow.add_bulk([tree(0), tree(1)])
    # add_bulk([]) sends nothing.
    assert await flow.add_bulk([]) == []


async def test_a_resent_bulk_changes_nothing(flow: FlowProducer) -> None:
    """The call carries the producer's id and number as add() does: redis-py's re-send
    of the same call gets the first call's answer and writes nothing again."""
    sent: list[tuple[Any, ...]] = []
    real = flows.submit

    async def twice(client: Any, nodes: Any, producer: str, seq: int) -> int:
        first = await real(client, nodes, producer, seq)
        ids = [n.args[0] for n in nodes]
        again = await real(client, nodes, producer, seq)
        sent.append((first, again, ids, [n.args[0] for n in nodes]))
        return again

    flows.submit = twice  # type: ignore[assignment]
    try:
        roots = await flow.add_bulk([tree(0), tree(1)])
    finally:
        flows.submit = real  # type: ignore[assignment]
    first, again, ids, ids_again = sent[0]
    assert first == again and ids == ids_again
    assert await total(flow) == 8
    assert [r.job.id for r in roots] == ["1", "2"]  # reports' ids: one per tree


async def test_a_prioritized_parent_of_a_bulk_goes_ahead_of_held_jobs(
        flow: FlowProducer, redis_url: str) -> None:
    """As with add(): a parent with a priority whose children are done goes ahead of the
    jobs a worker holds, as it would one job at a time."""
    reports: Queue = flow._queue("reports")
    await reports.add_bulk([("plain", i) for i in range(300)])
    order: list[Any] = []

    async def work(job: Any) -> None:
        order.append(job.data)
        await asyncio.sleep(0)

    roots = await flow.add_bulk([
        {"name": "p", "queue": "reports", "data": "prio", "opts": {"priority": 1},
         "children": [{"name": "c", "queue": "syncs", "data": "c"}]}])
    w = Worker("reports", work, url=redis_url, prefix=flow.prefix, concurrency=1)
    child_worker = Worker("syncs", work, url=redis_url, prefix=flow.prefix)
    tasks = [asyncio.create_task(w.run(handle_signals=False))]
    try:
        # The reports worker runs, and holds plain jobs.
        await wait_until(lambda: len(order) >= 20, timeout=10, message="20 plain jobs ran")
        tasks.append(asyncio.create_task(child_worker.run(handle_signals=False)))
        await roots[0].children[0].job.wait_until_finished(timeout=10)
        mark = len(order)
        await roots[0].job.wait_until_finished(timeout=10)
    finally:
        for x in (w, child_worker):
            await x.close()
        await asyncio.gather(*tasks)
    # The child ran in the reports worker's list too (it appended "c"): at most two plain
    # jobs start between the child's end and the parent (the one running, one on its way).
    between = order.index("prio") - mark
    assert between <= 2, f"{between} plain jobs started before the prioritized parent"


async def test_a_single_tree_error_names_no_tree(flow: FlowProducer) -> None:
    """add() is one tree: its errors carry no "tree 0:" prefix; add_bulk's count from 0."""
    with pytest.raises(FlowError, match=r"^flow node 2: unknown key"):
        await flow.add({"name": "p", "queue": "reports", "children": [
            {"name": "c", "queue": "syncs", "bogus": 1}]})
    with pytest.raises(FlowError, match=r"^tree 1: flow node 2: unknown key"):
        await flow.add_bulk([tree(0), {"name": "p", "queue": "reports", "children": [
            {"name": "c", "queue": "syncs", "bogus": 1}]}])
