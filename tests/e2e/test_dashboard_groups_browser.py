"""The groups view in headless Chromium, with screenshots: the busiest groups, a throttled
group, pausing and resuming a group, one group's jobs, and the pages at 420 px."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from test_dashboard_browser import Harness, expect, harness, shot
from test_dashboard_views_browser import wait

from minique import GroupRateLimited
from minique.dashboard.ids import encode_id

__all__ = ["harness"]  # the fixture, imported so that pytest finds it here


def test_groups_view_finds_busy_paused_and_throttled_groups(page: Any, dashboard_url: str,
                                                            harness: Harness) -> None:
    q = harness.queue
    gate: dict[str, asyncio.Event] = {}

    async def setup() -> None:
        gate["e"] = asyncio.Event()
        await q.set_group_options("acct/1", concurrency=1)
        await q.add_bulk([("data-sync", {"acct": "acct/1", "n": i}, {"group": "acct/1"})
                          for i in range(8)])
        await q.add_bulk([("data-sync", {"acct": "acct-2", "n": i}, {"group": "acct-2"})
                          for i in range(3)])
        await q.add("data-sync", {"acct": "acct-3"}, group="acct-3")

    async def sync(job: Any) -> None:
        if job.data["acct"] == "acct-3":
            raise GroupRateLimited(600)  # an upstream 429 for this account
        await gate["e"].wait()

    harness.run(setup())
    harness.start_worker(sync, concurrency=3)

    async def settled() -> bool:
        info = await q.get_group("acct-3")
        return (info is not None and info.rate_limited_until is not None
                and (await q.get_stats())["active"] == 3)  # acct/1: 1, acct-2: 2

    try:
        wait(harness, settled)
        page.goto(f"{dashboard_url}/queues/{q.name}")
        page.locator("#groups-link").click()
        rows = page.locator("#groups tbody tr")
        expect()(rows.first).to_have_attribute("data-group", "acct/1")  # the most waiting
        expect()(rows.first).to_contain_text("concurrency 1")
        shot(page, "20-groups-busiest")
        page.locator('#group-orders a[data-by="throttled"]').click()
        expect()(rows).to_have_count(1)
        expect()(rows.first).to_have_attribute("data-group", "acct-3")
        expect()(rows.first).to_contain_text("throttled")
        shot(page, "21-groups-throttled")
        page.locator('#group-orders a[data-by="active"]').click()
        expect()(rows).to_have_count(2)
        # Pause acct-2 from the list: the paused tab counts it, live.
        page.locator('tr[data-group="acct-2"] button[name=pause-group]').click()
        expect()(page.locator("#toasts")).to_contain_text("Group acct-2 paused")
        expect()(page.locator('#group-orders [data-count="paused"]')).to_have_text("1")
        assert harness.run(q.get_group("acct-2")).paused
        # One group's page: its waiting jobs in the order it starts them, its running one.
        page.goto(f"{dashboard_url}/queues/{q.name}/groups?by=waiting")
        page.locator('tr[data-group="acct/1"] a').first.click()
        expect()(page.locator("#group-facts [data-count=waiting]")).to_have_text("7")
        expect()(page.locator("#group-jobs tbody tr")).to_have_count(7)
        expect()(page.locator("#group-running tbody tr")).to_have_count(1)
        first_waiting = harness.run(q.get_group_job_ids("acct/1", 0, 0))[0]
        expect()(page.locator("#group-jobs tbody tr").first).to_have_attribute(
            "data-job", first_waiting)
        shot(page, "22-group-page")
        page.locator("button[name=pause-group]").click()
        expect()(page.locator("#group-status")).to_contain_text("paused")
        page.locator("button[name=resume-group]").click()
        expect()(page.locator("#group-status")).to_contain_text("running")
        assert not harness.run(q.get_group("acct/1")).paused
    finally:
        harness.lt.loop.call_soon_threadsafe(gate["e"].set)


@pytest.fixture
def narrow(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 420, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


def test_groups_pages_fit_420_px(narrow: Any, dashboard_url: str, harness: Harness) -> None:
    q = harness.queue
    group = "a-rather-long-account-id/with-a-region/and-more"
    harness.run(q.add_bulk([("fetch-orders-for-a-very-long-job-name", i, {"group": group})
                            for i in range(3)]))
    harness.run(q.set_group_options(group, concurrency=2, limiter={"max": 10, "duration": 1}))
    for path in (f"/queues/{q.name}/groups", f"/queues/{q.name}/groups/{encode_id(group)}"):
        narrow.goto(dashboard_url + path)
        expect()(narrow.locator("main")).to_contain_text(group)
        width = narrow.evaluate("document.documentElement.scrollWidth")
        shot(narrow, f"23-narrow-420-{path.rsplit('/', 1)[-1][:20]}")
        assert width <= 420, f"{path} is {width} px wide at a 420 px viewport"
