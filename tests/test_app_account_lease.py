"""One sync of an account at a time across queues: the account sync lease
(processors/account_lease.py) against real Redis, with the app's workers and alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from app_support import App, running_app
from helpers import wait_until

from processors.account_lease import AccountBusy, AccountLeaseLost, lease_key, sync_exclusively
from processors.queues import QueueName, account_group, apply_group_defaults


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        yield running


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def test_a_manual_sync_and_a_scheduled_sync_of_one_account_never_overlap(
        app: App, client: aioredis.Redis) -> None:
    """Each sync's listings call takes 1.5 s at the fake Amazon, so syncs that overlapped
    would run side by side; with the lease one waits (no attempt used) until the other ends,
    and another account's manual sync is not held up by it."""
    await apply_group_defaults()
    app.fake.inject("searchListingsItems", "slow", delay=1.5, times=2, seller=0)
    data_sync = app.queue(QueueName.DATA_SYNC)
    manual = app.queue(QueueName.MANUAL_SYNC)
    scheduled = await data_sync.add("data-sync", {"amazon_account_id": "acct-0",
                                                  "sync_types": ["listings"]},
                                    **account_group(QueueName.DATA_SYNC, "acct-0"))
    clicked = await manual.add("manual-sync", {"amazon_account_id": "acct-0", "user_id": "u1",
                                               "sync_type": "listings"},
                               **account_group(QueueName.MANUAL_SYNC, "acct-0"))
    other = await manual.add("manual-sync", {"amazon_account_id": "acct-1", "user_id": "u1",
                                             "sync_type": "listings"},
                             **account_group(QueueName.MANUAL_SYNC, "acct-1"))
    for job in (scheduled, clicked, other):
        await job.wait_until_finished(timeout=30)
    scheduled, clicked, other = (await scheduled.refresh(), await clicked.refresh(),
                                 await other.refresh())
    runs = sorted([(j.processed_on, j.finished_on) for j in (scheduled, clicked)],
                  key=lambda r: r[0] or 0)
    assert all(start is not None and end is not None for start, end in runs)
    assert runs[0][1] <= runs[1][0], f"the two syncs of acct-0 overlapped: {runs}"  # type: ignore[operator]
    assert scheduled.attempts_made == 1 and clicked.attempts_made == 1
    busy = [e for q, j in ((QueueName.DATA_SYNC, scheduled), (QueueName.MANUAL_SYNC, clicked))
            for e in await app.events(q, j.id)
            if "being synced by another job" in e.fields.get("reason", "")]
    assert busy, "neither sync found the account busy"
    assert other.finished_on is not None and other.finished_on < max(r[1] for r in runs)  # type: ignore[type-var]
    assert not await client.exists(lease_key(app.prefix, "acct-0"))


async def test_an_ungrouped_sync_waits_for_a_running_manual_sync(
        app: App, client: aioredis.Redis) -> None:
    """A data-sync job added without its group (as a user may) waits alone for the
    account's lease."""
    app.fake.inject("searchListingsItems", "slow", delay=1.5, times=1, seller=0)
    manual = app.queue(QueueName.MANUAL_SYNC)
    clicked = await manual.add("manual-sync", {"amazon_account_id": "acct-0", "user_id": "u1",
                                               "sync_type": "listings"})
    key = lease_key(app.prefix, "acct-0")

    async def leased() -> bool:
        return bool(await client.exists(key))

    await wait_until(leased, timeout=10, message="the manual sync holds acct-0's lease")
    child = await app.queue(QueueName.DATA_SYNC).add("data-sync", {"amazon_account_id": "acct-0",
                                                                    "sync_types": ["listings"]})
    await clicked.wait_until_finished(timeout=30)
    await child.wait_until_finished(timeout=30)
    clicked, child = await clicked.refresh(), await child.refresh()
    assert clicked.finished_on is not None and child.processed_on is not None
    assert child.processed_on >= clicked.finished_on
    assert child.attempts_made == 1


async def test_a_busy_account_runs_nothing(client: aioredis.Redis) -> None:
    ran = []

    async def sync() -> int:
        ran.append(1)
        return 1

    await client.set(lease_key("t-busy", "a"), "someone-else", px=10_000)
    with pytest.raises(AccountBusy, match="being synced by another job") as raised:
        await sync_exclusively(client, "t-busy", "a", sync, busy_retry=0.5)
    assert raised.value.delay == 0.5 and not ran
    assert await client.get(lease_key("t-busy", "a")) == b"someone-else"


async def test_the_lease_is_renewed_while_the_sync_runs_and_released_after(
        client: aioredis.Redis) -> None:
    key = lease_key("t-renew", "a")
    release = asyncio.Event()

    async def sync() -> str:
        await release.wait()
        return "done"

    task = asyncio.create_task(sync_exclusively(client, "t-renew", "a", sync, ttl=0.6))

    async def renewed_past_its_first_ttl() -> bool:
        return bool(await client.exists(key))

    await wait_until(renewed_past_its_first_ttl, timeout=5, message="the lease is taken")
    # Three TTLs later the lease is still there: the holder renews it.
    await asyncio.sleep(1.8)
    assert await client.exists(key)
    release.set()
    assert await task == "done"
    assert not await client.exists(key)


