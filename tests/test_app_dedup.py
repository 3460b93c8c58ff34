"""The app's manual sync is deduplicated per account and sync type (minique's dedup)."""

from __future__ import annotations

import asyncio
import re
import uuid

from click.testing import CliRunner

from minique import Queue
from processors.cli import main


async def test_manual_sync_is_deduplicated_per_account_and_sync_type(redis_url: str) -> None:
    prefix = f"mdd-{uuid.uuid4().hex[:6]}"

    async def sync(account: str, kind: str) -> str:
        # The command runs its own event loop: in a thread of its own.
        result = await asyncio.to_thread(CliRunner().invoke, main, [
            "sync", account, "--type", kind, "--url", redis_url, "--prefix", prefix])
        assert result.exit_code == 0, result.output
        found = re.search(r"queued manual-sync job (\S+)", result.output)
        assert found, result.output
        return found.group(1)

    first = await sync("acct-0", "orders")
    assert [await sync("acct-0", "orders") for _ in range(3)] == [first] * 3
    others = {await sync("acct-0", "fees"), await sync("acct-1", "orders")}
    assert first not in others and len(others) == 2
    async with Queue("manual-sync", url=redis_url, prefix=prefix) as queue:
        assert (await queue.get_stats())["waiting"] == 3
        await queue.obliterate(force=True)
