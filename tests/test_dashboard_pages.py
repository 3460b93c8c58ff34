"""The server-rendered pages (without a browser): content, live regions, errors, the chart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from helpers import wait_until

from minique import Queue, Worker
from minique.dashboard import create_app
from minique.dashboard.pages import ago, chart, duration


@pytest.fixture
async def web(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(redis_url, poll_interval=1.5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c
    await app.state.dashboard.redis.aclose()


async def test_pages_render_the_queue(web: httpx.AsyncClient, queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> str:
        if job.data.get("fail"):
            raise RuntimeError("<script>alert(1)</script>")
        return "fine"

    await queue.add("good", {"x": 1})
    bad = await queue.add("bad", {"fail": True})
    waiting = await queue.add("waits", {"x": 2}, delay=600)
    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())

    async def done() -> bool:
        s = await queue.get_stats()
        return s["completed"] == 1 and s["failed"] == 1

    await wait_until(done, message="jobs finished")
    await worker.close()
    await task

    home = await web.get("/")
    assert home.status_code == 200 and queue.name in home.text
    assert 'hx-trigger="every 1.5s' in home.text and "<svg" in home.text
    assert 'src="/static/htmx.min.js"' in home.text
    page = await web.get(f"/queues/{queue.name}?state=failed")
    assert page.status_code == 200 and f'data-job="{bad.id}"' in page.text
    assert "<script>alert(1)</script>" not in page.text  # escaped
    assert "&lt;script&gt;" in page.text
    delayed = await web.get(f"/queues/{queue.name}?state=delayed")
    assert 'name="promote"' in delayed.text and f'data-job="{waiting.id}"' in delayed.text
    search = await web.get(f"/queues/{queue.name}?state=failed&q=nomatch")
    assert "No failed job matches" in search.text
    job = await web.get(f"/queues/{queue.name}/jobs/{bad.id}")
    assert job.status_code == 200 and 'data-state="failed"' in job.text and "Traceback" in job.text
    assert 'name="retry"' in job.text and 'hx-confirm="Retry job' in job.text
    dead = await web.get(f"/queues/{queue.name}/dead-letter")
    assert dead.status_code == 200 and "RuntimeError" in dead.text and 'name="ids"' in dead.text
    static = await web.get("/static/htmx.min.js")
    assert static.status_code == 200 and "htmx" in static.text[:200]
    # The page names its icon, so browsers do not ask for a /favicon.ico that is not there.
    assert 'rel="icon" type="image/svg+xml" href="/static/favicon.svg"' in home.text
    icon = await web.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.text.startswith("<svg")


async def test_page_errors_are_pages_not_500s(web: httpx.AsyncClient, queue: Queue) -> None:
    await queue.add("x", None)
    r = await web.get(f"/queues/{queue.name}/jobs/missing")
    assert r.status_code == 404 and "Not found" in r.text
    assert (await web.get("/queues/no-such-queue")).status_code == 404
    assert (await web.get(f"/queues/{queue.name}?state=bogus")).status_code == 400
    assert (await web.get(f"/queues/{queue.name}?page=abc")).status_code == 400
    assert (await web.get(f"/queues/{queue.name}/dead-letter?all=maybe")).status_code == 400


def test_chart_and_formatting() -> None:
    svg = str(chart({"minutes": [60 * i for i in range(60)], "completed": [i % 7 for i in range(60)],
                     "failed": [1 if i == 30 else 0 for i in range(60)]}, 600, 180))
    assert svg.startswith("<svg") and svg.count('class="ok"') == sum(1 for i in range(60) if i % 7)
    assert svg.count('class="bad"') == 1 and "1 failed" in svg
    empty = str(chart({"minutes": [0], "completed": [0], "failed": [0]}))
    assert "<svg" in empty
    assert ago(None) == "—" and duration(0.0123) == "12 ms" and duration(3.5) == "3.50 s"


def test_poll_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        create_app("redis://127.0.0.1:1/0", poll_interval=0)


async def test_a_manual_worker_is_shown_without_slots(web: httpx.AsyncClient, queue: Queue,
                                                     redis_url: str) -> None:
    from minique import ManualWorker

    worker = ManualWorker(queue.name, url=redis_url, name="by-hand", heartbeat_interval=0.05)
    try:
        await queue.add("a", 1)
        job = await worker.get_next_job()
        assert job is not None

        async def shown() -> bool:
            return bool(await queue.get_workers()) and (await queue.get_workers())[0].running == [job.id]

        await wait_until(shown, timeout=5)
        page = (await web.get("/")).text
        assert "by-hand" in page and ">manual</span>" in page and "1:" in page
        assert "1/0" not in page
        detail = (await web.get("/workers/by-hand")).text
        assert "taken by hand" in detail and "slots" not in detail
    finally:
        await worker.close()
