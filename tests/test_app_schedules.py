"""The recurring jobs: applied idempotently, by the demo and by ``minique worker``'s hook."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from app_support import App, running_app

from processors import schedules
from processors.jobs import registry
from processors.queues import QueueName, get_queue, get_queue_stats
from processors.storage import AccountRecord
from processors.sync_logic import secret_env_name


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path, workers=None) as running:
        yield running


async def _schedulers() -> dict[str, tuple[str | None, str | None, object]]:
    out = {}
    for name in schedules.SCHEDULES:
        for s in await get_queue(name).get_job_schedulers():
            out[s.id] = (s.cron, s.pending_job_id, s.data)
    return out


async def test_applying_twice_leaves_one_scheduler_per_id(app: App) -> None:
    await schedules.apply_schedules(["acct-0", "acct-1"])
    first = await _schedulers()
    await schedules.apply_schedules(["acct-0", "acct-1"])
    assert await _schedulers() == first
    want = [f"{q.value}:{a}" for q in schedules.SCHEDULES for a in ("acct-0", "acct-1")]
    assert sorted(first) == sorted(want)
    assert first["data-sync:acct-0"][0] == "0 * * * *"
    assert first["reports:acct-1"][0] == "0 2 * * *"
    assert first["alerts:acct-0"][0] == "*/15 * * * *"
    assert first["alerts:acct-0"][2] == {"amazon_account_id": "acct-0"}
    for name in schedules.SCHEDULES:  # one pending firing per scheduler, no more
        assert (await get_queue_stats(name))["delayed"] == 2
    # An account that is gone loses its schedulers; others' schedulers are left alone.
    await get_queue(QueueName.ALERTS).upsert_job_scheduler("someone-else", every=60.0, job_name="x")
    await schedules.apply_schedules(["acct-0"])
    assert sorted(await _schedulers()) == ["alerts:acct-0", "data-sync:acct-0", "reports:acct-0",
                                           "someone-else"]


async def test_startup_hook_schedules_connected_accounts(app: App) -> None:
    app.storage.save_account(AccountRecord(
        id="no-secrets", name="n", region="NA", marketplace_ids=("X",), seller_id="S", lwa_client_id="c"))
    assert len(registry.startup_hooks) == 1
    await registry.startup_hooks[0](app.redis_url, app.prefix)
    ids = sorted(await _schedulers())
    assert "data-sync:acct-0" in ids and "data-sync:acct-1" in ids
    # The daily report runs at 02:00 of the seller's day (the US marketplace's time zone).
    zones = {s.id: s.tz for name in schedules.SCHEDULES for s in await get_queue(name).get_job_schedulers()}
    assert (zones["reports:acct-0"], zones["data-sync:acct-0"]) == ("America/Los_Angeles", "UTC")
    assert not [i for i in ids if "no-secrets" in i]  # no credentials: not connected
    assert schedules.connected_accounts(app.storage, {secret_env_name("no-secrets", "LWA_CLIENT_SECRET"): "s",
                                                      secret_env_name("no-secrets", "REFRESH_TOKEN"): "r"}
                                        ) == ["acct-0", "acct-1", "no-secrets"]


async def test_minique_worker_command_runs_the_registry(app: App) -> None:
    """``minique worker processors.jobs:registry`` in its own process: the hook applies the
    schedules, and a manual sync added here is processed there."""
    # No MINIQUE_PREFIX: --prefix alone must reach the startup hook (else the schedules
    # would land in the default prefix's queues).
    env = {**{k: v for k, v in os.environ.items() if k != "MINIQUE_PREFIX"},
           "MINIQUE_REDIS_URL": app.redis_url,
           "MINIQUE_AMAZON_DATABASE_URL": app.settings.database_url,
           "AMAZON_SPAPI_ENDPOINT": app.fake_url, "AMAZON_ADS_ENDPOINT": app.fake_url,
           "AMAZON_LWA_TOKEN_URL": app.fake_url + "/auth/o2/token",
           "AMAZON_ADS_TOKEN_URL": app.fake_url + "/auth/o2/token"}
    minique = Path(sys.executable).with_name("minique")
    proc = await asyncio.create_subprocess_exec(
        str(minique), "--log-level", "WARNING", "worker", "processors.jobs:registry", "--prefix", app.prefix,
        "--limiter-max", "10", "--shutdown-timeout", "5",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        job = await get_queue(QueueName.MANUAL_SYNC).add(
            "manual-sync", {"amazon_account_id": "acct-0", "user_id": "cli", "sync_type": "listings"})
        result = await job.wait_until_finished(timeout=30)
        assert result["written"] == {"listings": len(app.fake.data[0].listings)}
        assert "data-sync:acct-0" in await _schedulers()
    finally:
        proc.terminate()
        output = (await asyncio.wait_for(proc.communicate(), 20))[0].decode(errors="replace")
    assert proc.returncode == 0, output
