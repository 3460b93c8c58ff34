"""The dashboard's newer pages in headless Chromium, each with screenshots: schedulers,
the worker page, a job's attempts and trace, the live dot, and every page at 420 px."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from test_dashboard_browser import Harness, _poll, expect, harness, shot

from minique import Queue, Worker
from minique.dashboard.ids import encode_id

__all__ = ["harness"]  # the fixture, imported so that pytest finds it here


def wait(harness: Harness, check: Any, timeout: float = 15) -> None:
    asyncio.run_coroutine_threadsafe(_poll(check, timeout), harness.lt.loop).result(timeout + 5)


def test_schedulers_page_runs_now_and_removes(page: Any, dashboard_url: str, harness: Harness) -> None:
    q = harness.queue
    harness.run(q.upsert_job_scheduler("nightly-report", cron="0 2 * * *", tz="Europe/Helsinki",
                                       job_name="daily-report", data={"account": "acme"}))
    harness.run(q.upsert_job_scheduler("heartbeat", every=300.0, job_name="ping"))
    page.goto(f"{dashboard_url}/schedulers?queue={q.name}")
    rows = page.locator("#schedulers tbody tr")
    expect()(rows).to_have_count(2)
    nightly = page.locator('tr[data-scheduler="nightly-report"]')
    expect()(nightly).to_contain_text("0 2 * * *")
    expect()(nightly).to_contain_text("Europe/Helsinki")
    expect()(nightly).to_contain_text("delayed")  # its pending firing
    shot(page, "10-schedulers")
    waiting = harness.run(q.get_stats())["waiting"]
    nightly.locator("button[name=run-now]").click()
    expect()(page.locator("#toasts")).to_contain_text("Job added")

    async def one_more() -> bool:
        return (await q.get_stats())["waiting"] == waiting + 1

    wait(harness, one_more)
    page.locator('tr[data-scheduler="heartbeat"] button[name=remove-scheduler]').click()
    expect()(rows).to_have_count(1, timeout=10000)
    assert [s.id for s in harness.run(q.get_job_schedulers())] == ["nightly-report"]
    shot(page, "11-schedulers-after-remove")


def test_worker_page_shows_one_process_serving_three_queues(page: Any, dashboard_url: str,
                                                            harness: Harness) -> None:
    base = harness.queue.name[:30]
    names = [f"{base}-{k}" for k in ("a", "b", "c")]
    gate: dict[str, asyncio.Event] = {}

    async def setup() -> tuple[list[Queue], list[Worker]]:
        gate["e"] = asyncio.Event()
        return ([Queue(n, url=harness.url) for n in names],
                [Worker(n, hold, url=harness.url, heartbeat_interval=0.3) for n in names])

    async def hold(job: Any) -> None:
        await job.update_progress(40)
        await gate["e"].wait()

    queues, workers = harness.run(setup())
    futures = [harness.lt.spawn(w.run()) for w in workers]
    try:
        harness.run(queues[2].add("long-export", {"rows": 10}))
        page.goto(f"{dashboard_url}/")
        row = page.locator("#workers tbody tr", has_text=names[0])
        expect()(row).to_have_count(1, timeout=10000)
        expect()(row).to_contain_text("3 queues")
        expect()(row).to_contain_text("1/15", timeout=10000)  # one job running, 3 x 5 slots
        shot(page, "12-overview-one-worker-three-queues")
        row.locator("td a").first.click()
        expect()(page.locator("#worker-facts")).to_contain_text(names[2])
        expect()(page.locator("#running tbody tr")).to_have_count(1)
        expect()(page.locator("#running")).to_contain_text("long-export")
        shot(page, "13-worker-page")
    finally:
        harness.lt.loop.call_soon_threadsafe(gate["e"].set)
        for w, fut in zip(workers, futures, strict=True):
            harness.run(w.close(timeout=2))
            fut.result(timeout=10)
        for q in queues:
            harness.run(q.obliterate(force=True))
            harness.run(q.close())


def test_job_page_shows_attempts_and_copies_the_trace(page: Any, dashboard_url: str,
                                                      harness: Harness) -> None:
    q = harness.queue

    async def import_rows(job: Any) -> None:
        try:
            raise KeyError("column 'sku' missing")
        except KeyError as exc:
            raise RuntimeError(f"import failed on attempt {job.attempts_made + 1}") from exc

    job = harness.run(q.add("import-csv", {"file": "orders.csv"}, attempts=3, backoff=0.01))
    harness.start_worker(import_rows)

    async def failed() -> bool:
        return await q.get_state(job.id) == "failed"

    wait(harness, failed)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{dashboard_url}/queues/{q.name}/jobs/{encode_id(job.id)}")
    rows = page.locator("#attempts tbody tr")
    expect()(rows).to_have_count(3)
    expect()(rows.first).to_contain_text("failed")  # the newest attempt first
    expect()(rows.last).to_contain_text("retried")
    expect()(rows.first).to_contain_text("attempt 3")
    first_part = page.locator("#trace .trace-part").first
    expect()(first_part.locator("summary")).to_contain_text("RuntimeError: import failed")
    expect()(page.locator("#trace .trace-part").nth(1).locator("summary")).to_contain_text("KeyError")
    page.locator("#copy-trace").click()
    expect()(page.locator("#toasts")).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "RuntimeError: import failed on attempt 3" in copied and "Traceback" in copied
    shot(page, "14-job-attempts-and-trace")


def test_the_live_dot_turns_red_when_redis_or_the_server_is_gone(browser: Any, loop_thread: Any) -> None:
    import uvicorn

    from minique.dashboard import create_app
    from minique.server import RedisServer, free_port

    redis_server = RedisServer().start()
    port = free_port()
    app = create_app(redis_server.url, poll_interval=0.5)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical",
                                           timeout_graceful_shutdown=1))
    done = loop_thread.spawn(server.serve())
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    pg = context.new_page()
    try:
        async def started() -> None:
            while not server.started:
                await asyncio.sleep(0.02)

        loop_thread.run(started(), timeout=15)
        pg.goto(f"http://127.0.0.1:{port}/")
        status = pg.locator("#live-status .live-text")
        expect()(status).to_have_text("live")
        pg.wait_for_function("window.miniqueLive === true", timeout=10000)  # the stream is on
        redis_server.stop(kill=True)
        expect()(status).to_have_text("offline", timeout=10000)
        expect()(pg.locator("body")).to_have_class("offline")
        shot(pg, "15-live-dot-redis-down")
        redis_server.start()
        expect()(status).to_have_text("live", timeout=15000)
        server.should_exit = True
        done.result(timeout=20)
        expect()(status).to_have_text("offline", timeout=10000)
        shot(pg, "16-live-dot-server-gone")
    finally:
        context.close()
        server.should_exit = True
        redis_server.close()


@pytest.fixture
def narrow(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 420, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    pg.on("dialog", lambda dialog: dialog.accept())
    yield pg
    context.close()


def test_every_page_fits_420_px(narrow: Any, dashboard_url: str, harness: Harness) -> None:
    q = harness.queue

    async def fail(job: Any) -> None:
        raise ConnectionError(f"https://api.example.org/v2/orders/{job.id} answered 503 " + "x" * 200)

    harness.run(q.add("fetch-orders-for-a-very-long-job-name", {"page": 1}, attempts=1,
                      job_id="acme/2024-01/orders"))
    harness.start_worker(fail, concurrency=2)
    harness.run(q.upsert_job_scheduler("every-five-minutes-with-a-long-id", every=300.0,
                                       job_name="fetch-orders"))

    async def failed_and_listed() -> bool:
        return (await q.get_stats())["failed"] >= 1 and bool(await q.get_workers())

    wait(harness, failed_and_listed)
    worker_id = harness.run(q.get_workers())[0]
    pages = {
        "overview": "/",
        "queue": f"/queues/{q.name}?state=failed",
        "job": f"/queues/{q.name}/jobs/{encode_id('acme/2024-01/orders')}",
        "dead-letter": f"/queues/{q.name}/dead-letter",
        "schedulers": "/schedulers",
        "worker": f"/workers/{encode_id(f'{worker_id.host}:{worker_id.pid}')}",
    }
    for name, path in pages.items():
        narrow.goto(dashboard_url + path)
        narrow.locator("main").wait_for()
        width = narrow.evaluate("document.documentElement.scrollWidth")
        shot(narrow, f"17-narrow-420-{name}")
        assert width <= 420, f"{name} page is {width} px wide at a 420 px viewport"
    # The id with slashes is reached from the list by clicking its link.
    narrow.goto(dashboard_url + pages["queue"])
    narrow.locator('tr[data-job="acme/2024-01/orders"] a').first.click()
    expect()(narrow.locator("#job-state")).to_have_attribute("data-state", "failed")
