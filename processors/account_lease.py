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
* Turns are fair: the first sync turned away reserves the next turn
  (``<prefix>:sync-next:<account id>``, its queue and job id, for ``RESERVE_SECONDS``,
  renewed by each try), and until it takes the lease the others are turned away too. A
  stream of manual syncs cannot keep a scheduled one waiting, however fast each one follows
  the last; a reservation whose job is gone expires by itself.
* The holder renews the lease every third of ``LEASE_SECONDS``. A killed worker's lease
  expires by itself, and ``LEASE_SECONDS`` is longer than the worker's job lease (30 s by
  default), so the job that a killed worker held comes back to the queue before the account
  is free again. A holder that finds its lease lost (a frozen worker woken after it
  expired), or cannot renew it before it would expire (Redis unreachable, or a dead link:
  each renewal is bounded by the time the lease has left), stops its sync and raises
  ``AccountLeaseLost``, an ordinary error that the job's retries handle.
* A cancel (a job's timeout or cancel, a shutdown) that lands while the acquire is in
  flight releases what it may have taken, so the account is not kept busy for a TTL.

Re-sent commands are harmless: redis-py re-sends a command whose reply was lost, and a
re-sent ``SET NX`` of our own token finds the key taken by that same token, which this
module recognises as held; renewal (``PEXPIRE`` if the token matches) and release (``DEL``
if it matches) are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
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
# Seconds a reservation of the next turn lasts unless its sync tries again: several tries'
# worth, since a try comes back through the queue (its group's sleep, then a worker's fetch).
RESERVE_SECONDS = 5 * BUSY_RETRY_SECONDS

T = TypeVar("T")
# Releases started by cancelled acquires, kept referenced until they end.
_undoing: set[asyncio.Future[Any]] = set()


class AccountBusy(Exception):
    """Another job is syncing this account (or has the next turn); try again in ``delay``
    seconds."""

    def __init__(self, account_id: str, delay: float) -> None:
        super().__init__(f"account {account_id!r} is being synced by another job")
        self.account_id = account_id
        self.delay = delay


class AccountLeaseLost(Exception):
    """The sync stopped: its account lease expired, or could not be renewed in time."""


def lease_key(prefix: str, account_id: str) -> str:
    """The lease's Redis key: ``<prefix>:sync-lease:<account id>``."""
    return f"{prefix}:sync-lease:{account_id}"


def next_turn_key(prefix: str, account_id: str) -> str:
    """The key of the next turn's reservation: ``<prefix>:sync-next:<account id>``."""
    return f"{prefix}:sync-next:{account_id}"


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


async def _acquire(redis: Any, lock: Any, key: str, token: str) -> bool:
    if await lock.acquire(blocking=False, token=token):
        return True
    # A SET whose reply was lost and that redis-py sent again finds our own token there.
    if _text(await redis.get(key)) == token:
        lock.local.token = token.encode()
        return True
    return False


async def _acquire_or_undo(redis: Any, lock: Any, key: str, token: str) -> bool:
    """``_acquire``; cancelled while it runs (its SET may have run in Redis, the reply not
    yet here), it releases the lease if it holds our token, then lets the cancel go on."""
    try:
        return await _acquire(redis, lock, key, token)
    except asyncio.CancelledError:
        # The release goes on by itself (a cancelled job must end now, whatever the link):
        # it deletes the key only if it holds our token; should it fail, the TTL ends it.
        lock.local.token = token.encode()
        undo = asyncio.ensure_future(lock.release())
        _undoing.add(undo)
        undo.add_done_callback(_forget_undo)
        raise


def _forget_undo(undo: asyncio.Future[Any]) -> None:
    _undoing.discard(undo)
    if not undo.cancelled() and undo.exception() is not None:
        log.warning("a cancelled acquire's release failed (%s); the lease's TTL ends it",
                    undo.exception())


async def _take_turn(redis: Any, prefix: str, account_id: str, waiter: str | None) -> bool:
    """False when another waiter has the next turn."""
    if waiter is None:
        return True
    reserved = _text(await redis.get(next_turn_key(prefix, account_id)))
    return reserved is None or reserved == waiter


async def _reserve_turn(redis: Any, prefix: str, account_id: str, waiter: str | None) -> None:
    """The account was busy: ``waiter`` takes the next turn if nobody has it, or keeps it."""
    if waiter is None:
        return
    key, ms = next_turn_key(prefix, account_id), int(RESERVE_SECONDS * 1000)
    # SET NX and its re-send are alike: the second finds our own value and renews it.
    if not await redis.set(key, waiter, nx=True, px=ms) and _text(await redis.get(key)) == waiter:
        await redis.pexpire(key, ms)


async def _end_turn(redis: Any, prefix: str, account_id: str, waiter: str | None) -> None:
    """The lease is ours: our reservation, if any, is used up."""
    if waiter is None:
        return
    key = next_turn_key(prefix, account_id)
    # GET then DEL, not atomic: while our reservation stands nobody else can set one (SET
    # NX), so the DEL can only hit another's if ours expired in between; that waiter then
    # reserves again at its next try.
    if _text(await redis.get(key)) == waiter:
        await redis.delete(key)


async def _keep(lock: Any, ttl: float, held_until: float, account_id: str,
                stop: asyncio.Event) -> str:
    """Renews the lease every ``ttl / 3`` s until ``stop`` is set; returns why it stopped:
    "stopped", "lost" (taken over or expired) or "unknown" (no renewal got through before
    ``held_until``, a monotonic time by which the lease may have expired). Each renewal
    waits at most until then.

    ``stop``, not a cancel alone, ends it: redis-py on Python 3.11 can swallow a cancel that
    lands while a command is being written (its ``asyncio.wait_for`` around the write), so
    the renewal returns as if nothing happened, and a keeper that waited for a cancel
    renewed for ever while the sync's end waited for it (CI runs hung so)."""
    interval = ttl / 3
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, min(interval, held_until - time.monotonic()))):
                await stop.wait()
        sent = time.monotonic()
        if stop.is_set():
            break
        if sent >= held_until:
            return "unknown"
        try:
            async with asyncio.timeout(held_until - sent):
                await lock.reacquire()
        except LockError:
            return "lost"
        except TimeoutError:
            return "unknown"
        except RedisError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py can also turn a cancel that lands mid-read into a connection error.
                raise asyncio.CancelledError from exc
            log.warning("account %s: sync lease renewal failed (%s)", account_id, exc)
            continue
        # The TTL ran from when Redis got the call, after ``sent``; stop a little early so a
        # cancelled sync has stopped before another may start.
        held_until = sent + ttl * 0.9
    return "stopped"


