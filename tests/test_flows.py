"""Flows: trees of jobs across queues, run by real workers against a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import start_worker, wait_until

from minique import (
    FlowError,
    FlowProducer,
    InvalidJobState,
    JobNotFound,
    PayloadError,
    Queue,
    UnrecoverableError,
    Worker,
)


@pytest.fixture
async def flow(redis_url: str, qname: str) -> AsyncIterator[FlowProducer]:
    producer = FlowProducer(url=redis_url, prefix=f"fl-{qname}")
    yield producer
    for q in list(producer._queues.values()):
        await q.obliterate(force=True)
    await producer.close()


def q(flow: FlowProducer, name: str) -> Queue:
    return flow._queue(name)


async def run_workers(flow: FlowProducer, redis_url: str, procs: dict[str, Any],
                      **options: Any) -> list[tuple[Worker, asyncio.Task[None]]]:
    out = []
    for name, proc in procs.items():
        worker = Worker(name, proc, url=redis_url, prefix=flow.prefix, **options)
        out.append((worker, asyncio.create_task(worker.run())))
    return out


async def stop(workers: list[tuple[Worker, asyncio.Task[None]]]) -> None:
    for worker, task in workers:
        await worker.close()
        await task


async def all_keys(flow: FlowProducer) -> list[bytes]:
    return list(await flow.redis.keys(f"{{{flow.prefix}:*"))


def tree3() -> dict[str, Any]:
    return {"name": "report", "queue": "reports", "data": "root", "children": [
        {"name": "account", "queue": "accounts", "data": "a1", "children": [
            {"name": "sync", "queue": "syncs", "data": "s1"},
            {"name": "sync", "queue": "syncs", "data": "s2"}]},
        {"name": "account", "queue": "accounts", "data": "a2", "children": [
            {"name": "sync", "queue": "syncs", "data": "s3"}]}]}


async def test_three_levels_across_three_queues_run_bottom_up(flow: FlowProducer,
                                                             redis_url: str) -> None:
    order: list[str] = []

    async def leaf(job: Any) -> str:
        order.append(job.data)
        return job.data.upper()

    async def middle(job: Any) -> list[Any]:
        order.append(job.data)
        return sorted((await job.get_children_values()).values())

    async def root(job: Any) -> Any:
        order.append(job.data)
        return sorted(map(str, (await job.get_children_values()).values()))

    node = await flow.add(tree3())
    assert node.job.state == "waiting-children"
    assert [len(c.children) for c in node.children] == [2, 1]
    assert await node.job.get_state() == "waiting-children"
    assert (await q(flow, "reports").get_stats())["waiting-children"] == 1
    assert [j.id for j in await q(flow, "accounts").get_jobs("waiting-children")] == [
        c.job.id for c in node.children]
    workers = await run_workers(flow, redis_url, {"syncs": leaf, "accounts": middle,
                                                  "reports": root})
    try:
        assert await node.job.wait_until_finished(timeout=10) == ["['S1', 'S2']", "['S3']"]
    finally:
        await stop(workers)
    assert order[-1] == "root" and set(order[:3]) == {"s1", "s2", "s3"}
    assert order.index("a1") > max(order.index("s1"), order.index("s2"))


@pytest.mark.parametrize("policy", ["fail_parent", "ignore", "remove_dependency"])
async def test_each_failure_policy(flow: FlowProducer, redis_url: str, policy: str) -> None:
    async def child(job: Any) -> str:
        if job.data == "bad":
            raise UnrecoverableError("no quota")
        return "ok"

    async def parent(job: Any) -> Any:
        return [sorted((await job.get_children_values()).values()),
                list((await job.get_children_failures()).values())]

    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs", "data": "good"},
        {"name": "c", "queue": "syncs", "data": "bad", "opts": {"on_failure": policy}}]})
    bad_key = q(flow, "syncs").keys.job(node.children[1].job.id)
    workers = await run_workers(flow, redis_url, {"syncs": child, "reports": parent})
    try:
        if policy == "fail_parent":
            await wait_until(lambda: _state(node.job, "failed"), message="parent failed")
            failed = await q(flow, "reports").get_job(node.job.id)
            assert failed is not None and failed.failed_reason == (
                f"child {bad_key} failed: UnrecoverableError: no quota")
        else:
            result = await node.job.wait_until_finished(timeout=10)
            assert result == [["ok"], ["UnrecoverableError: no quota"] if policy == "ignore" else []]
    finally:
        await stop(workers)


async def _state(job: Any, want: str) -> bool:
    return bool(await job.get_state() == want)


async def test_fail_parent_propagates_up_the_tree(flow: FlowProducer) -> None:
    from driver import fail, fetch, finish

    node = await flow.add(tree3())
    syncs = q(flow, "syncs")
    [(jid, tok)] = await fetch(syncs)
    await finish(syncs, [fail(jid, tok, "gone")])
    assert await node.children[0].job.get_state() == "failed"
    assert await node.job.get_state() == "failed"
    assert await node.children[1].job.get_state() == "waiting-children"


async def test_a_parent_with_1000_children(flow: FlowProducer, redis_url: str) -> None:
    runs: list[int] = []

    async def parent(job: Any) -> int:
        runs.append(1)
        return len(await job.get_children_values())

    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs", "data": i} for i in range(1000)]})
    assert (await q(flow, "syncs").get_stats())["waiting"] == 1000
    workers = await run_workers(flow, redis_url, {"syncs": lambda job: job.data,
                                                  "reports": parent}, concurrency=50)
    try:
        assert await node.job.wait_until_finished(timeout=60) == 1000
    finally:
        await stop(workers)
    assert runs == [1]


async def test_an_add_that_fails_midway_leaves_nothing(flow: FlowProducer) -> None:
    bad_payload = {"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs", "data": 1},
        {"name": "c", "queue": "syncs", "data": object()}]}
    with pytest.raises(PayloadError):
        await flow.add(bad_payload)
    assert await all_keys(flow) == []
    # Refused by the script (a custom id that exists), after other nodes were checked.
    await q(flow, "syncs").add("c", 0, job_id="taken")
    before = sorted(await all_keys(flow))
    with pytest.raises(InvalidJobState, match="exists already"):
        await flow.add({"name": "p", "queue": "reports", "children": [
            {"name": "c", "queue": "syncs", "data": 1},
            {"name": "c", "queue": "accounts", "data": 2},
            {"name": "c", "queue": "syncs", "opts": {"job_id": "taken"}}]})
    assert sorted(await all_keys(flow)) == before


async def test_bad_input_is_refused_with_nothing_written(flow: FlowProducer) -> None:
    with pytest.raises(FlowError, match="own ancestor"):
        await flow.add({"name": "p", "queue": "reports", "opts": {"job_id": "x"}, "children": [
            {"name": "c", "queue": "accounts", "children": [
                {"name": "c", "queue": "reports", "opts": {"job_id": "x"}}]}]})
    with pytest.raises(ValueError, match="on_failure must be one of"):
        await flow.add({"name": "p", "queue": "reports", "children": [
            {"name": "c", "queue": "syncs", "opts": {"on_failure": "explode"}}]})
    with pytest.raises(FlowError, match="unknown key"):
        await flow.add({"name": "p", "queue": "reports", "kids": []})
    reports = q(flow, "reports")
    with pytest.raises(JobNotFound, match="does not exist"):
        await reports.add("c", 1, parent={"id": "nope", "queue": "reports"})
    parent = await reports.add("p", 1, job_id="self")
    with pytest.raises(FlowError, match="its own parent"):
        await reports.add("c", 1, job_id="self", parent=parent)
    with pytest.raises(TypeError, match="on_failure applies only"):
        await reports.add("c", 1, on_failure="ignore")
    assert (await reports.get_stats())["total"] == 1


async def test_a_child_added_to_an_existing_parent(flow: FlowProducer) -> None:
    from driver import complete, fetch, finish

    reports, syncs = q(flow, "reports"), q(flow, "syncs")
    parent = await reports.add("p", 1, delay=60)
    child = await syncs.add("c", 2, parent=parent)
    assert child.state == "waiting"
    assert await parent.get_state() == "waiting-children"
    [(jid, tok)] = await fetch(syncs)
    await finish(syncs, [complete(jid, tok, b"\x07")])
    # Its delay resumes once the children are done.
    assert await parent.get_state() == "delayed"
    assert await parent.get_children_values() == {syncs.keys.job(child.id): 7}


async def test_removing_a_parent_removes_its_pending_children(flow: FlowProducer) -> None:
    from driver import fetch

    node = await flow.add(tree3())
    syncs = q(flow, "syncs")
    [(running, _tok)] = await fetch(syncs)
    assert await q(flow, "reports").remove_job(node.job.id)
    # Every pending descendant is gone; the one a worker runs carries on, detached.
    stats = {name: (await q(flow, name).get_stats())["total"] for name in
             ("reports", "accounts", "syncs")}
    assert stats == {"reports": 0, "accounts": 0, "syncs": 1}
    assert await syncs.redis.hget(syncs.keys.job(running), "par") is None


async def test_removing_a_child_follows_its_policy(flow: FlowProducer) -> None:
    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs", "opts": {"on_failure": "remove_dependency"}},
        {"name": "c", "queue": "syncs", "opts": {"on_failure": "ignore"}},
        {"name": "c", "queue": "syncs"}]})
    syncs = q(flow, "syncs")
    await syncs.remove_job(node.children[0].job.id)
    await syncs.remove_job(node.children[1].job.id)
    assert await node.job.get_state() == "waiting-children"
    assert await node.job.get_children_failures() == {
        syncs.keys.job(node.children[1].job.id): "removed"}
    await syncs.remove_job(node.children[2].job.id)  # fail_parent
    assert await node.job.get_state() == "failed"


async def test_obliterating_a_childs_queue_leaves_no_dangling_parent(flow: FlowProducer) -> None:
    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs", "opts": {"on_failure": "remove_dependency"}}]})
    await q(flow, "syncs").obliterate()
    assert await node.job.get_state() == "waiting"


async def test_kill_9_of_a_childs_worker_completes_the_parent_once(
        flow: FlowProducer, redis_url: str, procs: list[Any]) -> None:
    parent_runs: list[int] = []

    async def parent(job: Any) -> int:
        parent_runs.append(1)
        return len(await job.get_children_values())

    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "effect", "queue": "procs", "data": {"sleep": 0.5}} for _ in range(6)]})
    fast = ("--lock-duration", "1", "--stalled-interval", "0.25", "--concurrency", "3",
            "--prefix", flow.prefix)
    victim = start_worker(redis_url, "procs", *fast)
    procs.append(victim)
    children = q(flow, "procs")
    await wait_until(lambda: _active(children), timeout=20, message="children running")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(5)
    procs.append(start_worker(redis_url, "procs", *fast))
    workers = await run_workers(flow, redis_url, {"reports": parent})
    try:
        assert await node.job.wait_until_finished(timeout=30) == 6
        await asyncio.sleep(0.3)  # a second run would need a second notification
    finally:
        await stop(workers)
    assert parent_runs == [1]
    events = [f for _, f in await flow.redis.xrange(q(flow, "reports").keys.events)
              if f.get(b"id") == node.job.id.encode() and f[b"ev"] == b"waiting"]
    assert len(events) == 1


async def _active(queue: Queue) -> bool:
    return (await queue.get_stats())["active"] > 0


async def test_the_cli_shows_waiting_children(flow: FlowProducer, redis_url: str) -> None:
    import json

    from click.testing import CliRunner

    from minique.cli import main

    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs"}]})
    common = ["--url", redis_url, "--prefix", flow.prefix, "--json"]
    # The CLI runs its own event loop: in a thread of its own here.
    stats = await asyncio.to_thread(CliRunner().invoke, main,
                                    ["stats", "--queue", "reports", *common])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["reports"]["waiting-children"] == 1
    jobs = await asyncio.to_thread(CliRunner().invoke, main, [
        "jobs", "--queue", "reports", "--state", "waiting-children", *common])
    assert jobs.exit_code == 0, jobs.output
    assert [(r["id"], r["state"]) for r in json.loads(jobs.stdout)] == [
        (node.job.id, "waiting-children")]


async def test_a_retried_child_tells_its_parent_once(flow: FlowProducer, redis_url: str) -> None:
    tries: list[int] = []
    parent_runs: list[Any] = []

    async def child(job: Any) -> str:
        tries.append(job.attempts_made)
        if job.attempts_made < 2:
            raise RuntimeError("flaky")
        return "ok"

    async def parent(job: Any) -> None:
        parent_runs.append(await job.get_children_values())

    node = await flow.add({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs", "opts": {"attempts": 3}}]})
    workers = await run_workers(flow, redis_url, {"syncs": child, "reports": parent})
    try:
        await node.job.wait_until_finished(timeout=10)
    finally:
        await stop(workers)
    assert tries == [0, 1, 2]
    assert parent_runs == [{q(flow, "syncs").keys.job(node.children[0].job.id): "ok"}]


async def test_a_resent_flow_add_changes_nothing(flow: FlowProducer) -> None:
    from minique import flows

    nodes, _ = flow._flatten({"name": "p", "queue": "reports", "children": [
        {"name": "c", "queue": "syncs"}]})
    first = await flows.submit(flow.redis, nodes, "producer-r", 1)
    ids = [n.args[0] for n in nodes]
    again = await flows.submit(flow.redis, nodes, "producer-r", 1)  # redis-py's retry
    assert again == first and [n.args[0] for n in nodes] == ids
    assert (await q(flow, "syncs").get_stats())["total"] == 1
    assert (await q(flow, "reports").get_stats())["waiting-children"] == 1


async def test_the_dashboard_job_page_shows_the_tree(flow: FlowProducer, redis_url: str) -> None:
    import httpx

    from minique.dashboard import create_app

    node = await flow.add(tree3())
    middle, leaf = node.children[0], node.children[0].children[0]
    app = create_app(redis_url, prefix=flow.prefix)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as web:
        page = await web.get(f"/queues/accounts/jobs/{middle.job.id}")
        api = await web.get(f"/api/queues/accounts/jobs/{middle.job.id}")
    await app.state.dashboard.redis.aclose()
    assert page.status_code == 200
    assert f'href="/queues/reports/jobs/{node.job.id}"' in page.text  # its parent
    assert f'href="/queues/syncs/jobs/{leaf.job.id}"' in page.text  # its children
    assert 'class="badge s-waiting-children"' in page.text
    links = api.json()["flow"]
    assert links["parent"] == {"queue": "reports", "id": node.job.id, "state": "waiting-children"}
    assert [(c["queue"], c["state"], c["outcome"]) for c in links["children"]] == [
        ("syncs", "waiting", "pending")] * 2


async def test_grouped_nodes_take_their_groups_limits(flow: FlowProducer, redis_url: str) -> None:
    """A flow's jobs may have a group: the children of one account run one at a time (the
    group's concurrency 1) while another group's child runs beside them, and the grouped
    parent joins its group when its children are done. Also add(parent=..., group=...)."""
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    release = asyncio.Event()

    async def child(job: Any) -> str:
        g = job.group or ""
        running[g] = running.get(g, 0) + 1
        most[g] = max(most.get(g, 0), running[g])
        try:
            await asyncio.wait_for(release.wait(), timeout=0.3)
        except TimeoutError:
            pass
        finally:
            running[g] -= 1
        return g

    async def parent(job: Any) -> Any:
        return [job.group, sorted((await job.get_children_values()).values())]

    syncs, reports = q(flow, "syncs"), q(flow, "reports")
    await syncs.set_group_options("acct-1", concurrency=1)
    node = await flow.add({"name": "report", "queue": "reports", "data": 0,
                           "opts": {"group": "acct-1"}, "children": [
                               {"name": "sync", "queue": "syncs", "data": i,
                                "opts": {"group": "acct-1" if i < 3 else "acct-2"}}
                               for i in range(4)]})
    assert [c.job.group for c in node.children] == ["acct-1"] * 3 + ["acct-2"]
    late = await syncs.add("sync", 9, parent=node.job, group="acct-2")
    assert late.group == "acct-2"
    assert {g.id for g in await syncs.get_groups()} == {"acct-1", "acct-2"}
    workers = await run_workers(flow, redis_url, {"syncs": child, "reports": parent},
                                concurrency=5)
    try:
        value = await node.job.wait_until_finished(timeout=20)
    finally:
        await stop(workers)
    assert value == ["acct-1", ["acct-1"] * 3 + ["acct-2"] * 2]
    assert most["acct-1"] == 1  # the group's limit held for the flow's children
    got = await reports.get_job(node.job.id)
    assert got is not None and got.group == "acct-1"
    assert await reports.get_groups() == []  # the parent's group was released and forgotten


async def test_get_flow_and_dependencies_read_the_tree_as_stored(flow: FlowProducer) -> None:
    """BullMQ's flowProducer.getFlow and job.getDependencies."""
    import driver

    root = await flow.add(tree3())
    got = await flow.get_flow("reports", root.job.id)
    assert got is not None and got.job.data == "root" and got.job.state == "waiting-children"
    assert sorted(c.job.data for c in got.children) == ["a1", "a2"]
    assert sorted(g.job.data for c in got.children for g in c.children) == ["s1", "s2", "s3"]
    shallow = await flow.get_flow("reports", root.job.id, depth=1, max_children=1)
    assert shallow is not None and len(shallow.children) == 1 and not shallow.children[0].children
    assert await flow.get_flow("reports", "no-such-job") is None
    with pytest.raises(ValueError):
        await flow.get_flow("reports", root.job.id, depth=-1)
    # One leaf done: its parent's dependencies say so.
    syncs = q(flow, "syncs")
    [(leaf, token)] = await driver.fetch(syncs, 1)
    await driver.finish(syncs, [driver.complete(leaf, token, b"\xa2ok")])
    parent = next(c for c in got.children if any(g.job.id == leaf for g in c.children))
    deps = await parent.job.get_dependencies()
    done_key = syncs.keys.job(leaf)
    assert deps["processed"] == {done_key: "ok"} and deps["failed"] == {}
    assert len(deps["unprocessed"]) == len(parent.children) - 1
    assert await parent.job.get_dependencies_count() == {
        "processed": 1, "failed": 0, "unprocessed": len(parent.children) - 1}
    plain = await syncs.add("x", 1)
    assert await plain.get_dependencies_count() == {"processed": 0, "failed": 0, "unprocessed": 0}
