"""Attacks on the account sync lease (processors/account_lease.py) and its use by the app's
sync processors: slow links, partitions, cancels mid-acquire, and a steady stream of syncs of
one account. The first four failed on the code they were written against (fixed since)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis
from app_support import App, running_app
from chaos.proxy import ChaosProxy
from helpers import wait_until

import processors.jobs
from minique.connection import connect
from processors.account_lease import AccountLeaseLost, lease_key, sync_exclusively
from processors.queues import QueueName, account_group, apply_group_defaults


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ChaosProxy]:
    port = urlparse(redis_url).port
    assert port is not None
    p = await ChaosProxy(port).start()
    yield p
    p.blackhole = p.hold_replies = False
    await p.close()


# --- the lease alone, with the app's Redis client (minique.connection.connect) -------------


async def test_a_cancel_during_the_acquire_leaves_no_lease(
        client: aioredis.Redis, proxy: ChaosProxy) -> None:
    """A job's timeout, cancel or shutdown reaches a sync while its SET NX has run in Redis
    but the reply is still on the way (a slow link). The sync never started and the task is
    gone, so nothing will ever release or renew the lease: the account stays busy for the
    whole TTL (a minute in the app), and every sync of it is turned away meanwhile."""
    key = lease_key("t-cancel-acq", "a")
    holder = connect(proxy.url)
    try:
        await holder.ping()  # connected (and its handshake done) before the link slows
        ran = []

        async def sync() -> None:
            ran.append(1)

        proxy.hold_replies = True
        task = asyncio.create_task(sync_exclusively(holder, "t-cancel-acq", "a", sync))

        async def set_in_redis() -> bool:
            return bool(await client.exists(key))

        await wait_until(set_in_redis, timeout=5, message="the SET NX ran in Redis")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        proxy.hold_replies = False
        assert not ran

        async def free() -> bool:
            return not await client.exists(key)

        # Well within the app's 60 s TTL: the cancelled acquire must not keep the account.
        await wait_until(free, timeout=5,
                         message=f"the account freed (lease TTL left: {await client.pttl(key)} ms)")
    finally:
        proxy.hold_replies = False
        await client.delete(key)
        await holder.aclose()


async def test_a_holder_cut_off_from_redis_stops_before_its_lease_expires(
        client: aioredis.Redis, proxy: ChaosProxy) -> None:
    """The holder's link to Redis goes dead (a partition: packets dropped, no RST), while
    other workers still reach Redis. The module says a holder that 'cannot renew it before
    it would expire (Redis unreachable) stops its sync'. But the renewal just waits on the
    socket (15 s timeout, retried 3 times by the app's client), so the lease expires, another
    sync of the account takes it, and both run side by side."""
    ttl = 1.0
    key = lease_key("t-partition", "a")
    holder = connect(proxy.url)
    stopped = asyncio.Event()

    async def sync() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    task = asyncio.create_task(sync_exclusively(holder, "t-partition", "a", sync, ttl=ttl))
    try:
        async def taken() -> bool:
            return bool(await client.exists(key))

        await wait_until(taken, timeout=5, message="the lease is taken")
        proxy.blackhole = True

        async def expired() -> bool:
            return not await client.exists(key)

        await wait_until(expired, timeout=ttl * 3, message="the cut-off holder's lease expired")
        # Another worker (which still reaches Redis) starts a sync of the account now.
        assert await client.set(key, "another-sync", nx=True, px=10_000)
        await wait_until(stopped.is_set, timeout=ttl,
                         message="the cut-off holder's sync stopped (it still runs beside the "
                                 "sync that took the expired lease)")
    finally:
        task.cancel()
        proxy.blackhole = False
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(key)
        await holder.aclose()


async def test_a_holder_whose_redis_refuses_connections_stops_before_its_lease_expires(
        client: aioredis.Redis, proxy: ChaosProxy) -> None:
    """Redis down (connections refused) rather than a dead link: every renewal fails in
    ~0.7 s (the app client's retries). The keeper goes on while ``now + ttl/3`` is short of
    the lease's end, then spends another failing call past it: the sync is still running
    when its lease expires. (At the app's 60 s lease and fast failures the timing happens to
    hold; with ttl/3 between one and two failing calls, as here, it does not.)"""
    ttl = 3.2
    key = lease_key("t-refused", "a")
    holder = connect(proxy.url)
    stopped = asyncio.Event()
    left_at_stop: list[int] = []

    async def sync() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            left_at_stop.append(await client.pttl(key))  # read beside the dead link
            stopped.set()
            raise

    task = asyncio.create_task(sync_exclusively(holder, "t-refused", "a", sync, ttl=ttl))
    try:
        async def taken() -> bool:
            return bool(await client.exists(key))

        await wait_until(taken, timeout=5, message="the lease is taken")
        proxy.refuse = True
        proxy.drop_all()
        with pytest.raises(AccountLeaseLost, match="unknown"):
            await asyncio.wait_for(task, timeout=ttl * 4)
        assert stopped.is_set()
        # It stopped its sync while its lease still kept others out.
        assert left_at_stop and left_at_stop[0] > 0, left_at_stop
    finally:
        proxy.refuse = False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(key)
        await holder.aclose()


@pytest.mark.parametrize("account_id", ["ünïcødé-账户-🛒", "a:b:c", "{tag}x", "x}{y", " ", "a" * 300])
async def test_odd_account_ids_get_their_own_lease(client: aioredis.Redis, account_id: str) -> None:
    """Odd ids (unicode, ':' and braces, a space, very long) each take and free their own
    lease, and never another id's. (Holds.)"""
    inside: list[bool] = []
    other = lease_key("t-odd", "a")
    await client.set(other, "someone", px=10_000)

    async def sync() -> str:
        inside.append(bool(await client.exists(lease_key("t-odd", account_id))))
        return "ok"

    try:
        assert await sync_exclusively(client, "t-odd", account_id, sync) == "ok"
        assert inside == [True]
        assert not await client.exists(lease_key("t-odd", account_id))
        assert await client.get(other) == b"someone"
    finally:
        await client.delete(other)


# --- the app's workers, with sync_account replaced by a recorder -------------------------


@dataclass
class Syncs:
    """Every call of processors.jobs.sync_account the app's workers make."""
    duration: float = 0.3
    running: collections.Counter[str] = field(default_factory=collections.Counter)
    most: collections.Counter[str] = field(default_factory=collections.Counter)
    # (account, kind, run id) in order; kind "data" (every sync type) or "manual" (one)
    starts: list[tuple[str, str, str]] = field(default_factory=list)

    async def __call__(self, ctx: Any, account_id: str, sync_types: Any, progress: Any, *,
                       run_id: str, since: Any = None) -> dict[str, int]:
        self.running[account_id] += 1
        self.most[account_id] = max(self.most[account_id], self.running[account_id])
        self.starts.append((account_id, "manual" if len(sync_types) == 1 else "data", run_id))
        try:
            await asyncio.sleep(self.duration)
        finally:
            self.running[account_id] -= 1
        return {"rows": 1}


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        await apply_group_defaults()
        yield running


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    recorder = Syncs()
    monkeypatch.setattr(processors.jobs, "sync_account", recorder)
    return recorder


def manual(account: str, user: str, sync_type: str = "listings") -> dict[str, Any]:
    return {"amazon_account_id": account, "user_id": user, "sync_type": sync_type}


async def test_many_syncs_of_one_account_from_every_side_never_overlap(
        app: App, syncs: Syncs, client: aioredis.Redis) -> None:
    """Manual syncs, grouped scheduled syncs and group-less (flow) syncs of one account, all
    at once: one runs at a time, each completes on its first attempt, another account's syncs
    go on, and the lease is gone at the end. (Holds.)"""
    syncs.duration = 0.1
    data, man = app.queue(QueueName.DATA_SYNC), app.queue(QueueName.MANUAL_SYNC)
    jobs = []
    for i in range(4):
        jobs.append(await man.add("manual-sync", manual("acct-0", f"u{i}"),
                                  **account_group(QueueName.MANUAL_SYNC, "acct-0")))
    for _ in range(2):
        jobs.append(await data.add("data-sync", {"amazon_account_id": "acct-0"},
                                   **account_group(QueueName.DATA_SYNC, "acct-0")))
        jobs.append(await data.add("data-sync", {"amazon_account_id": "acct-0"}))  # as a flow's
    jobs.append(await man.add("manual-sync", manual("acct-1", "u9"),
                              **account_group(QueueName.MANUAL_SYNC, "acct-1")))
    for job in jobs:
        await job.wait_until_finished(timeout=60)
    for job in jobs:
        got = await job.refresh()
        assert got.state == "completed" and got.attempts_made == 1, (got.id, got.state)
    assert syncs.most["acct-0"] == 1
    assert len([s for s in syncs.starts if s[0] == "acct-0"]) == 8
    assert not await client.exists(lease_key(app.prefix, "acct-0"))


async def test_a_stream_of_manual_syncs_does_not_starve_a_waiting_scheduled_sync(
        app: App, syncs: Syncs) -> None:
    """A scheduled data-sync of acct-0 arrives while a manual sync runs; then 16 more manual
    syncs of acct-0 are queued (users clicking "sync now" for each sync type, several users).
    The manual-sync queue starts its next acct-0 job a few ms after the previous one frees
    the lease; the scheduled sync retries every 2 s and practically never lands in that gap.
    It should get its turn before the manual syncs queued after it, or at least within a
    bounded number of them, not only once the whole stream has drained."""
    data, man = app.queue(QueueName.DATA_SYNC), app.queue(QueueName.MANUAL_SYNC)
    first = await man.add("manual-sync", manual("acct-0", "u0"),
                          **account_group(QueueName.MANUAL_SYNC, "acct-0"))
    await wait_until(lambda: bool(syncs.starts), timeout=10, message="the first manual sync runs")
    scheduled = await data.add("data-sync", {"amazon_account_id": "acct-0"},
                               **account_group(QueueName.DATA_SYNC, "acct-0"))
    later = [await man.add("manual-sync", manual("acct-0", f"u{i}"),
                           **account_group(QueueName.MANUAL_SYNC, "acct-0")) for i in range(16)]
    await scheduled.wait_until_finished(timeout=60)
    for job in (first, *later):
        await job.wait_until_finished(timeout=60)
    order = [(kind, run) for _, kind, run in syncs.starts]
    at = order.index(("data", scheduled.id))
    ahead = [j.id for j in later if order.index(("manual", j.id)) < at]
    assert len(ahead) <= 8, (f"{len(ahead)} of the 16 manual syncs queued after the scheduled "
                             f"sync ran before it")
