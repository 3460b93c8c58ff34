"""The dashboard in headless Chromium: live counts, retry from the job page, pause, dead letters.

Every wait is a Playwright expectation with a deadline; the pages update themselves (htmx
polling), so nothing here reloads a page after an action.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minique import Queue, Worker

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


EXPECT_TIMEOUT_MS = 20_000


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    # Assertions retry until this deadline (playwright's default is 5 s, and the page's
    # own default timeout does not apply to them): a loaded 2-core machine needed more.
    _expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    return _expect


class Harness:
    """A queue plus workers on the test loop, driven from the (sync) test."""

    def __init__(self, loop_thread: Any, redis_url: str, name: str) -> None:
        self.lt = loop_thread
        self.url = redis_url
        self.queue: Queue = self.lt.run(self._make(name))
        self.workers: list[tuple[Worker, Any]] = []

    async def _make(self, name: str) -> Queue:
        return Queue(name, url=self.url)

    def run(self, coro: Any) -> Any:
        return self.lt.run(coro)

    def start_worker(self, fn: Any, **kw: Any) -> Worker:
        async def make() -> Worker:
            return Worker(self.queue.name, fn, url=self.url, heartbeat_interval=0.5, **kw)

        worker = self.lt.run(make())
        self.workers.append((worker, self.lt.spawn(worker.run())))
        return worker

    def close(self) -> None:
        for worker, fut in self.workers:
            self.lt.run(worker.close(timeout=2))
            fut.result(timeout=10)
        self.lt.run(self.queue.obliterate(force=True))
        self.lt.run(self.queue.close())


@pytest.fixture
def harness(loop_thread: Any, redis_url: str, qname: str) -> Iterator[Harness]:
    h = Harness(loop_thread, redis_url, qname.replace("_", "-")[:40])
    yield h
    h.close()


def test_overview_counts_change_while_a_worker_runs(page: Any, dashboard_url: str,
                                                    harness: Harness) -> None:
    q = harness.queue
    harness.run(q.add_bulk([("resize-image", {"image": f"img-{i}.png", "width": 640}) for i in range(12)]))
    page.goto(dashboard_url + "/")
    row = page.locator(f'tr[data-queue="{q.name}"]')
    expect()(row.locator('a[data-state="waiting"]')).to_have_text("12")
    expect()(row.locator('a[data-state="completed"]')).to_have_text("0")
    page.evaluate("window.__noReload = true")
    shot(page, "01-overview-before-worker")

    async def resize(job: Any) -> dict[str, Any]:
        await job.update_progress(50)
        await asyncio.sleep(0.4)
        return {"resized": job.data["image"]}

    harness.start_worker(resize, concurrency=1)
    # The counts move by themselves (about 5 s of work, a refresh every second): some jobs
    # are done while others still wait.
    page.wait_for_function(
        """sel => { const n = s => +document.querySelector(sel + ` a[data-state="${s}"]`).textContent;
                   return n("completed") > 0 && n("waiting") > 0; }""",
        arg=f'tr[data-queue="{q.name}"]', timeout=15000)
    shot(page, "02-overview-while-worker-runs")
    expect()(row.locator('a[data-state="completed"]')).to_have_text("12")
    expect()(row.locator('a[data-state="waiting"]')).to_have_text("0")
    expect()(page.locator("#workers")).to_contain_text(q.name)
    assert page.evaluate("window.__noReload") is True  # live updates, no page reload
    shot(page, "03-overview-after-worker")


def test_retry_a_failed_job_from_its_page(page: Any, dashboard_url: str, harness: Harness) -> None:
    q = harness.queue
    broken = {"on": True}

    async def charge(job: Any) -> dict[str, Any]:
        await job.log(f"charging {job.data['amount']} for {job.data['customer']}")
        if broken["on"]:
            raise ConnectionError("payment gateway unreachable")
        await job.log("charged")
        return {"receipt": "r-1001", "amount": job.data["amount"]}

    job = harness.run(q.add("charge-card", {"customer": "c-42", "amount": 1999,
                                            "note": "n" * 3000}, attempts=1))
    harness.start_worker(charge)

    async def failed() -> bool:
        return await q.get_state(job.id) == "failed"

    deadline = asyncio.run_coroutine_threadsafe(_poll(failed, 10), harness.lt.loop)
    deadline.result(timeout=15)
    page.goto(f"{dashboard_url}/queues/{q.name}/jobs/{job.id}")
    expect()(page.locator("#job-state")).to_have_attribute("data-state", "failed")
    expect()(page.locator("#failed-reason")).to_contain_text("payment gateway unreachable")
    expect()(page.locator("pre.trace")).to_contain_text("Traceback")
    expect()(page.locator("#job-data")).to_contain_text("more characters")  # large field cut
    shot(page, "04-job-failed")

    broken["on"] = False
    page.locator("#job-actions button[name=retry]").click()
    expect()(page.locator("#job-state")).to_have_attribute("data-state", "completed")
    expect()(page.locator("#return-value")).to_contain_text("r-1001")
    expect()(page.locator("#logs")).to_contain_text("charged")
    shot(page, "05-job-retried-and-completed")


def test_pause_a_queue(page: Any, dashboard_url: str, harness: Harness) -> None:
    q = harness.queue
    harness.run(q.add_bulk([("send-email", {"to": f"user{i}@example.org"}) for i in range(3)]))
    harness.run(q.add("send-email", {"to": "later@example.org"}, delay=600))
    page.goto(f"{dashboard_url}/queues/{q.name}")
    expect()(page.locator(".status-line .badge")).to_have_text("running")
    page.locator(".status-line button[name=pause]").click()
    expect()(page.locator("#toasts")).to_contain_text(f"Queue {q.name} paused")
    expect()(page.locator(".status-line .badge")).to_have_text("paused")
    assert harness.run(q.is_paused()) is True
    shot(page, "06-queue-paused")
    page.goto(f"{dashboard_url}/")
    expect()(page.locator(f'tr[data-queue="{q.name}"] .badge')).to_have_text("paused")
    shot(page, "07-overview-with-paused-queue")
    page.locator(f'tr[data-queue="{q.name}"] button[name=resume]').click()
    expect()(page.locator(f'tr[data-queue="{q.name}"] .badge')).to_have_text("running")
    assert harness.run(q.is_paused()) is False


# Delays the load of the page refreshes started while window.__holdGets is set, after the
# server has answered: a refresh that is slow to arrive, with what the page looked like then.
HOLD_REFRESHES = """
(() => {
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    if (window.__holdGets && this.onload) {
      const onload = this.onload;
      this.onload = function (...args) { setTimeout(() => onload.apply(this, args), 3000); };
    }
    return send.call(this, body);
  };
})();
"""


def test_an_action_shows_its_result_while_a_refresh_is_on_the_way(
        page: Any, dashboard_url: str, harness: Harness) -> None:
    """A refresh of the page (live change, polling) was on the way when Pause was clicked:
    the refresh the action asks for was dropped (htmx drops a request while one is in
    flight for the element), and so was the live change the pause caused, so the slow
    refresh's "running" stayed on the page for good (a flaky test under load)."""
    q = harness.queue
    harness.run(q.add("send-email", {"to": "a@example.org"}))
    page.add_init_script(HOLD_REFRESHES)
    page.goto(f"{dashboard_url}/queues/{q.name}")
    page.wait_for_function("window.miniqueLive === true")
    live = page.locator("#live")
    expect()(live).not_to_have_class(re.compile(r"\bhtmx-request\b"))
    page.evaluate("window.__holdGets = true; htmx.trigger(document.body, 'refresh');"
                  " window.__holdGets = false;")
    expect()(live).to_have_class(re.compile(r"\bhtmx-request\b"))
    page.locator(".status-line button[name=pause]").click()
    expect()(page.locator(".status-line .badge")).to_have_text("paused")
    assert harness.run(q.is_paused()) is True


