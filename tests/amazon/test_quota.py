"""The Redis token bucket shared by workers."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from processors.amazon import RedisQuota


async def test_bucket_allows_burst_then_reports_wait(redis_client: aioredis.Redis) -> None:
    quota = RedisQuota(redis_client)
    # One token per 10 s: the four calls would have to take seconds (not milliseconds) for a
    # refill to blur the figures, so a loaded machine cannot fail this.
    waits = [await quota.acquire("acct", "op", 0.1, 3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 5.0 < waits[3] <= 10.0


async def test_bucket_refills_over_time(redis_client: aioredis.Redis) -> None:
    quota = RedisQuota(redis_client)
    # One token a second: the second call comes well within that, however slow the machine.
    assert await quota.acquire("acct", "fast", 1.0, 1) == 0.0
    wait = await quota.acquire("acct", "fast", 1.0, 1)
    assert 0 < wait <= 1.0
    # Wait as long as the bucket says, then poll with a deadline.
    await asyncio.sleep(wait)
    deadline = time.monotonic() + 10.0
    while (wait := await quota.acquire("acct", "fast", 1.0, 1)) > 0:
        assert time.monotonic() < deadline, "bucket never refilled"
        await asyncio.sleep(wait)


async def test_drain_empties_the_bucket(redis_client: aioredis.Redis) -> None:
    quota = RedisQuota(redis_client)
    await quota.drain("acct", "op", 0.1, 10)
    assert await quota.acquire("acct", "op", 0.1, 10) > 5.0  # a token needs 10 s once empty


async def test_keys_share_one_cluster_slot(redis_client: aioredis.Redis) -> None:
    quota = RedisQuota(redis_client)
    await quota.acquire("a", "x", 1.0, 1)
    await quota.acquire("b", "y", 1.0, 1)
    keys = sorted(k.decode() for k in await redis_client.keys("*"))
    assert keys == ["{minique:amazon-quota}:a:x", "{minique:amazon-quota}:b:y"]
    assert all([await redis_client.pttl(k) > 0 for k in keys])


async def test_script_is_reloaded_after_script_flush(redis_client: aioredis.Redis) -> None:
    quota = RedisQuota(redis_client)
    assert await quota.acquire("acct", "op", 1.0, 5) == 0.0
    await redis_client.script_flush()
    assert await quota.acquire("acct", "op", 1.0, 5) == 0.0


async def test_buckets_are_per_account_and_operation(redis_client: aioredis.Redis) -> None:
    quota = RedisQuota(redis_client)
    assert await quota.acquire("a", "op", 0.1, 1) == 0.0
    assert await quota.acquire("a", "op", 0.1, 1) > 0  # empty for 10 s
    assert await quota.acquire("b", "op", 0.1, 1) == 0.0
    assert await quota.acquire("a", "other", 0.1, 1) == 0.0
