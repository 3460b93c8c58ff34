"""Per-(account, operation) token buckets in Redis, shared by every worker process."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

_SCRIPT = resources.files("processors.amazon").joinpath("quota.lua").read_text(encoding="utf-8")


class RedisQuota:
    """Keys share the ``{minique:amazon-quota}`` hash tag, so one slot serves them on Cluster."""

    def __init__(self, redis: Redis, hash_tag: str = "{minique:amazon-quota}") -> None:
        self._redis = redis
        self._prefix = hash_tag
        self._sha: str | None = None

    def key(self, account_id: str, operation: str) -> str:
        return f"{self._prefix}:{account_id}:{operation}"

    async def acquire(self, account_id: str, operation: str, rate: float, burst: int) -> float:
        """Take a token. Returns 0.0 when taken, else the seconds until one will be available."""
        wait_ms = await self._run(self.key(account_id, operation), rate, burst, "take")
        return wait_ms / 1000.0

    async def drain(self, account_id: str, operation: str, rate: float, burst: int) -> None:
        """Amazon answered 429: our estimate was optimistic, so start from empty."""
        await self._run(self.key(account_id, operation), rate, burst, "drain")

    async def _run(self, key: str, rate: float, burst: int, mode: str) -> int:
        if self._sha is None:
            self._sha = str(await self._redis.script_load(_SCRIPT))
        args = (f"{rate:.6f}", str(burst), mode)
        try:
            result = await self._redis.evalsha(self._sha, 1, key, *args)
        except NoScriptError:
            # The server restarted or SCRIPT FLUSH ran: load again, once.
            self._sha = str(await self._redis.script_load(_SCRIPT))
            result = await self._redis.evalsha(self._sha, 1, key, *args)
        return int(result)
