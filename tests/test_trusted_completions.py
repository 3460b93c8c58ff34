"""Trusted completions (lua/finish.lua, "Trusted completions"): a held job that its worker
started and completed between two calls (kind C) is completed without a read of the job,
while nobody else has changed a held job since its take (meta 'hv') and the data holds the
worker's previous call. Each case runs the same calls on two fresh queues, once with the
result sent as C and once as a plain completion (c), and the job must end the same in
both: the trust changes what Redis reads, never what happens. Whether the read was skipped
is told by Redis's own count of HMGET calls (INFO commandstats), so a trust that never
applies fails the first test."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from driver import HEADER, JOB_FIELDS, as_an_older_version
from driver import call_as as _call
from helpers import server_binary, wait_until

from minique import Queue, Worker
from minique.server import RedisServer
from minique.worker import HEADER_STARTED_MS, split_finish_reply

HELD_VERSION = HEADER - 1  # the reply header's index of the queue's held version
Between = Callable[[Queue, str, str], Awaitable[None]]


async def _hmget_calls(q: Queue) -> int:
    stats = await q.redis.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


async def _run_case(redis_url: str, kind: str, between: Between, *, next_call: int = 3,
                    keep: tuple[int, int] = (-1, -1), lease_ms: int = 30000,
                    group: str | None = None) -> tuple[dict[str, Any], int]:
    """Worker "w" holds job "x" (call 1), makes a call without results (call 2, as a
    worker does before it runs a reply's jobs), `between` acts, then call `next_call`
    reports x completed as `kind`, with the held version call 1 replied. Returns what
    became of x (its hash without its finish time, the sets it is in, the status) and the
    HMGETs that last call made."""
    q = Queue(f"trust-{uuid.uuid4().hex[:8]}", url=redis_url)
    try:
        await q.add("j", 1, job_id="x", **({"group": group} if group else {}))
        _, held, header = await _call(q, "w", 1, [], hold=1, lease_ms=lease_ms)
        assert held and held[0][0] == "x"
        token, hv = held[0][1], header[HELD_VERSION]
        started = int(header[HEADER_STARTED_MS])
        await _call(q, "w", 2, [])
        await between(q, "x", token)
        # (A T result carries the job's group in the place of a stack trace.)
        stack = group if kind == "T" and group else ""
        result = ("x", token, kind, b"\xa2ok", stack, 0, keep[0], keep[1], started, ":0:1")
        before = await _hmget_calls(q)
        statuses, _, _ = await _call(q, "w", next_call, [result], lease_ms=lease_ms,
                                     trust=f"{hv.decode()}:{started}:1")
        reads = await _hmget_calls(q) - before
        job: dict[str, Any] = {k.decode(): v for k, v in
                               (await q.redis.hgetall(q.keys.job("x"))).items()}
        # Times and tokens differ from run to run: whether each is there (and the start the
        # one sent, the token still this worker's or not).
        for field in ("ts", "fon", "sid", "rmu", "ps"):
            if field in job:
                job[field] = True
        if "tok" in job:
            job["tok"] = "mine" if job["tok"] == token.encode() else bool(job["tok"])
        if "pon" in job:
            job["pon"] = int(job["pon"]) == started
        sets = {}
        for name in ("active", "held", "held_removed", "completed", "delayed", "pri"):
            key = getattr(q.keys, name)
            sets[name] = await q.redis.zscore(key, "x") is not None
        groups = {g.id: (g.waiting, g.active) for g in await q.get_groups()}
        held_counts = await q.redis.hgetall(f"{q.keys.base}:gheldn")
        return {"status": statuses, "job": job, "sets": sets, "stats": await q.get_stats(),
                "groups": groups, "held_counts": held_counts}, reads
    finally:
        await q.redis.hdel(q.keys.meta, "hu")  # the driver's holds need not be waited out
        await q.obliterate(force=True)
        await q.close()


async def _nothing(q: Queue, job_id: str, token: str) -> None:
    return None


async def _removed(q: Queue, job_id: str, token: str) -> None:
    await q._run("remove", [job_id, "0"])


async def _drained(q: Queue, job_id: str, token: str) -> None:
    await q._run("drain", ["0", 100, "mark"])


async def _taken_back_and_held_by_another(q: Queue, job_id: str, token: str) -> None:
    # The holder's lease runs out; another worker's sweep takes the job back and a third
    # worker holds it with a token of its own.
    async def swept() -> bool:
        await q._run("stalled", [1, 100, 100, -1, "sweeper"])
        return await q.redis.hget(q.keys.job(job_id), "st") == b"waiting"
    await wait_until(swept, timeout=10, message="the holder's lease taken back")
    _, held, _ = await _call(q, "other", 1, [], hold=1)
    assert held and held[0][0] == job_id and held[0][1] != token


async def _hash_deleted(q: Queue, job_id: str, token: str) -> None:
    await q.redis.delete(q.keys.job(job_id))


async def _another_held_job_removed(q: Queue, job_id: str, token: str) -> None:
    await q.add("j", 2, job_id="y")
    _, held, _ = await _call(q, "w2", 1, [], hold=1)
    assert held[0][0] == "y"
    await q._run("remove", ["y", "0"])


async def test_an_untouched_held_job_is_completed_without_a_read(redis_url: str) -> None:
    trusted, reads = await _run_case(redis_url, "C", _nothing)
    plain, plain_reads = await _run_case(redis_url, "c", _nothing)
    assert trusted == plain
    assert trusted["status"] == [1] and trusted["job"]["st"] == b"completed"
    assert trusted["job"]["tok"] is False and trusted["job"]["pon"] is True
    assert trusted["sets"]["completed"] and not trusted["sets"]["held"]
    # (Each call reads the queue's meta hash with one HMGET; the plain result one more.)
    assert reads == plain_reads - 1


async def test_a_grouped_held_job_is_completed_without_a_read(redis_url: str) -> None:
    """A job with a group goes as T, its group with it: the group's count of held jobs
    comes back down as it does with a plain completion, which reads the group."""
    trusted, reads = await _run_case(redis_url, "T", _nothing, group="acct-1")
    plain, plain_reads = await _run_case(redis_url, "c", _nothing, group="acct-1")
    assert trusted == plain
    assert trusted["status"] == [1] and trusted["job"]["st"] == b"completed"
    assert trusted["held_counts"] == {} and trusted["groups"] == {}
    assert reads == plain_reads - 1


async def test_a_grouped_queue_trusts_a_job_without_a_group(redis_url: str) -> None:
    async def other_grouped_job(q: Queue, job_id: str, token: str) -> None:
        await q.add("j", 2, group="acct-2")  # the queue has had grouped jobs from now on
    trusted, reads = await _run_case(redis_url, "C", other_grouped_job)
    plain, plain_reads = await _run_case(redis_url, "c", other_grouped_job)
    assert trusted == plain
    assert trusted["groups"] == {"acct-2": (1, 0)}
    assert reads == plain_reads - 1


@pytest.mark.parametrize("between", [_removed, _drained, _another_held_job_removed],
                         ids=["removed", "drained", "other-job-removed"])
async def test_a_held_job_changed_by_someone_else_is_read_as_before(
        redis_url: str, between: Between) -> None:
    trusted, reads = await _run_case(redis_url, "C", between)
    plain, plain_reads = await _run_case(redis_url, "c", between)
    assert trusted == plain
    assert reads == plain_reads  # the held version moved on: the job was read


@pytest.mark.parametrize("version", ["this", "older"])
async def test_a_job_taken_back_from_its_holder_is_read_as_before(
        redis_url: str, version: str) -> None:
    """A take-back needs the holder's lease to have run out, and a completion whose take's
    lease has run out is read, whichever version's sweep took it back (an older one leaves
    the held version as it was)."""
    between = _taken_back_and_held_by_another
    if version == "older":
        between = as_an_older_version(between)
    trusted, reads = await _run_case(redis_url, "C", between, lease_ms=300)
    plain, plain_reads = await _run_case(redis_url, "c", between, lease_ms=300)
    assert trusted == plain
    assert trusted["status"] == [0] and trusted["job"]["tok"] is True  # the other's now
    assert reads == plain_reads


@pytest.mark.parametrize("between", [_removed, _drained], ids=["removed", "drained"])
async def test_a_removal_by_an_older_version_ends_as_before(
        redis_url: str, between: Between) -> None:
    """An older version's removal or drain marks the held job removed without moving the
    held version on: the trusted completion stands, as a plain one of a job that had
    started does, and the job leaves the set of removed held jobs."""
    older = as_an_older_version(between)
    trusted, _ = await _run_case(redis_url, "C", older)
    plain, _ = await _run_case(redis_url, "c", older)
    assert trusted == plain
    assert trusted["status"] == [1] and not trusted["sets"]["held_removed"]


async def test_a_hash_deleted_behind_the_queues_back_stays_deleted(redis_url: str) -> None:
    trusted, _ = await _run_case(redis_url, "C", _hash_deleted)
    plain, _ = await _run_case(redis_url, "c", _hash_deleted)
    assert trusted == plain
    assert trusted["status"] == [2] and trusted["job"] == {}


async def test_without_the_previous_call_in_the_data_the_job_is_read(redis_url: str) -> None:
    # Call 4 comes after call 2 with no call 3 recorded (as after a restore from a snapshot
    # older than call 3): nothing says the take is in this data's history.
    trusted, reads = await _run_case(redis_url, "C", _nothing, next_call=4)
    plain, plain_reads = await _run_case(redis_url, "c", _nothing, next_call=4)
    assert trusted == plain
    assert reads == plain_reads


async def test_a_job_removed_on_completion_takes_the_plain_path(redis_url: str) -> None:
    trusted, reads = await _run_case(redis_url, "C", _nothing, keep=(0, -1))
    plain, plain_reads = await _run_case(redis_url, "c", _nothing, keep=(0, -1))
    assert trusted == plain
    assert trusted["job"] == {} and reads == plain_reads


@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
async def test_a_busy_worker_sends_trusted_completions_only_for_untouched_held_jobs(
        queue: Queue, redis_url: str, monkeypatch: pytest.MonkeyPatch, grouped: bool) -> None:
    """A real worker: no-op jobs and jobs that sleep 20 ms (whose start notes go before
    their results), with or without groups. No job sent as C or T had its start note (s)
    sent in an earlier call, every job completes once, with the fields a plain completion
    writes, and the groups' counts come back to nothing."""
    import minique.worker as worker_module

    real = worker_module.scripts.run
    noted: set[str] = set()
    trusted_ids: list[str] = []
    bad: list[str] = []

    taken_by: dict[str, int] = {}  # job id -> the call whose reply handed it out
    bad_trust: list[tuple[str, str]] = []

    async def run(client: Any, name: str, keys: Any, args: Any) -> Any:
        if name != "finish":
            return await real(client, name, keys, args)
        i = 13
        ids_c: list[str] = []
        for _ in range(int(args[10])):
            head = str(args[i])
            kind = head.split("|")[1]
            job_id = head.split("|", 5)[5]
            if kind in ("C", "T"):
                trusted_ids.append(job_id)
                ids_c.append(job_id)
                if job_id in noted:
                    bad.append(job_id)
            elif kind in ("s", "S"):
                noted.add(job_id)
            i += 2 if kind in "cCsSh" else 3
        if ids_c:
            # The call names the earliest call that took its C jobs (finish.lua's chain).
            expected = f":{min(taken_by[j] for j in ids_c)}"
            if not str(args[12]).endswith(expected):
                bad_trust.append((str(args[12]), expected))
        reply = await real(client, name, keys, args)
        _, take = split_finish_reply(list(reply), int(args[10]))
        body = take[HEADER:]
        for k in range(0, len(body), JOB_FIELDS):
            taken_by[body[k].decode()] = int(args[9])
        return reply
    monkeypatch.setattr(worker_module.scripts, "run", run)

    runs: dict[str, int] = {}

    async def job(job_: Any) -> str:
        runs[job_.id] = runs.get(job_.id, 0) + 1
        if int(job_.data) % 3 == 0:
            await asyncio.sleep(0.02)
        return "ok"

    n = 600
    await queue.add_bulk([("j", i, {"group": f"g{i % 20}"} if grouped else {})
                          for i in range(n)])
    worker = Worker(queue.name, job, url=redis_url, concurrency=50)
    task = asyncio.create_task(worker.run())
    try:
        async def done() -> bool:
            return (await queue.get_stats())["completed"] == n
        await wait_until(done, timeout=60, message="every job completed")
    finally:
        await worker.close()
        await task
    assert bad == []
    assert bad_trust == []
    assert trusted_ids, "no completion was sent as trusted"
    assert sorted(runs.values()) == [1] * n
    for job_id in trusted_ids[:50]:
        stored = await queue.redis.hgetall(queue.keys.job(job_id))
        assert stored[b"st"] == b"completed" and stored[b"tok"] == b""
        assert stored[b"atm"] == b"1" and stored[b"ats"] == b"1"
        assert int(stored[b"pon"]) <= int(stored[b"fon"])
        assert b"rv" in stored and stored[b"w"] == worker.ident.encode()
    assert await queue.get_groups() == []
    assert await queue.redis.hgetall(f"{queue.keys.base}:gheldn") == {}