async def sync_exclusively(redis: Any, prefix: str, account_id: str,
                           sync: Callable[[], Awaitable[T]], *, waiter: str | None = None,
                           ttl: float = LEASE_SECONDS,
                           busy_retry: float = BUSY_RETRY_SECONDS) -> T:
    """Runs ``sync()`` while holding ``account_id``'s lease and returns its result.

    ``redis``: an asyncio redis-py client. ``waiter``: who asks, the same on each try (the
    app passes ``"<queue>:<job id>"``); with it, the first sync turned away has the next
    turn (None: no turn is kept, first come first served). ``ttl``: the lease's time to live
    in seconds, renewed every ``ttl / 3``. Raises ``AccountBusy(account_id, busy_retry)``
    without running ``sync`` when another holder has the lease or the next turn;
    ``AccountLeaseLost`` after cancelling ``sync`` when the lease is lost while it runs;
    ``sync``'s own errors unchanged; redis-py errors of the first acquire unchanged.
    """
    key = lease_key(prefix, account_id)
    lock = redis.lock(key, timeout=ttl, thread_local=False, raise_on_release_error=False)
    token = uuid.uuid4().hex
    if not await _take_turn(redis, prefix, account_id, waiter):
        raise AccountBusy(account_id, busy_retry)
    sent = time.monotonic()
    if not await _acquire_or_undo(redis, lock, key, token):
        await _reserve_turn(redis, prefix, account_id, waiter)
        raise AccountBusy(account_id, busy_retry)
    body: asyncio.Future[T] | None = None
    stop = asyncio.Event()
    keeper = asyncio.ensure_future(_keep(lock, ttl, sent + ttl * 0.9, account_id, stop))
    try:
        await _end_turn(redis, prefix, account_id, waiter)
        body = asyncio.ensure_future(sync())
        await asyncio.wait({body, keeper}, return_when=asyncio.FIRST_COMPLETED)
        if body.done():
            return body.result()
        body.cancel()
        await asyncio.gather(body, return_exceptions=True)
        raise AccountLeaseLost(f"account {account_id!r}: the sync lease was "
                               f"{keeper.result()} while the sync ran; it stopped")
    finally:
        stop.set()
        keeper.cancel()  # a renewal in flight ends now; ``stop`` ends the loop even if the
        # cancel is swallowed (see ``_keep``)
        if body is not None and not body.done():  # cancelled: a job timeout, cancel, shutdown
            body.cancel()
            await asyncio.gather(body, return_exceptions=True)
        await asyncio.gather(keeper, return_exceptions=True)
        try:
            await lock.release()
        except RedisError as exc:  # the lease then expires by itself
            log.warning("account %s: sync lease not released (%s)", account_id, exc)
