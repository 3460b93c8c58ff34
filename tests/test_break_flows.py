"""Break tests of flows (from a break run: deep chains, odd queue names, a held parent),
each deterministic: the transitions are driven directly (tests/driver.py)."""

from __future__ import annotations

from typing import Any

import pytest
from test_flows import all_keys, q
from test_flows import flow as flow  # the fixture, as test_flows.py's tests get it

from minique import FlowProducer, InvalidJobState


def chain(depth: int, queues: tuple[str, ...] = ("a",),
          opts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A root with one child, which has one child, ... ``depth`` jobs in all, the queues
    taken in turn from the root down."""
    node: dict[str, Any] = {"name": "leaf", "queue": queues[(depth - 1) % len(queues)],
                            "data": depth - 1, "opts": dict(opts or {})}
    for i in range(depth - 2, -1, -1):
        node = {"name": "n", "queue": queues[i % len(queues)], "data": i,
                "opts": dict(opts or {}) if i else {}, "children": [node]}
    return node


async def job_keys(flow: FlowProducer) -> list[bytes]:
    return [k for k in await all_keys(flow) if b":j:" in k]


async def test_a_leaf_failing_1200_levels_down_fails_the_root(flow: FlowProducer) -> None:
    """Docs: a child's failure fails its parent, "its own parent is told in turn, up the
    tree", and trees can be any depth. The climb stopped after 1000 levels (a bounded
    loop): the root of a deeper chain stayed in waiting-children for good. Each parent's
    reason quoted its child's whole reason, so reasons grew by a line a level (a chain
    of 10,000 would have stored ~2 GB of reasons): a parent quotes at most 2 KiB of it."""
    from driver import fail, fetch, finish

    node = await flow.add(chain(1200, ("a", "b")))
    leaf_queue = q(flow, "b")
    [(jid, tok)] = await fetch(leaf_queue)
    await finish(leaf_queue, [fail(jid, tok, "gone")])
    assert await node.job.get_state() == "failed"
    root = await q(flow, "a").get_job(node.job.id)
    assert root is not None and root.failed_reason is not None
    first = q(flow, "b").keys.job(node.children[0].job.id)
    assert root.failed_reason.startswith(f"child {first} failed: child ")
    assert root.failed_reason.endswith(f"child {leaf_queue.keys.job(jid)} failed: gone")
    assert len(root.failed_reason) < 2200


@pytest.mark.parametrize("queues", [("a",), ("a", "b")])
async def test_removing_or_obliterating_a_chain_10000_deep(flow: FlowProducer,
                                                           queues: tuple[str, ...]) -> None:
    """Removing a parent removes its pending children, and theirs: this recursed a Lua
    call per level (delete -> remove children -> delete), and a chain of 10,000 (the
    most a flow may hold) overflowed Lua's stack: remove_job failed, and so did
    obliterate(), so the queue could not be deleted at all."""
    node = await flow.add(chain(10_000, queues))
    assert await q(flow, "a").remove_job(node.job.id)
    assert await job_keys(flow) == []
    node = await flow.add(chain(10_000, queues))
    for name in queues:
        await q(flow, name).obliterate(force=True)
    assert await job_keys(flow) == []


async def test_a_chain_of_parents_that_keep_no_failed_jobs(flow: FlowProducer) -> None:
    """Every node with remove_on_fail: a parent failed by its child is deleted at once,
    and its deletion told its own parent within the deletion (recursing again, a level
    deeper per parent). The failure climbs 3000 levels; every job is gone, and each
    failed parent's 'failed' event names the child that failed it (it named it
    "removed" when the deletion told the parent first)."""
    from driver import fail, fetch, finish

    node = await flow.add(chain(3000, opts={"remove_on_fail": True}))
    a = q(flow, "a")
    [(jid, tok)] = await fetch(a)
    await finish(a, [fail(jid, tok, "gone", keep=(0, -1))])
    assert await node.job.get_state() == "failed"
    failed = {f[b"id"].decode(): f[b"reason"].decode()
              for _, f in await a.redis.xrange(a.keys.events) if f[b"ev"] == b"failed"}
    assert len(failed) == 3000
    mid = node.children[0].children[0]
    assert failed[node.children[0].job.id].startswith(f"child {a.keys.job(mid.job.id)} failed: ")
    assert await job_keys(flow) == [a.keys.job(node.job.id).encode()]  # the root keeps its failure


async def test_the_dashboard_links_of_queues_whose_names_hold_colon_j_colon(
        flow: FlowProducer) -> None:
    """A queue name may hold ':j:' (only braces and whitespace are refused); the job page's
    flow links split "{p:q}:j:<id>" at the first ':j:' and named queue '' and id 'y}:j:1'."""
    from minique.flows import flow_links

    node = await flow.add({"name": "p", "queue": "x:j:y", "children": [
        {"name": "c", "queue": "k:j:z", "opts": {"job_id": "c:j:1"}}]})
    links = await flow_links(q(flow, "x:j:y"), node.job.id)
    assert [(c["queue"], c["id"]) for c in links["children"]] == [("k:j:z", "c:j:1")]
    up = await flow_links(q(flow, "k:j:z"), "c:j:1")
    assert up["parent"] is not None
    assert (up["parent"]["queue"], up["parent"]["id"]) == ("x:j:y", node.job.id)


async def test_a_child_added_to_a_waiting_parent_that_a_worker_holds(flow: FlowProducer) -> None:
    """Docs: "a waiting or delayed parent goes back to waiting-children". A worker that
    holds jobs ahead (the default prefetch) makes a waiting parent 'held' in Redis: the add
    raised InvalidJobState "is held", depending on the workers' timing. Now the add asks
    the holder to hand it back (a control change), and once it is back the parent takes
    the child, as one fetched a job at a time would."""
    import asyncio

    from driver import HEADER, asking_holders, finish, take

    reports = q(flow, "a")
    parent = await reports.add("p", 1)
    reply = await take(reports, "w", 0, 1)
    token = reply[HEADER + 1].decode()
    assert await reports.redis.hget(reports.keys.job(parent.id), "st") == b"held"
    adding = await asking_holders(reports, reports.add("c", 2, parent=parent))
    assert not adding.done()
    statuses, _, _ = await finish(reports, [(parent.id, token, "h", "", "", 0, -1, -1, "")],
                                  worker="w")
    assert statuses == [1]
    child = await asyncio.wait_for(adding, 10)
    assert await parent.get_state() == "waiting-children"
    assert await child.get_state() == "waiting"


async def test_a_child_added_to_a_held_parent_that_had_started(flow: FlowProducer) -> None:
    """The other order: the holder had started the parent before the add reached it. Its
    start note wins, as a fetch one at a time would have: the add raises InvalidJobState
    and writes nothing."""
    import asyncio

    from driver import HEADER, asking_holders, finish, take

    reports = q(flow, "a")
    parent = await reports.add("p", 1)
    reply = await take(reports, "w", 0, 1)
    token = reply[HEADER + 1].decode()
    adding = await asking_holders(reports, reports.add("c", 2, parent=parent, job_id="c1"))
    now = await reports.redis.time()
    ms = str(int(now[0]) * 1000 + int(now[1]) // 1000)
    statuses, _, _ = await finish(reports, [(parent.id, token, "s", "", "", 0, -1, -1, ms)],
                                  worker="w")
    assert statuses == [1]
    with pytest.raises(InvalidJobState, match="is active"):
        await asyncio.wait_for(adding, 10)
    assert await parent.get_state() == "active"
    assert await reports.get_job("c1") is None
