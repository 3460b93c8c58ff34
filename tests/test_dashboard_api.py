"""The dashboard's JSON API against a real Redis: every endpoint, its errors, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from helpers import wait_until

from minique import Queue, UnrecoverableError, Worker
from minique.dashboard import create_app
from minique.dashboard.api import OPS, openapi_schema
from minique.dashboard.service import MAX_STRING, group_key


class Api:
    """An httpx client on the app, with the CSRF token it needs for POSTs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.c = client
        self.token = ""

    async def get(self, path: str, status: int = 200, **kw: Any) -> Any:
        r = await self.c.get(path, **kw)
        assert r.status_code == status, (path, r.status_code, r.text)
        return r.json()

    async def post(self, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        if not self.token:
            self.token = (await self.get("/api/csrf"))["token"]
        headers = {"x-csrf-token": self.token, **kw.pop("headers", {})}
        r = await self.c.post(path, json=body, headers=headers, **kw)
        assert r.status_code == status, (path, r.status_code, r.text)
        return r.json()


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    app = create_app(redis_url, hidden_data_queues=["secret-q"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dash.test") as client:
        yield Api(client)
    await app.state.dashboard.redis.aclose()


async def run_worker(queue: Queue, redis_url: str, fn: Any, **kw: Any) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(queue.name, fn, url=redis_url, heartbeat_interval=0.5, **kw)
    return worker, asyncio.create_task(worker.run())


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    await worker.close(timeout=2)
    await task


async def finished(queue: Queue, n: int, state: str = "completed") -> None:
    async def check() -> bool:
        return (await queue.get_stats())[state] >= n

    await wait_until(check, timeout=10, message=f"{n} {state} jobs")


# ----- reading ------------------------------------------------------------------------------


async def test_overview_counts_workers_and_throughput(api: Api, queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> int:
        if job.data == "bad":
            raise RuntimeError("boom")
        return 1

    await queue.add_bulk([("ok", i) for i in range(5)] + [("bad", "bad")])
    await queue.add("later", None, delay=3600)
    worker, task = await run_worker(queue, redis_url, proc)
    await finished(queue, 5)
    await finished(queue, 1, "failed")

    async def worker_seen() -> bool:
        return len(await queue.get_workers()) == 1

    await wait_until(worker_seen, message="worker heartbeat")
    overview = await api.get("/api/overview")
    mine = next(q for q in overview["queues"] if q["name"] == queue.name)
    assert mine["counts"] == await queue.get_stats()
    assert mine["counts"]["delayed"] == 1 and mine["paused"] is False and mine["workers"] == 1
    assert mine["totals"]["completed"] == 5 and mine["totals"]["failed"] == 1
    assert sum(overview["throughput"]["completed"]) >= 5
    assert len(overview["throughput"]["minutes"]) == 60
    w = next(w for w in overview["workers"] if w["name"] == worker.name)
    assert w["queues"] == [queue.name] and w["pid"] > 0 and w["host"]

    listed = await api.get("/api/queues")
    assert queue.name in [q["name"] for q in listed["queues"]]
    detail = await api.get(f"/api/queues/{queue.name}?minutes=10")
    assert detail["counts"]["completed"] == 5
    assert sum(detail["throughput"]["completed"]) == 5 and sum(detail["throughput"]["failed"]) == 1
    assert len(detail["throughput"]["minutes"]) == 10
    assert [x["name"] for x in detail["worker_list"]] == [worker.name]
    tp = await api.get(f"/api/queues/{queue.name}/throughput?minutes=5")
    assert sum(tp["completed"]) == 5
    workers = await api.get(f"/api/workers?queue={queue.name}")
    assert [x["name"] for x in workers["workers"]] == [worker.name]
    await stop(worker, task)


async def test_queues_are_discovered_even_with_only_waiting_jobs(api: Api, queue: Queue,
                                                                  redis_url: str) -> None:
    await queue.add("plain", None, job_id="custom-1")  # no :meta, no :id: only the stream
    names = [q["name"] for q in (await api.get("/api/queues"))["queues"]]
    assert queue.name in names
    other = Queue(queue.name + "-ids", url=redis_url)
    await other.add("x", None)
    await api.get(f"/api/queues/{other.name}")  # an unknown name refreshes the discovery
    await other.obliterate(force=True)
    await other.close()


async def test_configured_queues_only(queue: Queue, redis_url: str) -> None:
    await queue.add("x", None)
    app = create_app(redis_url, queues=[queue.name])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/api/queues")
        assert [q["name"] for q in r.json()["queues"]] == [queue.name]
        r = await c.get("/api/queues/not-configured/jobs")
        assert r.status_code == 404 and r.json()["error"]["code"] == "queue_not_found"
    await app.state.dashboard.redis.aclose()


async def test_job_list_pages_and_search(api: Api, queue: Queue) -> None:
    jobs = await queue.add_bulk([("invoice" if i % 3 else "refund", {"n": i}) for i in range(30)])
    base = f"/api/queues/{queue.name}/jobs"
    page1 = await api.get(f"{base}?state=waiting&page=1&page_size=10")
    page3 = await api.get(f"{base}?state=waiting&page=3&page_size=10")
    assert page1["total"] == 30 and page1["pages"] == 3
    assert [j["id"] for j in page1["jobs"]] == [j.id for j in jobs[:10]]
    assert [j["id"] for j in page3["jobs"]] == [j.id for j in jobs[20:]]
    past = await api.get(f"{base}?state=waiting&page=9&page_size=10")
    assert past["jobs"] == []
    found = await api.get(f"{base}?state=waiting&q=REFund&page_size=200")
    assert found["total"] == 10 and {j["name"] for j in found["jobs"]} == {"refund"}
    by_id = await api.get(f"{base}?state=waiting&q={jobs[7].id}")
    assert [j["id"] for j in by_id["jobs"]][:1] == [jobs[7].id]
    assert (await api.get(f"{base}?state=failed&q={jobs[7].id}"))["total"] == 0
    assert page1["jobs"][0]["actions"] == ["remove"]
    for bad in ("state=nope", "page=0", "page=x", "page_size=0", "page_size=201", "page_size=1.5",
                "state=waiting&page=5000&page_size=200"):
        err = await api.get(f"{base}?{bad}", status=400)
        assert err["error"]["code"] in ("bad_state", "bad_parameter") and err["error"]["message"]


async def test_job_detail_cuts_large_fields(api: Api, queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> dict[str, Any]:
        await job.log("first line")
        await job.update_progress(50)
        return {"echo": job.data["small"], "blob": b"\x00\x01"}

    data = {"small": "hi", "big": "x" * (MAX_STRING + 500), "many": list(range(150))}
    job = await queue.add("report", data, attempts=2, backoff={"type": "exponential", "delay": 1})
    worker, task = await run_worker(queue, redis_url, proc)
    await job.wait_until_finished(timeout=10)
    detail = await api.get(f"/api/queues/{queue.name}/jobs/{job.id}")
    assert detail["state"] == "completed" and detail["name"] == "report"
    assert detail["data"]["small"] == "hi"
    assert detail["data"]["big"].endswith("… (500 more characters)")
    assert len(detail["data"]["many"]) == 101 and detail["data"]["many"][-1] == "… 50 more items"
    assert detail["return_value"]["echo"] == "hi" and detail["return_value"]["blob"].startswith("<2 bytes")
    assert detail["logs"] == ["first line"] and detail["progress"] == 50
    assert detail["options"]["attempts"] == 2 and detail["options"]["backoff"]["type"] == "exponential"
    assert detail["attempts_made"] == 1 and detail["processed_on"] and detail["finished_on"]
    assert detail["actions"] == ["retry", "remove"]
    full = await api.get(f"/api/queues/{queue.name}/jobs/{job.id}?full=true")
    assert full["data"]["big"] == data["big"] and len(full["data"]["many"]) == 150
    logs = await api.get(f"/api/queues/{queue.name}/jobs/{job.id}/logs")
    assert logs["logs"] == ["first line"]
    await api.get(f"/api/queues/{queue.name}/jobs/{job.id}?full=maybe", status=400)
    missing = await api.get(f"/api/queues/{queue.name}/jobs/nope", status=404)
    assert missing["error"]["code"] == "job_not_found"
    await api.get(f"/api/queues/{queue.name}/jobs/nope/logs", status=404)
    await api.get(f"/api/queues/no-such-queue/jobs/{job.id}", status=404)
    await stop(worker, task)


async def test_failed_job_shows_reason_and_stack(api: Api, queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> None:
        raise ValueError("no such account")

    job = await queue.add("charge", None)
    worker, task = await run_worker(queue, redis_url, proc)
    await finished(queue, 1, "failed")
    detail = await api.get(f"/api/queues/{queue.name}/jobs/{job.id}")
    assert detail["state"] == "failed"
    assert detail["failed_reason"] == "ValueError: no such account"
    assert "Traceback" in detail["stacktrace"] and "no such account" in detail["stacktrace"]
    await stop(worker, task)


async def test_hidden_data_queue(api: Api, redis_url: str) -> None:
    q = Queue("secret-q", url=redis_url)
    job = await q.add("pii", {"email": "someone@example.org"})
    detail = await api.get(f"/api/queues/secret-q/jobs/{job.id}")
    assert detail["data_hidden"] is True and detail["data"] is None
    html = (await api.c.get(f"/queues/secret-q/jobs/{job.id}")).text
    assert "someone@example.org" not in html and "hidden" in html
    assert (await api.get("/api/queues/secret-q"))["data_hidden"] is True
    await q.obliterate(force=True)
    await q.close()


# ----- acting -------------------------------------------------------------------------------


async def test_job_actions(api: Api, queue: Queue, redis_url: str) -> None:
    base = f"/api/queues/{queue.name}/jobs"
    waiting = await queue.add("w", None)
    delayed = await queue.add("d", None, delay=3600)
    err = await api.post(f"{base}/{waiting.id}/retry", status=409)
    assert err["error"]["code"] == "invalid_state"
    await api.post(f"{base}/{waiting.id}/promote", status=409)
    await api.post(f"{base}/{waiting.id}/cancel", status=409)
    await api.post(f"{base}/{waiting.id}/explode", status=404)
    await api.post(f"{base}/nope/retry", status=404)
    done = await api.post(f"{base}/{delayed.id}/promote")
    assert done["state"] == "waiting" and await queue.get_state(delayed.id) == "waiting"
    assert (await api.post(f"{base}/{waiting.id}/remove"))["state"] == "unknown"
    assert await queue.get_job(waiting.id) is None
    await api.post(f"{base}/{waiting.id}/remove", status=404)
    r = await api.c.delete(f"{base}/{delayed.id}", headers={"x-csrf-token": api.token})
    assert r.status_code == 200 and await queue.get_job(delayed.id) is None

    started = asyncio.Event()
    failing = True

    async def proc(job: Any) -> str:
        if job.name == "slow":
            started.set()
            await asyncio.sleep(30)
        if failing:
            raise RuntimeError("flaky")
        return "ok"

    slow = await queue.add("slow", None)
    flaky = await queue.add("flaky", None)
    worker, task = await run_worker(queue, redis_url, proc)
    await asyncio.wait_for(started.wait(), 5)
    await finished(queue, 1, "failed")
    active_remove = await api.post(f"{base}/{slow.id}/remove", status=409)
    assert "active" in active_remove["error"]["message"]
    await api.post(f"{base}/{slow.id}/cancel")
    await finished(queue, 2, "failed")
    assert (await queue.get_job(slow.id)).failed_reason == "cancelled"  # type: ignore[union-attr]
    failing = False
    await api.post(f"{base}/{flaky.id}/retry")
    assert await job_done(queue, flaky.id)
    await stop(worker, task)


async def job_done(queue: Queue, job_id: str) -> bool:
    async def check() -> bool:
        return await queue.get_state(job_id) == "completed"

    await wait_until(check, timeout=10, message=f"job {job_id} completed")
    return True


async def test_queue_actions(api: Api, queue: Queue) -> None:
    base = f"/api/queues/{queue.name}"
    await api.post(f"{base}/pause", status=404)  # nothing in Redis yet: not a queue
    await queue.add("first", None)
    await queue.drain()
    assert (await api.post(f"{base}/pause"))["paused"] is True
    assert await queue.is_paused()
    assert (await api.post(f"{base}/resume"))["paused"] is False
    await queue.add_bulk([("x", i) for i in range(4)])
    await queue.add("later", None, delay=3600)
    assert (await api.post(f"{base}/drain"))["removed"] == 4
    assert (await queue.get_stats())["delayed"] == 1
    assert (await api.post(f"{base}/promote"))["promoted"] == 1
    assert (await api.post(f"{base}/drain", {"delayed": True}))["removed"] == 1
    await queue.add_bulk([("x", i) for i in range(3)])
    cleaned = await api.post(f"{base}/clean", {"state": "waiting", "grace": 0, "limit": 2})
    assert cleaned["removed"] == 2 and len(cleaned["ids"]) == 2
    assert (await api.post(f"{base}/clean", {"state": "waiting", "grace": 3600}))["removed"] == 0
    for body in ({"state": "active"}, {"grace": -1}, {"grace": "soon"}, {"limit": 0},
                 {"limit": "many"}, {"grace": True}):
        err = await api.post(f"{base}/clean", body, status=400)
        assert err["error"]["message"]
    assert (await api.post(f"{base}/retry"))["retried"] == 0
    await api.post(f"{base}/retry", {"state": "waiting"}, status=400)
    await api.post(f"{base}/drain", {"delayed": "perhaps"}, status=400)
    await api.post(f"{base}/explode", status=404)
    await api.post("/api/queues/no-such-queue/pause", status=404)
    r = await api.c.post(f"{base}/clean", content=b"{not json", headers={
        "x-csrf-token": api.token, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = await api.c.post(f"{base}/clean", json=[1, 2], headers={"x-csrf-token": api.token})
    assert r.status_code == 400
    # A form body works too (the pages' forms post one).
    r = await api.c.post(f"{base}/clean", data={"state": "waiting", "grace": "0", "limit": "5"},
                         headers={"x-csrf-token": api.token})
    assert r.status_code == 200 and r.json()["removed"] == 1


async def test_retry_all_failed(api: Api, queue: Queue, redis_url: str) -> None:
    fail = True

    async def proc(job: Any) -> None:
        if fail:
            raise RuntimeError("down")

    await queue.add_bulk([("x", i) for i in range(3)])
    worker, task = await run_worker(queue, redis_url, proc)
    await finished(queue, 3, "failed")
    fail = False
    assert (await api.post(f"/api/queues/{queue.name}/retry", {"state": "failed"}))["retried"] == 3
    await finished(queue, 3, "completed")
    await stop(worker, task)


async def test_dead_letters(api: Api, queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> None:
        if job.data == "early":
            raise UnrecoverableError("bad input")
        if job.data % 2:
            raise RuntimeError("timeout talking to bank")
        raise KeyError("account")

    await queue.add_bulk([("pay", i, {"attempts": 1}) for i in range(6)])
    await queue.add("pay", "early", attempts=3)
    worker, task = await run_worker(queue, redis_url, proc)
    await finished(queue, 7, "failed")
    await stop(worker, task)
    base = f"/api/queues/{queue.name}/dead-letter"
    dead = await api.get(base)
    assert dead["total"] == 6
    # Equal counts: the group that failed most recently (job 6, a RuntimeError) comes first.
    assert [(g["reason"], g["count"]) for g in dead["groups"]] == [
        ("RuntimeError: timeout talking to bank", 3), ("KeyError: 'account'", 3)]
    assert dead["groups"][0]["names"] == {"pay": 3} and len(dead["groups"][0]["jobs"]) == 3
    everything = await api.get(f"{base}?all=1")
    assert everything["total"] == 7 and len(everything["groups"]) == 3
    # The reply's own name for it is taken too (a newcomer sent include_all=1 back).
    assert everything["include_all"] is True
    assert (await api.get(f"{base}?include_all=1"))["total"] == 7
    limited = await api.get(f"{base}?per_group=1")
    assert all(len(g["jobs"]) == 1 for g in limited["groups"])
    await api.get(f"{base}?per_group=0", status=400)
    await api.get(f"{base}?all=sometimes", status=400)

    key = group_key("KeyError: 'account'")
    requeued = await api.post(f"{base}/requeue", {"group": key})
    assert requeued["requeued"] == 3
    assert (await queue.get_stats())["waiting"] == 3
    bank = next(g for g in dead["groups"] if g["reason"].startswith("RuntimeError"))
    one, two, three = (j["id"] for j in bank["jobs"])
    assert (await api.post(f"{base}/requeue", {"ids": [one]}))["requeued"] == 1
    deleted = await api.post(f"{base}/delete", {"ids": [two, one]})
    assert deleted["deleted"] == 1 and deleted["skipped"][0]["id"] == one  # one is waiting now
    assert await queue.get_job(two) is None
    form = await api.c.post(f"{base}/delete", data={"ids": [three]}, headers={"x-csrf-token": api.token})
    assert form.status_code == 200 and form.json()["deleted"] == 1
    for body in ({}, {"ids": [one], "group": key}, {"ids": "1"}, {"ids": [1]}, {"group": 5},
                 {"ids": [str(i) for i in range(1001)]}):
        await api.post(f"{base}/requeue", body, status=400)
    await api.post(f"{base}/requeue", {"group": "0" * 12}, status=404)
    await api.post(f"{base}/explode", {"ids": [one]}, status=404)


# ----- the API's description and general errors ----------------------------------------------


async def test_openapi_describes_every_endpoint(api: Api) -> None:
    spec = await api.get("/api/openapi.json")
    assert spec["openapi"].startswith("3.") and spec["info"]["title"]
    for op in OPS:
        assert op.method.lower() in spec["paths"][op.path], op.path
        item = spec["paths"][op.path][op.method.lower()]
        assert item["summary"] and item["responses"]["200"]
    assert openapi_schema("/x")["servers"] == [{"url": "/x"}]
    missing = (await api.get("/api/nothing-here", status=404))["error"]
    assert missing["code"] == "not_found" and "/api/openapi.json" in missing["message"]
    # The first address a newcomer tries: the 404 says where the endpoints are.
    assert "/api/openapi.json" in (await api.get("/api/", status=404))["error"]["message"]


async def test_a_known_endpoint_with_another_method_is_405_with_allow(api: Api, queue: Queue) -> None:
    """RFC 9110: a method the resource does not support is 405 with an Allow header; the
    catch-all route answered 404 "no API endpoint", as if the path did not exist."""
    q = queue.name
    job = await queue.add("x", None)
    r = await api.c.get(f"/api/queues/{q}/pause")
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "POST" and r.json()["error"]["code"] == "method_not_allowed"
    r = await api.post(f"/api/queues/{q}/jobs/{job.id}", {}, status=405)
    assert r["error"]["code"] == "method_not_allowed"
    token = (await api.get("/api/csrf"))["token"]
    r = await api.c.delete(f"/api/queues/{q}", headers={"x-csrf-token": token})
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert (await api.c.get("/api/queues/a/b/c/d/e/f")).status_code == 404


async def test_bad_parameters_never_give_500(api: Api, queue: Queue) -> None:
    job = await queue.add("x", None)
    q = queue.name
    cases = [
        "/api/overview?minutes=0", "/api/overview?minutes=121", "/api/overview?minutes=abc",
        f"/api/queues/{q}?minutes=-5", f"/api/queues/{q}/throughput?minutes=1e9",
        f"/api/queues/{q}/jobs?state=", f"/api/queues/{q}/jobs?page=-1",
        f"/api/queues/{q}/jobs/{job.id}/logs?start=a", "/api/workers?queue=nope",
        "/api/queues/bad%20name/jobs", f"/api/queues/{q}/jobs/{'x' * 600}",
    ]
    for path in cases:
        r = await api.c.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert r.json()["error"]["message"], path


async def test_redis_down_is_a_503(redis_url: str) -> None:
    from minique.server import free_port

    app = create_app(f"redis://127.0.0.1:{free_port()}/0", queues=["q"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/api/queues")
        assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable"
        assert (await c.get("/metrics")).status_code == 503
        assert (await c.get("/")).status_code == 503
    await app.state.dashboard.redis.aclose()