async def test_a_lost_lease_stops_the_sync(client: aioredis.Redis) -> None:
    """A frozen worker woken after its lease expired and another sync took it: the renewal
    finds someone else's token and the sync is cancelled, not run beside the other."""
    key = lease_key("t-lost", "a")
    cancelled = asyncio.Event()

    async def sync() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(sync_exclusively(client, "t-lost", "a", sync, ttl=0.6))

    async def taken() -> bool:
        return bool(await client.exists(key))

    await wait_until(taken, timeout=5, message="the lease is taken")
    await client.set(key, "another-holder", px=10_000)
    with pytest.raises(AccountLeaseLost, match="lost"):
        await asyncio.wait_for(task, timeout=5)
    assert cancelled.is_set()
    assert await client.get(key) == b"another-holder"  # not released by the loser


async def test_a_resent_acquire_finds_its_own_token(client: aioredis.Redis,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py re-sends a SET whose reply was lost: the second SET NX fails on our own
    token, which must count as held (not as busy, which would stall the account a TTL)."""
    import uuid

    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))
    await client.set(lease_key("t-resent", "a"), uuid.UUID(int=7).hex, px=10_000)

    async def sync() -> str:
        return "ran"

    assert await sync_exclusively(client, "t-resent", "a", sync) == "ran"
    assert not await client.exists(lease_key("t-resent", "a"))


async def test_a_cancelled_job_releases_the_lease(client: aioredis.Redis) -> None:
    key = lease_key("t-cancel", "a")

    async def sync() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(sync_exclusively(client, "t-cancel", "a", sync))

    async def taken() -> bool:
        return bool(await client.exists(key))

    await wait_until(taken, timeout=5, message="the lease is taken")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # A cancel that lands while the acquire's reply is on its way releases the lease in the
    # background (_acquire_or_undo: the cancelled job ends at once): it goes, soon.
    async def released() -> bool:
        return not await client.exists(key)

    await wait_until(released, timeout=5, message="the lease is released")


async def test_a_cancel_that_lands_as_a_renewal_completes_stops_the_keeper() -> None:
    # On Python 3.11, asyncio.wait_for swallows a cancel that lands as the awaited call
    # completes: the keeper then renewed for ever, and sync_exclusively waited on it (a CI
    # run hung 120 s). The renewal below cancels the keeper as it completes.
    from processors.account_lease import _keep

    keeper: asyncio.Future[str] | None = None
    renewals = 0

    class CancellingLock:
        async def reacquire(self) -> bool:
            nonlocal renewals
            renewals += 1
            assert keeper is not None
            keeper.cancel()
            return True

    keeper = asyncio.ensure_future(_keep(CancellingLock(), 0.03, time.monotonic() + 60, "a",
                                         asyncio.Event()))
    done, _ = await asyncio.wait({keeper}, timeout=2.0)
    assert keeper in done and keeper.cancelled(), f"the keeper ran on ({renewals} renewals)"


async def test_a_cancel_that_redis_py_turns_into_a_connection_error_stops_the_keeper() -> None:
    # redis-py can end a command cancelled mid-read with a ConnectionError rather than the
    # CancelledError: the keeper took it for a failed renewal and went on renewing.
    from redis.exceptions import ConnectionError as RedisConnectionError

    from processors.account_lease import _keep

    class ConvertingLock:
        async def reacquire(self) -> bool:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise RedisConnectionError("Connection closed by server.") from None
            return True

    keeper = asyncio.ensure_future(_keep(ConvertingLock(), 0.003, time.monotonic() + 60, "a",
                                         asyncio.Event()))
    await asyncio.sleep(0.05)  # its first renewal is on the way
    keeper.cancel()
    done, _ = await asyncio.wait({keeper}, timeout=2.0)
    assert keeper in done and keeper.cancelled()


class _SwallowingLock:
    """A real lease lock whose renewal swallows a cancel, as redis-py 8 does on Python 3.11
    when the cancel lands while the command is being written (its ``asyncio.wait_for``
    around the write): the renewal returns as if no cancel had come."""

    def __init__(self, lock: object) -> None:
        self._lock = lock
        self.in_flight = asyncio.Event()
        self.proceed = asyncio.Event()
        self.swallowed = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._lock, name)

    async def reacquire(self) -> bool:
        self.in_flight.set()
        try:
            await self.proceed.wait()
        except asyncio.CancelledError:
            self.swallowed += 1
        return bool(await self._lock.reacquire())  # type: ignore[attr-defined]


class _ClientWithSwallowingLocks:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self.locks: list[_SwallowingLock] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def lock(self, *args: object, **kwargs: object) -> _SwallowingLock:
        lock = _SwallowingLock(self._client.lock(*args, **kwargs))  # type: ignore[arg-type]
        self.locks.append(lock)
        return lock


async def test_a_sync_ends_when_the_cancel_of_its_renewal_in_flight_is_swallowed(
        client: aioredis.Redis) -> None:
    """The CI hang of test_the_lease_is_renewed_while_the_sync_runs_and_released_after: the
    sync ended while a renewal was in flight, and the keeper's cancel was swallowed inside
    redis-py, so the keeper renewed for ever and the sync's end waited for it."""
    wrapped = _ClientWithSwallowingLocks(client)
    release = asyncio.Event()

    async def sync() -> str:
        await release.wait()
        return "done"

    task = asyncio.create_task(sync_exclusively(wrapped, "t-swallow", "a", sync, ttl=1.5))
    await wait_until(lambda: bool(wrapped.locks) and wrapped.locks[0].in_flight.is_set(),
                     timeout=5, message="a renewal is in flight")
    release.set()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the sync did not end: its keeper renewed on after its cancel"
    assert task.result() == "done" and wrapped.locks[0].swallowed == 1
    assert not await client.exists(lease_key("t-swallow", "a"))
