"""Breaking the dashboard and the operator CLI the way users report bugs against bull-board,
Arena, Flower and rq-dashboard: hostile failure reasons, corrupted jobs, odd ids in paths,
unbounded parameters and out-of-range ports. Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from minique import Queue
from minique.cli import main
from minique.dashboard import create_app
from minique.dashboard.fingerprint import fingerprint
from minique.dashboard.service import MAX_LOG_LINES, MAX_STRING


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(redis_url)
    # raise_app_exceptions=False: a bug is seen as the 500 a browser would get.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as c:
        c.headers["x-csrf-token"] = (await c.get("/api/csrf")).json()["token"]
        yield c
    await app.state.dashboard.redis.aclose()


async def raw(redis_url: str) -> Any:
    return aioredis.Redis.from_url(redis_url)


# ----- failure reasons that froze the dead-letter view (quadratic regexes) -----------------


def test_fingerprint_of_a_long_reason_takes_linear_time() -> None:
    # A worker keeps up to 64 KiB of a reason; the dead-letter view fingerprints up to
    # 2,000 reasons per request, on the event loop. "a-a-a-..." made the id mask try every
    # position of the run to its end: 16 KiB took ~3.5 s, 64 KiB about a minute.
    started = time.perf_counter()
    for body in ("a-" * 8192, "a." * 8192, "1" * 16384, "ab+" * 5461):
        fingerprint(f"ValueError: {body}")
    assert time.perf_counter() - started < 1.0
    # What is masked is unchanged by the anchoring.
    assert fingerprint("E: job -u7 of ord_8f3a2 at x@y.org, http://h/1 'v' 12").template == \
        "job -<id> of <id> at <email>, <url> <value> <n>"


# ----- one corrupted job broke the whole list of its state --------------------------------


async def test_a_corrupted_job_is_listed_and_removable(client: httpx.AsyncClient,
                                                       queue: Queue, redis_url: str) -> None:
    for i in range(3):
        await queue.add("n", {"i": i}, job_id=f"ok{i}")
    await queue.add("n", None, job_id="bad")
    r = await raw(redis_url)
    try:
        await r.hset(queue.keys.job("bad"), "p", "not-a-number")
    finally:
        await r.aclose()
    listing = await client.get(f"/api/queues/{queue.name}/jobs")
    assert listing.status_code == 200, listing.text  # was 422 for the whole page
    rows = {j["id"]: j for j in listing.json()["jobs"]}
    assert set(rows) == {"ok0", "ok1", "ok2", "bad"}
    assert "not numbers" in rows["bad"]["corrupted"] and rows["bad"]["actions"] == ["remove"]
    search = await client.get(f"/api/queues/{queue.name}/jobs", params={"q": "n"})
    assert search.status_code == 200 and search.json()["total"] == 3
    page = await client.get(f"/queues/{queue.name}")
    assert page.status_code == 200 and "ok1" in page.text and "bad" in page.text
    # The job's own view stays a documented 422; removing it works (it answered 422 too).
    assert (await client.get(f"/api/queues/{queue.name}/jobs/bad")).status_code == 422
    removed = await client.post(f"/api/queues/{queue.name}/jobs/bad/remove")
    assert removed.status_code == 200, removed.text
    assert await queue.get_state("bad") == "unknown"
    again = await client.post(f"/api/queues/{queue.name}/jobs/bad/remove")
    assert again.status_code == 404 and again.json()["error"]["code"] == "job_not_found"


# ----- odd ids in paths ------------------------------------------------------------------


async def test_a_malformed_encoded_queue_in_a_page_path_is_a_400_page(
        client: httpx.AsyncClient, queue: Queue) -> None:
    await queue.add("n", None, job_id="j1")
    # "~A" and "~_w" are not base64url of a UTF-8 id: the API said 400, the pages 500.
    for bad in ("~A", "~_w"):
        for path in (f"/queues/{bad}", f"/queues/{bad}/jobs/j1", f"/queues/{bad}/dead-letter",
                     f"/queues/{bad}/groups", f"/queues/{bad}/groups/g"):
            r = await client.get(path)
            assert r.status_code == 400, (path, r.status_code)
            assert "text/html" in r.headers["content-type"] and "not a valid encoded id" in r.text


# ----- bounded answers ---------------------------------------------------------------------


async def test_job_logs_are_paged_and_cut(client: httpx.AsyncClient, queue: Queue) -> None:
    await queue.add("n", None, job_id="L")
    for i in range(MAX_LOG_LINES + 5):
        await queue.add_log("L", f"line {i}", keep=5000)
    await queue.add_log("L", "x" * (MAX_STRING * 3), keep=5000)
    url = f"/api/queues/{queue.name}/jobs/L/logs"
    everything = (await client.get(url)).json()
    assert len(everything["logs"]) == MAX_LOG_LINES and everything["truncated"]
    assert everything["total"] == MAX_LOG_LINES + 6 and everything["logs"][0] == "line 0"
    tail = (await client.get(url, params={"start": -2})).json()
    assert tail["logs"][0] == f"line {MAX_LOG_LINES + 4}" and not tail["truncated"]
    assert len(tail["logs"][1]) < MAX_STRING + 50  # cut, and says so
    full = (await client.get(url, params={"start": -1, "full": "1"})).json()
    assert full["logs"] == ["x" * (MAX_STRING * 3)]
    for params in ({"end": str(10**20)}, {"start": str(-(10**20))}):
        r = await client.get(url, params=params)  # was a 502: Redis refused the number
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_parameter"


async def test_a_long_failure_reason_is_cut_in_the_job_view(client: httpx.AsyncClient,
                                                           queue: Queue, redis_url: str) -> None:
    await queue.add("n", None, job_id="F")
    r = await raw(redis_url)
    try:
        await r.hset(queue.keys.job("F"), "fr", "ValueError: " + "y" * 60_000)
    finally:
        await r.aclose()
    url = f"/api/queues/{queue.name}/jobs/F"
    assert len((await client.get(url)).json()["failed_reason"]) < MAX_STRING + 50
    assert len((await client.get(url, params={"full": "1"})).json()["failed_reason"]) == 60_012


# ----- the CLI ---------------------------------------------------------------------------


def test_dashboard_refuses_a_port_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn on uvloop bound 99999 % 65536 = 34463 while printing "running on :99999".
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: served.append(kw))
    result = CliRunner().invoke(main, ["dashboard", "--port", "99999"])
    assert served == []
    assert result.exit_code == 2 and "99999" in result.output and "0<=x<=65535" in result.output


def add_job(redis_url: str, queue: str, name: str) -> None:
    """The CLI runs its own event loop, so these tests are synchronous."""
    async def go() -> None:
        async with Queue(queue, url=redis_url) as q:
            await q.add(name, None, job_id="c1")

    asyncio.run(go())


def test_jobs_with_a_page_too_big_is_a_usage_error(qname: str, redis_url: str) -> None:
    add_job(redis_url, qname, "n")
    base = ["jobs", "--queue", qname, "--url", redis_url, "--state", "waiting"]
    for extra in (["--end", "200000"], ["--start", str(10**20), "--end", str(10**20)]):
        result = CliRunner().invoke(main, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output


def test_jobs_escapes_control_characters(qname: str, redis_url: str) -> None:
    # A job name is any string: one that sets the terminal's title, colours or direction
    # must not reach the terminal raw.
    add_job(redis_url, qname, "x\x1b]0;pwned\x07\x1b[2J\u202eevil\nsecond")
    result = CliRunner().invoke(main, ["jobs", "--queue", qname, "--url", redis_url,
                                       "--state", "waiting"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\u202e" not in result.output
    assert "x\\x1b]0;pwned\\x07" in result.output and "\\nsecond" in result.output
    assert len(result.output.strip().splitlines()) == 2  # the header and one row


async def test_a_body_over_the_limit_is_refused_as_it_streams_in(
        client: httpx.AsyncClient, queue: Queue) -> None:
    """An action's body was read whole (request.body()) before its size was checked: a
    client could make the dashboard hold any amount in memory. It is refused (413) as soon
    as it passes MAX_BODY, and the rest is never read."""
    from minique.dashboard.api import MAX_BODY

    await queue.add("x", 1)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b" " * 65536
        for _ in range(1000):  # 64 MiB, if it were all read
            sent += len(chunk)
            yield chunk

    r = await client.post(f"/api/queues/{queue.name}/clean", content=endless(),
                          headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert sent <= MAX_BODY + 4 * 65536, f"{sent} bytes read for a {MAX_BODY}-byte limit"
