"""One sync of an Amazon account at a time, whichever queue, host or flow it comes from.

The account groups (concurrency 1, ``processors/queues.py``) keep the syncs of one account
apart *within* a queue: a group's limits hold in its queue. But a user's manual-sync lives
in a queue of its own, beside data-sync (the hourly syncs and the daily report flow's), and
a job may be added without its group. So every sync also holds the account's lease, a
redis-py ``Lock`` on ``<prefix>:sync-lease:<account id>``:

* A sync that finds the lease taken raises ``AccountBusy``, which ``processors.outcomes``
  turns into ``GroupRateLimited``: the job goes back to its group, which sleeps for
  ``BUSY_RETRY_SECONDS`` with no attempt used (a job without a group waits alone), and tries
  again.
* The holder renews the lease every third of ``LEASE_SECONDS``. A killed worker's lease
  expires by itself, and ``LEASE_SECONDS`` is longer than the worker's job lease (30 s by
  default), so the job that a killed worker held comes back to the queue before the account
  is free again. A holder that finds its lease lost (a frozen worker woken after it
  expired), or cannot renew it before it would expire (Redis unreachable), stops its sync
  and raises ``AccountLeaseLost``, an ordinary error that the job's retries handle.

Re-sent commands are harmless: redis-py re-sends a command whose reply was lost, and a
re-sent ``SET NX`` of our own token finds the key taken by that same token, which this
module recognises as held; renewal (``PEXPIRE`` if the token matches) and release (``DEL``
if it matches) are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import LockError, RedisError

log = logging.getLogger("processors.account_lease")

# Seconds. Longer than the worker's job lease (minique's lock_duration, 30 s by default).
LEASE_SECONDS = 60.0
# Seconds an account's group sleeps when a sync finds the account busy.
BUSY_RETRY_SECONDS = 2.0

T = TypeVar("T")


class AccountBusy(Exception):
    """Another job is syncing this account; try again in ``delay`` seconds."""

    def __init__(self, account_id: str, delay: float) -> None:
        super().__init__(f"account {account_id!r} is being synced by another job")
        self.account_id = account_id
        self.delay = delay


class AccountLeaseLost(Exception):
    """The sync stopped: its account lease expired, or could not be renewed in time."""


def lease_key(prefix: str, account_id: str) -> str:
    """The lease's Redis key: ``<prefix>:sync-lease:<account id>``."""
    return f"{prefix}:sync-lease:{account_id}"


async def _acquire(redis: Any, lock: Any, key: str, token: str) -> bool:
    if await lock.acquire(blocking=False, token=token):
        return True
    # A SET whose reply was lost and that redis-py sent again finds our own token there.
    stored = await redis.get(key)
    if stored is not None and (stored.decode() if isinstance(stored, bytes) else stored) == token:
        lock.local.token = token.encode()
        return True
    return False


async def _keep(lock: Any, ttl: float, account_id: str) -> str:
    """Renews the lease every ``ttl / 3`` s; returns why it stopped: "lost" (taken over or
    expired) or "unknown" (no renewal got through before the lease would expire)."""
    interval = ttl / 3
    held_until = time.monotonic() + ttl
    while True:
        await asyncio.sleep(interval)
        sent = time.monotonic()
        try:
            await lock.reacquire()
        except LockError:
            return "lost"
        except RedisError as exc:
            log.warning("account %s: sync lease renewal failed (%s)", account_id, exc)
            if time.monotonic() + interval >= held_until:
                return "unknown"
            continue
        held_until = sent + ttl


async def sync_exclusively(redis: Any, prefix: str, account_id: str,
                           sync: Callable[[], Awaitable[T]], *, ttl: float = LEASE_SECONDS,
                           busy_retry: float = BUSY_RETRY_SECONDS) -> T:
    """Runs ``sync()`` while holding ``account_id``'s lease and returns its result.

    ``redis``: an asyncio redis-py client. ``ttl``: the lease's time to live in seconds,
    renewed every ``ttl / 3``. Raises ``AccountBusy(account_id, busy_retry)`` without running
    ``sync`` when another holder has the lease; ``AccountLeaseLost`` after cancelling
    ``sync`` when the lease is lost while it runs; ``sync``'s own errors unchanged; redis-py
    errors of the first acquire unchanged.
    """
    key = lease_key(prefix, account_id)
    lock = redis.lock(key, timeout=ttl, thread_local=False, raise_on_release_error=False)
    token = uuid.uuid4().hex
    if not await _acquire(redis, lock, key, token):
        raise AccountBusy(account_id, busy_retry)
    body = asyncio.ensure_future(sync())
    keeper = asyncio.ensure_future(_keep(lock, ttl, account_id))
    try:
        await asyncio.wait({body, keeper}, return_when=asyncio.FIRST_COMPLETED)
        if body.done():
            return body.result()
        body.cancel()
        await asyncio.gather(body, return_exceptions=True)
        raise AccountLeaseLost(f"account {account_id!r}: the sync lease was "
                               f"{keeper.result()} while the sync ran; it stopped")
    finally:
        keeper.cancel()
        if not body.done():  # we were cancelled (a job timeout, cancel or shutdown)
            body.cancel()
            await asyncio.gather(body, return_exceptions=True)
        await asyncio.gather(keeper, return_exceptions=True)
        try:
            await lock.release()
        except RedisError as exc:  # the lease then expires by itself
            log.warning("account %s: sync lease not released (%s)", account_id, exc)