@pytest.mark.parametrize("lost", ["snapshot", "restart-without-data", "obliterate"])
async def test_a_take_lost_with_the_data_is_never_trusted(lost: str, tmp_path: Any) -> None:
    """Worker "w" holds job "x" (call 2); then the data loses that take: Redis restored from
    a snapshot older than call 2, restarted without persistence (its data gone: FLUSHALL)
    or the queue obliterated (and x added again, the same custom id). w's next call (call
    3, as the call that was out at the loss is re-sent) finds the data as it is and
    records itself; worker "v" holds x; then w reports x completed as C, with the held
    version and take time of its reply, which the data may give again (a version starts
    at 0). The record of call 3 alone does not vouch for call 2: x is read, w's result is
    refused, and x stays v's (it completes once, with v's result). Found by break round 29
    (a restore): with the previous-call check alone x was completed under v."""
    server = RedisServer(binary=server_binary())
    server.start()
    try:
        name = f"lost-{uuid.uuid4().hex[:8]}"
        q = Queue(name, url=server.url)
        await q.add("j", 1, job_id="x")
        await _call(q, "w", 1, [])
        if lost == "snapshot":
            await q.redis.save()
            shutil.copy(os.path.join(server.directory, "dump.rdb"), tmp_path / "old.rdb")
        _, held, header = await _call(q, "w", 2, [], hold=1)
        assert held and held[0][0] == "x"
        token, hv = held[0][1], header[HELD_VERSION]
        started = int(header[HEADER_STARTED_MS])
        if lost == "snapshot":
            await q.close()
            port = server.port
            server.stop(kill=True)
            shutil.copy(tmp_path / "old.rdb", os.path.join(server.directory, "dump.rdb"))
            server._port_picked = False  # the same port, or fail
            server.port = port
            server.start()
            q = Queue(name, url=server.url)
        elif lost == "restart-without-data":
            await q.redis.flushall()
        else:
            await q.redis.hdel(q.keys.meta, "hu")  # (w's hold need not be waited out)
            await q.obliterate(force=True)
        if lost != "snapshot":
            await q.add("j", 1, job_id="x")
        assert (await q.redis.hget(q.keys.meta, "hv") or b"0") == (hv or b"0")
        await _call(q, "w", 3, [])

        # A token is its take's ms and a count within that ms, kept in the data: with the
        # data lost, a take in the same ms as w's could be given w's token again.
        async def past_ws_take() -> bool:
            sec, usec = await q.redis.time()
            return sec * 1000 + usec // 1000 > int(token) // 1000
        await wait_until(past_ws_take, timeout=5, message="the Redis clock past w's take")
        _, v_held, _ = await _call(q, "v", 1, [], hold=1)
        assert v_held and v_held[0][0] == "x" and v_held[0][1] != token
        result = ("x", token, "C", b"\xa2ok", "", 0, -1, -1, started, ":0:1")
        statuses, _, _ = await _call(q, "w", 4, [result],
                                     trust=f"{(hv or b'0').decode()}:{started}:2")
        assert statuses == [0]  # another owner's now
        job = await q.redis.hgetall(q.keys.job("x"))
        assert job[b"tok"] == v_held[0][1].encode() and job[b"st"] == b"held"
        assert await q.redis.zscore(q.keys.completed, "x") is None
        v_result = ("x", v_held[0][1], "c", b"\xa2ok", "", 0, -1, -1, started, ":0:1")
        statuses, _, _ = await _call(q, "v", 2, [v_result])
        assert statuses == [1]
        assert (await q.get_stats())["completed"] == 1
        await q.redis.hdel(q.keys.meta, "hu")
        await q.close()
    finally:
        server.close()
