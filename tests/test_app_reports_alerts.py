"""reports, alerts and webhooks through real Workers; numbers checked against the fake's seed."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from amazon.expected import day_totals, expected_alerts, net, zone_of
from app_support import App, running_app
from helpers import wait_until

from minique import Job, JobFailed
from processors import webhooks
from processors.queues import QueueName, get_queue_stats
from processors.storage import schema
from processors.sync_logic import SIGNATURE_HEADER, make_event, sign
from processors.webhook_receiver import WebhookReceiver

SECRET = "whsec-test"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture
async def app(redis_url: str, tmp_path: Path, receiver: WebhookReceiver) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path, webhook_urls=[receiver.url],
                           webhook_secret=SECRET, webhook_on_jobs=True) as running:
        yield running


async def webhooks_drained(app: App) -> bool:
    stats = await get_queue_stats(QueueName.WEBHOOKS)
    return stats["waiting"] + stats["active"] + stats["delayed"] == 0


def _read(*paths: str) -> list[str]:
    return [Path(p).read_text() for p in paths]


async def test_report_totals_equal_the_seed_sums(app: App) -> None:
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0"})
    today = app.fake.clock.now().astimezone(zone_of("ATVPDKIKX0DER")).date()
    earlier = today - timedelta(days=20)
    for day, payload in ((today - timedelta(days=1), {}), (earlier, {"day": earlier.isoformat()})):
        job, result = await app.run(QueueName.REPORTS, {"amazon_account_id": "acct-0", **payload})
        [report] = result["reports"]
        want = day_totals(app.fake.data[0], day)
        assert (report["day"], report["currency"], report["complete"]) == (day.isoformat(), "USD", True)
        assert (report["orders"], report["units"]) == (want["orders"], want["units"])
        for key in ("revenue", "fees", "service_fees", "refunds", "ad_spend", "ad_sales"):
            assert Decimal(report[key]) == want[key], key
        assert Decimal(report["net_proceeds"]) == net(want)
        assert report["acos"] == pytest.approx(float(want["ad_spend"] / want["ad_sales"]))  # type: ignore[operator]
        csv_text, html = await asyncio.to_thread(_read, report["csv_path"], report["html_path"])
        assert csv_text.splitlines()[-1].startswith(day.isoformat())
        assert "<svg" in html
        assert job.progress == 100
        assert result["raised"] == []  # complete data: no "data incomplete" alert
    assert app.storage.count(schema.reports, "acct-0") == 2


async def test_alerts_are_raised_once_and_sent_as_verified_webhooks(
        app: App, receiver: WebhookReceiver) -> None:
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0"})
    _, first = await app.run(QueueName.ALERTS, {"amazon_account_id": "acct-0"})
    now = app.fake.clock.now()
    want = expected_alerts(app.fake.data[0], now)
    assert {(a["kind"], a["subject"]) for a in first["raised"]} == want
    assert len(first["webhook_jobs"]) == len(want)
    await wait_until(lambda: len(receiver.events("alert.raised")) == len(want), timeout=15,
                     message="every alert webhook delivered")
    sent = receiver.events("alert.raised")
    assert all(r.verified for r in sent)
    assert {(r.body["data"]["kind"], r.body["data"]["subject"]) for r in sent} == want
    # The same conditions on the same day: nothing new is raised or sent.
    _, second = await app.run(QueueName.ALERTS, {"amazon_account_id": "acct-0"})
    assert second["raised"] == [] and second["webhook_jobs"] == []
    assert app.storage.count(schema.alerts, "acct-0") == len(want)
    await wait_until(lambda: webhooks_drained(app), timeout=15, message="webhooks queue drained")
    assert len(receiver.events("alert.raised")) == len(want)


async def test_job_outcomes_are_sent_when_configured(app: App, receiver: WebhookReceiver) -> None:
    job, _ = await app.run(QueueName.MANUAL_SYNC, {"amazon_account_id": "acct-0", "user_id": "u1",
                                                   "sync_type": "listings"})
    app.fake.revoke(1)
    failed = await app.queue(QueueName.DATA_SYNC).add("data-sync", {"amazon_account_id": "acct-1"})
    with pytest.raises(JobFailed):
        await failed.wait_until_finished(timeout=15)
    await wait_until(lambda: len(receiver.events()) >= 2, timeout=15, message="outcome webhooks")
    by_type = {r.event_type: r for r in receiver.events()}
    done = by_type["job.completed"].body["data"]
    assert (done["queue"], done["job_id"], done["result"]["user_id"]) == ("manual-sync", job.id, "u1")
    bad = by_type["job.failed"].body["data"]
    assert bad["job_id"] == failed.id and "account disconnected" in bad["reason"]
    assert all(r.verified for r in receiver.events())


async def test_signature_checks_at_the_receiver(app: App, receiver: WebhookReceiver) -> None:
    """A receiver that holds another secret refuses the POST (401): no retry, the job fails."""
    with WebhookReceiver("another-secret") as stranger:
        queue = app.queue(QueueName.WEBHOOKS)
        body = json.dumps({"id": "e1", "type": "test", "data": {}})
        job = await queue.add("webhooks", {"url": stranger.url, "event_type": "test", "event_id": "e1",
                                           "body": body})
        with pytest.raises(JobFailed, match="rejected with 401"):
            await job.wait_until_finished(timeout=15)
        assert (await job.refresh()).attempts_made == 1
        assert len(stranger.events()) == 1 and not stranger.events()[0].verified
        good = await queue.add("webhooks", {"url": receiver.url, "event_type": "test", "event_id": "e2",
                                            "body": body})
        assert (await good.wait_until_finished(timeout=15))["status"] == 204
    assert receiver.events("test")[0].verified


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]"])
def test_the_receiver_answers_400_to_a_signed_body_that_is_no_json_object(
        receiver: WebhookReceiver, body: bytes) -> None:
    """A signed body that is no JSON object is a client error, recorded, never a 500."""
    answer = httpx.post(receiver.url, content=body, timeout=5,
                        headers={SIGNATURE_HEADER: sign(SECRET, body), "x-minique-event": "t"})
    assert answer.status_code == 400
    assert [(r.event_type, r.body, r.verified) for r in receiver.events()] == [("t", {}, True)]


async def test_the_same_event_is_queued_once_per_receiver(app: App, receiver: WebhookReceiver) -> None:
    event = make_event("alert.raised", {"subject": "SKU with spaces {and braces}"})
    first = await webhooks.send_event(event, "http://127.0.0.1:9/other")
    assert len(first) == 2  # the configured receiver and the account's own URL
    assert await webhooks.send_event(event, "http://127.0.0.1:9/other") == first
    stats = await get_queue_stats(QueueName.WEBHOOKS)
    assert stats["total"] == 2


async def test_a_report_on_incomplete_data_raises_a_data_incomplete_webhook(
        app: App, receiver: WebhookReceiver) -> None:
    # The Ads sync has not run (say it was throttled): the report says so, and alerts.
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0", "sync_types": ["orders", "fees"]})
    _, result = await app.run(QueueName.REPORTS, {"amazon_account_id": "acct-0"})
    [report] = result["reports"]
    assert (report["complete"], report["missing"], report["ad_spend"]) == (False, ["ads-profiles"], "0.00")
    assert result["raised"] == [
        {"kind": "data_incomplete", "subject": "ATVPDKIKX0DER", "severity": "warning"}]
    await wait_until(lambda: len(receiver.events("alert.raised")) == 1, timeout=15,
                     message="the data-incomplete webhook")
    data = receiver.events("alert.raised")[0].body["data"]
    assert (data["kind"], data["day"]) == ("data_incomplete", report["day"])
    assert "ads-profiles" in data["message"]
    # After the Ads sync, the rebuilt report has the full figures and raises nothing new.
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0", "sync_types": ["ppc"]})
    _, rebuilt = await app.run(QueueName.REPORTS, {"amazon_account_id": "acct-0"})
    [full] = rebuilt["reports"]
    assert full["complete"] and full["missing"] == [] and Decimal(full["ad_spend"]) > 0
    assert full["revenue"] == report["revenue"] and rebuilt["raised"] == []


async def test_webhooks_are_delivered_in_batches_per_receiver(
        app: App, receiver: WebhookReceiver) -> None:
    """Each receiver is a group of the webhooks queue; a receiver's webhooks go in batches,
    in order, and a receiver that is down is called once per batch, not once per event."""
    down = "http://127.0.0.1:9/hooks"  # nothing listens on port 9: connection refused
    queue = app.queue(QueueName.WEBHOOKS)
    await queue.pause()  # so that the worker takes every job at once when resumed
    ids = []
    for i in range(3):
        ids += await webhooks.send_event(make_event("alert.raised", {"n": i}), down)
    await queue.resume()
    assert len(ids) == 6
    jobs = [await queue.get_job(i) for i in ids]
    groups = {job.data["url"]: job.group for job in jobs if job is not None}
    assert groups == {receiver.url: webhooks.endpoint_group(receiver.url),
                      down: webhooks.endpoint_group(down)}
    await wait_until(lambda: len(receiver.events("alert.raised")) == 3, timeout=15,
                     message="the receiver's webhooks delivered")
    assert [r.body["data"]["n"] for r in receiver.events("alert.raised")] == [0, 1, 2]
    assert all(r.verified for r in receiver.events("alert.raised"))

    async def down_tried_once() -> bool:
        found = [await queue.get_job(i) for i in ids]
        return sum(1 for j in found if j is not None and j.data["url"] == down
                   and j.attempts_made >= 1) == 3

    await wait_until(down_tried_once, timeout=15, message="the down receiver's batch failed")
    reasons = []
    for job_id in ids:
        got = await queue.get_job(job_id)
        assert got is not None
        if got.data["url"] == down:
            reasons.append(got.failed_reason or "")
    assert sum("not tried" in r for r in reasons) == 2, reasons  # one POST for the batch
    for job in jobs:
        if job is not None and job.data["url"] == receiver.url:
            done = await queue.get_job(job.id)
            assert done is not None and done.state == "completed"
            assert done.return_value == {"event_id": job.data["event_id"], "status": 204}


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A receiver of our own on a free port; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


async def _queued_while_paused(app: App, url: str, count: int) -> list[Job]:
    """``count`` events to ``url`` (and the configured receiver), queued while the webhooks
    queue is paused so that the worker takes them at once; returns the jobs to ``url``."""
    queue = app.queue(QueueName.WEBHOOKS)
    await queue.pause()
    ids = []
    for i in range(count):
        ids += await webhooks.send_event(make_event("alert.raised", {"n": i}), url)
    mine = [j for j in [await queue.get_job(i) for i in ids] if j and j.data["url"] == url]
    await queue.resume()
    return mine


class _Throttling(http.server.BaseHTTPRequestHandler):
    """Answers the first POST 429 with ``Retry-After: 60``, the others 204."""

    posts: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.posts.append(self.path)
        throttled = len(self.posts) == 1
        self.send_response(429 if throttled else 204)
        if throttled:
            self.send_header("Retry-After", "60")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_a_receiver_that_asks_to_wait_is_given_the_time(app: App) -> None:
    """429 with Retry-After: the receiver's group sleeps that long (180 s at most) and no
    event of the batch uses an attempt: it was not refused, and the rest was not even sent
    (they used to be retried after 2 s, 4 s... against the receiver's word, each attempt
    burnt by every event of the batch)."""
    posts: list[str] = []
    with _serving(type("Handler", (_Throttling,), {"posts": posts})) as url:
        queue = app.queue(QueueName.WEBHOOKS)
        mine = await _queued_while_paused(app, url, 3)
        group = webhooks.endpoint_group(url)

        async def answered() -> bool:
            states = [await queue.get_state(j.id) for j in mine]
            return len(posts) == 1 and "active" not in states

        await wait_until(answered, timeout=10, message="the throttled batch answered")
        info = await queue.get_group(group)
        assert info is not None and info.rate_limited_until is not None
        assert info.rate_limited_until > time.time() + 30
        for job in mine:
            got = await queue.get_job(job.id)
            assert got is not None and got.attempts_made == 0, got
            assert await queue.get_state(job.id) == "waiting"
        assert len(posts) == 1


class _Holding(http.server.BaseHTTPRequestHandler):
    """Holds the first POST until ``release`` is set; answers 204."""

    posts: list[bytes]
    held: threading.Event
    release: threading.Event

    def do_POST(self) -> None:
        self.posts.append(self.rfile.read(int(self.headers["content-length"])))
        if len(self.posts) == 1:
            self.held.set()
            self.release.wait(10)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_a_webhook_cancelled_while_its_batch_runs_is_not_sent(app: App) -> None:
    """cancel() of a webhook whose batch is running: the call is not interrupted (the
    others' work), but the processor learns of it (``batch.cancelled``) and does not POST
    it. It used to be sent anyway, and then recorded as cancelled."""
    posts: list[bytes] = []
    held, release = threading.Event(), threading.Event()
    handler = type("Handler", (_Holding,), {"posts": posts, "held": held, "release": release})
    with _serving(handler) as url:
        queue = app.queue(QueueName.WEBHOOKS)
        first, second = await _queued_while_paused(app, url, 2)
        await wait_until(held.is_set, timeout=10, message="the first POST held")
        assert await queue.get_state(second.id) == "active"  # in the same batch
        try:
            assert await queue.cancel(second.id)
            assert app.workers is not None
            worker = app.workers.workers[QueueName.WEBHOOKS]
            # The cancel reaches the worker through Redis: the POST is held until it has.
            await wait_until(lambda: worker._running[second.id].cancel_reason is not None,
                             timeout=5, message="the worker told of the cancel")
        finally:
            release.set()
        assert (await first.wait_until_finished(timeout=10))["status"] == 204
        with pytest.raises(JobFailed, match="cancelled"):
            await second.wait_until_finished(timeout=10)
        assert len(posts) == 1


@pytest.mark.parametrize("event_type", ["alert\r\nX-Injected: 1", "alerte.levée", "a\x00b"])
async def test_a_webhook_that_cannot_be_sent_fails_alone(
        app: App, receiver: WebhookReceiver, event_type: str) -> None:
    """A webhook whose event type cannot go into a header (added by hand) is refused at once,
    and its batch-mates are still sent: it used to count as "the receiver failed", so every
    batch it was in failed the rest of its batch untried, for 8 attempts."""
    queue = app.queue(QueueName.WEBHOOKS)
    group = webhooks.endpoint_group(receiver.url)
    body = json.dumps({"id": "e", "type": "test", "data": {}})
    await queue.pause()
    jobs = [await queue.add("webhooks", {"url": receiver.url, "event_type": kind,
                                         "event_id": f"e{n}", "body": body}, group=group)
            for n, kind in enumerate(["test", event_type, "test"])]
    await queue.resume()
    first, bad, last = jobs
    assert (await first.wait_until_finished(timeout=10))["status"] == 204
    assert (await last.wait_until_finished(timeout=10))["status"] == 204
    assert (await last.refresh()).attempts_made == 1  # sent with its batch, not on a retry
    with pytest.raises(JobFailed, match="event type"):
        await bad.wait_until_finished(timeout=10)
    assert (await bad.refresh()).attempts_made == 1
    assert [r.event_type for r in receiver.events()] == ["test", "test"]