def test_an_action_toasts_its_result_when_a_refresh_replaced_its_button(
        page: Any, dashboard_url: str, harness: Harness) -> None:
    """The live refresh swapped the status line (and the Pause button in it) while the pause
    request was out: htmx fires the answer's events on the detached button, where they no
    longer reach the document, so the toast was lost (seen in 2 of 5 CI runs). The pause
    answer is held at the network until the swap has happened."""
    q = harness.queue
    harness.run(q.add("send-email", {"to": "a@example.org"}))
    held: list[Any] = []
    page.route("**/pause", lambda route: held.append(route))
    page.goto(f"{dashboard_url}/queues/{q.name}")
    page.wait_for_function("window.miniqueLive === true")
    button = page.locator(".status-line button[name=pause]")
    button.evaluate("b => { window.__oldPause = b; }")
    button.click()
    page.wait_for_function("document.querySelector('#live.htmx-request') === null")
    deadline = time.monotonic() + EXPECT_TIMEOUT_MS / 1000
    while not held:
        assert time.monotonic() < deadline, "the pause request never left the page"
        page.wait_for_timeout(20)  # lets Playwright dispatch the route handler
    page.evaluate("htmx.trigger(document.body, 'refresh')")
    page.wait_for_function("!document.body.contains(window.__oldPause)")
    held[0].continue_()
    expect()(page.locator("#toasts")).to_contain_text("paused")
    expect()(page.locator(".status-line .badge")).to_have_text("paused")


