"""The daily report is the parent of that account's sync: the 02:00 firing starts a flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from app_support import App, running_app
from helpers import wait_until

from processors import schedules
from processors.queues import QueueName


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        yield running


async def test_the_report_firing_runs_the_report_after_a_fresh_sync(app: App) -> None:
    await schedules.apply_schedules(["acct-0"])
    reports, syncs = app.queue(QueueName.REPORTS), app.queue(QueueName.DATA_SYNC)
    [firing] = await reports.get_jobs("delayed")
    await firing.promote()  # 02:00 now
    assert (await firing.wait_until_finished(timeout=30))["report_job"] == "daily:" + \
        firing.id.split(":", 1)[1]
    report = await reports.get_job("daily:" + firing.id.split(":", 1)[1])
    assert report is not None
    result = await report.wait_until_finished(timeout=60)
    assert result["amazon_account_id"] == "acct-0" and result["reports"]
    done = await reports.get_job(report.id)
    children = await report.get_children_values()
    assert len(children) == 1
    [sync_key] = children
    sync = await syncs.get_job(sync_key.rsplit(":j:", 1)[1])
    assert sync is not None and sync.finished_on is not None
    assert done is not None and done.processed_on is not None
    assert sync.finished_on <= done.processed_on  # the report ran after its sync

    async def no_second_report() -> bool:
        return (await reports.get_stats())["completed"] == 2  # the firing and its report

    await wait_until(no_second_report, timeout=10, message="one report and one firing")