def test_a_refresh_on_its_way_when_a_job_is_checked_keeps_the_selection(
        page: Any, dashboard_url: str, harness: Harness) -> None:
    """A live refresh of the dead letters left before a job was checked, and its answer
    came after: it swapped the checked box away, and "Delete selected" then deleted nothing
    (CI: test_dead_letters_requeue_a_group). The refresh's answer is held at the network
    until the box is checked."""
    q = harness.queue

    async def broken(job: Any) -> None:
        raise PermissionError("token expired for tenant acme")

    harness.run(q.add_bulk([("sync-contact", i, {"attempts": 1}) for i in range(3)]))
    harness.start_worker(broken, concurrency=3)

    async def all_failed() -> bool:
        return (await q.get_stats())["failed"] == 3

    asyncio.run_coroutine_threadsafe(_poll(all_failed, 15), harness.lt.loop).result(timeout=20)
    page.goto(f"{dashboard_url}/queues/{q.name}/dead-letter")
    page.wait_for_function("window.miniqueLive === true")
    boxes = page.locator("#live input[name=ids]")
    expect()(boxes).to_have_count(3)
    held: list[Any] = []

    def hold_one(route: Any) -> None:
        if route.request.method == "GET" and route.request.headers.get("hx-request") and not held:
            held.append(route)
        else:
            route.continue_()

    page.route(re.compile(r".*/dead-letter(\?.*)?$"), hold_one)
    page.evaluate("htmx.trigger(document.body, 'live-change')")  # as a change on the queue
    deadline = time.monotonic() + EXPECT_TIMEOUT_MS / 1000
    while not held:
        assert time.monotonic() < deadline, "the refresh never left the page"
        page.wait_for_timeout(20)  # lets Playwright dispatch the route handler
    boxes.first.check()
    page.evaluate("() => { window.__swapped = new Promise(done => document.addEventListener("
                  "'htmx:beforeSwap', e => done(e.detail.shouldSwap), {once: true})); }")
    held[0].continue_()
    assert page.evaluate("window.__swapped") is False
    expect()(boxes.first).to_be_checked()
    page.locator("button[name=delete-selected]").click()
    expect()(boxes).to_have_count(2)
    assert harness.run(q.get_stats())["failed"] == 2


def test_dead_letters_requeue_a_group(page: Any, dashboard_url: str, harness: Harness) -> None:
    q = harness.queue
    healthy = {"on": False}

    async def sync_crm(job: Any) -> str:
        if healthy["on"]:
            return "synced"
        if job.data % 3 == 0:
            raise TimeoutError("CRM did not answer within 30s")
        raise PermissionError("token expired for tenant acme")

    harness.run(q.add_bulk([("sync-contact", i, {"attempts": 2, "backoff": 0.01}) for i in range(7)]))
    harness.start_worker(sync_crm, concurrency=4)

    async def all_failed() -> bool:
        return (await q.get_stats())["failed"] == 7

    asyncio.run_coroutine_threadsafe(_poll(all_failed, 15), harness.lt.loop).result(timeout=20)
    page.goto(f"{dashboard_url}/queues/{q.name}/dead-letter")
    groups = page.locator("section.group")
    expect()(groups).to_have_count(2)
    expect()(groups.first).to_contain_text("token expired")
    shot(page, "08-dead-letters")
    healthy["on"] = True
    groups.first.locator("button[name=requeue-group]").click()
    expect()(groups).to_have_count(1)
    expect()(groups.first).to_contain_text("CRM did not answer")

    async def four_done() -> bool:
        return (await q.get_stats())["completed"] == 4

    asyncio.run_coroutine_threadsafe(_poll(four_done, 10), harness.lt.loop).result(timeout=15)
    # Select one job of the remaining group and delete it.
    groups.first.locator("input[name=ids]").first.check()
    page.locator("button[name=delete-selected]").click()
    expect()(groups.first.locator("tbody tr")).to_have_count(2)
    page.goto(f"{dashboard_url}/queues/{q.name}?state=completed")
    expect()(page.locator('#states a[data-state="completed"] .n')).to_have_text("4")
    shot(page, "09-queue-completed-jobs")


async def _poll(check: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.02)
