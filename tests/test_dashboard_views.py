"""The dashboard's newer views through its API and pages: error fingerprints, hidden data,
ids with '/', job schedulers, attempts, and one worker process serving several queues."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from helpers import wait_until
from test_dashboard_api import Api, api, finished, run_worker, stop

from minique import Queue, Worker
from minique.dashboard.fingerprint import fingerprint
from minique.dashboard.ids import decode_id, encode_id

__all__ = ["api"]  # the fixture, imported so that pytest finds it here


def test_fingerprints_mask_what_varies_between_jobs() -> None:
    a = fingerprint("SMTPError: bounce from anna@example.org (id 8f3a2b1c9d, code 550) "
                    "at https://mx.example.org/x?id=1 for 'Anna'")
    b = fingerprint('SMTPError: bounce from bo.b+x@mail.example.com (id ff01aa22bb, code 551) '
                    'at http://other.example/y for "Bob"')
    assert a == b and a.type == "SMTPError"
    assert a.template == "bounce from <email> (id <id>, code <n>) at <url> for <value>"
    assert fingerprint("SMTPError: quota exceeded").key != a.key
    assert fingerprint("ValueError: bad row 7").key != fingerprint("KeyError: bad row 7").key
    assert fingerprint(None).template == "(no reason)"


def test_ids_round_trip_in_urls() -> None:
    for value in ["1234", "sched:x:1:17", "a/b/c", "..", ".", "~tilde", "a b?#%", "ü/ñ", "x" * 512]:
        segment = encode_id(value)
        assert "/" not in segment and "?" not in segment and segment.strip(".")
        assert decode_id(segment) == value
    assert encode_id("report-7.csv") == "report-7.csv"  # plain ids stay readable


async def test_dead_letters_group_by_fingerprint_biggest_then_latest(api: Api, queue: Queue,
                                                                     redis_url: str) -> None:
    async def send(job: Any) -> None:
        if job.name == "email":
            raise ConnectionRefusedError(f"mailbox {job.data} unavailable, try #{job.id}")
        if job.name == "render":
            raise ValueError(f"bad template {job.data!r}")
        raise LookupError(f"no row {job.data}")

    await queue.add_bulk([("email", f"user{i}@example.org", {"attempts": 1}) for i in range(12)])
    worker, task = await run_worker(queue, redis_url, send)
    await finished(queue, 12, "failed")
    await queue.add_bulk([("render", f"tpl-{i}", {"attempts": 1}) for i in range(2)])
    await finished(queue, 14, "failed")
    # Two of another kind, later: as many as the render group, so they come first.
    await queue.add_bulk([("lookup", i, {"attempts": 1}) for i in range(2)])
    await finished(queue, 16, "failed")
    await stop(worker, task)
    dead = await api.get(f"/api/queues/{queue.name}/dead-letter")
    assert [(g["type"], g["count"]) for g in dead["groups"]] == [
        ("ConnectionRefusedError", 12), ("LookupError", 2), ("ValueError", 2)]
    first = dead["groups"][0]
    assert first["fingerprint"] == "mailbox <email> unavailable, try #<n>"
    assert len({j["id"] for j in first["jobs"]}) == 12
    assert dead["groups"][1]["latest"] >= dead["groups"][2]["latest"]
    requeued = await api.post(f"/api/queues/{queue.name}/dead-letter/requeue", {"group": first["key"]})
    assert requeued["requeued"] == 12
    page = await api.c.get(f"/queues/{queue.name}/dead-letter")
    assert page.status_code == 200 and "bad template &lt;value&gt;" in page.text


async def test_hidden_data_is_hidden_everywhere(api: Api, redis_url: str) -> None:
    secret = "anna.secret@example.org"
    q = Queue("secret-q", url=redis_url)
    await q.obliterate(force=True)

    async def leak(job: Any) -> None:
        await job.log(f"writing to {job.data['email']}")
        await job.update_progress({"current": job.data["email"]})
        raise RuntimeError(f"bounce from {job.data['email']}")

    job = await q.add("mail", {"email": secret}, attempts=2, backoff=0)
    worker, task = await run_worker(q, redis_url, leak)

    async def failed() -> bool:
        return await q.get_state(job.id) == "failed"

    await wait_until(failed, timeout=10)
    await q.upsert_job_scheduler("nightly", every=3600, job_name="mail", data={"email": secret})
    try:
        bodies = []
        for path in [f"/api/queues/secret-q/jobs/{job.id}", f"/api/queues/secret-q/jobs/{job.id}?full=1",
                     f"/api/queues/secret-q/jobs/{job.id}/logs", "/api/queues/secret-q/jobs?state=failed",
                     "/api/queues/secret-q/dead-letter", "/api/queues/secret-q/dead-letter?all=1",
                     "/api/schedulers", "/api/queues/secret-q/schedulers", "/api/overview",
                     "/api/workers", f"/queues/secret-q/jobs/{job.id}", "/queues/secret-q?state=failed",
                     "/queues/secret-q/dead-letter", "/schedulers", "/metrics"]:
            r = await api.c.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text)
            bodies.append((path, r.text))
        for path, text in bodies:
            assert secret not in text and "anna.secret" not in text, path
        detail = await api.get(f"/api/queues/secret-q/jobs/{job.id}")
        assert detail["failed_reason"] == "RuntimeError: (message hidden)"
        assert detail["stacktrace"] is None and detail["logs"] == [] and detail["data"] is None
        assert [a["error"] for a in detail["attempt_history"]] == ["RuntimeError: (message hidden)"] * 2
    finally:
        await stop(worker, task)
        await q.obliterate(force=True)
        await q.close()


async def test_a_job_id_with_slashes_is_reachable(api: Api, queue: Queue) -> None:
    job_id = "acme/2024-01/../report?x=1#y"
    await queue.add("report", {"n": 1}, job_id=job_id)
    seg = encode_id(job_id)
    got = await api.get(f"/api/queues/{queue.name}/jobs/{seg}")
    assert got["id"] == job_id
    assert (await api.get(f"/api/queues/{queue.name}/jobs/{seg}/logs"))["id"] == job_id
    page = await api.c.get(f"/queues/{queue.name}/jobs/{seg}")
    assert page.status_code == 200 and "acme/2024-01/../report?x=1#y" in page.text
    listing = await api.c.get(f"/queues/{queue.name}?state=waiting")
    assert f"/jobs/{seg}" in listing.text  # the list links to the encoded id
    # Typed by hand, with its slashes, the job page still finds a plain path id.
    await queue.add("report", None, job_id="plain/path")
    assert (await api.c.get(f"/queues/{queue.name}/jobs/plain/path")).status_code == 200
    removed = await api.post(f"/api/queues/{queue.name}/jobs/{seg}/remove")
    assert removed["ok"] and await queue.get_job(job_id) is None
    await api.get(f"/api/queues/{queue.name}/jobs/~!!!", status=400)


async def test_schedulers_listed_run_now_and_removed(api: Api, queue: Queue) -> None:
    await queue.upsert_job_scheduler("hourly-sync", cron="0 * * * *", tz="Europe/Helsinki",
                                     job_name="sync", data={"account": "a1"})
    await queue.upsert_job_scheduler("ping/every-30", every=30.0, job_name="ping")
    listed = (await api.get(f"/api/queues/{queue.name}/schedulers"))["schedulers"]
    by_id = {s["id"]: s for s in listed}
    assert set(by_id) == {"hourly-sync", "ping/every-30"}
    hourly = by_id["hourly-sync"]
    assert hourly["cron"] == "0 * * * *" and hourly["tz"] == "Europe/Helsinki"
    assert hourly["next_run"] and hourly["pending_job_id"] and hourly["pending_state"] == "delayed"
    assert hourly["iterations"] == 0 and hourly["data"] == {"account": "a1"}
    assert by_id["ping/every-30"]["every"] == 30.0
    before = (await queue.get_stats())["waiting"]
    ran = await api.post(f"/api/queues/{queue.name}/schedulers/hourly-sync/run")
    job = await queue.get_job(ran["job_id"])
    assert job is not None and job.name == "sync" and job.data == {"account": "a1"}
    assert (await queue.get_stats())["waiting"] == before + 1
    after = {s["id"]: s for s in (await api.get("/api/schedulers"))["schedulers"]}["hourly-sync"]
    assert after["pending_job_id"] == hourly["pending_job_id"]  # the schedule did not move
    removed = await api.post(f"/api/queues/{queue.name}/schedulers/{encode_id('ping/every-30')}/remove")
    assert removed["ok"]
    assert [s.id for s in await queue.get_job_schedulers()] == ["hourly-sync"]
    await api.post(f"/api/queues/{queue.name}/schedulers/nope/run", status=404)
    await api.post(f"/api/queues/{queue.name}/schedulers/hourly-sync/explode", status=404)
    page = await api.c.get(f"/schedulers?queue={queue.name}")
    assert page.status_code == 200 and "hourly-sync" in page.text and "0 * * * *" in page.text


async def test_one_process_serving_three_queues_is_one_worker(api: Api, redis_url: str) -> None:
    names = ["multi-a", "multi-b", "multi-c"]
    queues = [Queue(n, url=redis_url) for n in names]
    gate = asyncio.Event()

    async def slow(job: Any) -> None:
        await gate.wait()

    workers = [Worker(n, slow, url=redis_url, heartbeat_interval=0.2) for n in names]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await queues[1].add("hold", None)

        async def listed() -> bool:
            ws = (await api.get("/api/workers"))["workers"]
            mine = [w for w in ws if set(names) & set(w["queues"])]
            return len(mine) == 1 and mine[0]["queues"] == names and mine[0]["running"] != []

        await wait_until(listed, timeout=10)
        w = next(w for w in (await api.get("/api/workers"))["workers"] if names[0] in w["queues"])
        assert len(w["names"]) == 3 and w["concurrency"] == 15
        one = await api.get(f"/api/workers/{encode_id(w['id'])}")
        assert [j["name"] for j in one["running_detail"]] == ["hold"]
        assert one["running_detail"][0]["queue"] == "multi-b"
        page = await api.c.get(f"/workers/{encode_id(w['id'])}")
        assert page.status_code == 200 and "multi-c" in page.text and "hold" in page.text
        await api.get("/api/workers/nobody:1", status=404)
    finally:
        gate.set()
        for worker, task in zip(workers, tasks, strict=True):
            await stop(worker, task)
        for q in queues:
            await q.obliterate(force=True)
            await q.close()


async def test_the_job_page_lists_each_attempt(api: Api, queue: Queue, redis_url: str) -> None:
    async def flaky(job: Any) -> str:
        if job.attempts_made < 2:
            raise TimeoutError(f"upstream slow on try {job.attempts_made + 1}")
        return "done"

    job = await queue.add("sync", None, attempts=3, backoff=0)
    worker, task = await run_worker(queue, redis_url, flaky)
    assert await job.wait_until_finished(timeout=10) == "done"
    await stop(worker, task)
    got = await api.get(f"/api/queues/{queue.name}/jobs/{job.id}")
    history = got["attempt_history"]
    assert [a["outcome"] for a in history] == ["retried", "retried", "completed"]
    assert all(a["worker"] == worker.name and a["duration"] is not None for a in history)
    assert "try 1" in history[0]["error"]
    page = await api.c.get(f"/queues/{queue.name}/jobs/{job.id}")
    assert page.text.count("data-attempt=") == 3


async def test_the_trace_shows_the_last_exception_first(api: Api, queue: Queue, redis_url: str) -> None:
    async def chained(job: Any) -> None:
        try:
            raise KeyError("inner-cause")
        except KeyError as exc:
            raise RuntimeError("outer-failure") from exc

    job = await queue.add("x", None, attempts=1)
    worker, task = await run_worker(queue, redis_url, chained)
    await finished(queue, 1, "failed")
    await stop(worker, task)
    page = (await api.c.get(f"/queues/{queue.name}/jobs/{job.id}")).text
    trace = page[page.index('id="trace"'):]
    assert trace.index("RuntimeError: outer-failure") < trace.index("KeyError: &#39;inner-cause&#39;")
    assert 'id="copy-trace"' in page and 'id="trace-raw"' in page


async def test_the_live_stream_says_when_to_refresh(redis_url: str, queue: Queue) -> None:
    """Server-sent events from a real uvicorn: status ok, then a change when a job is added."""
    import uvicorn

    from minique.dashboard import create_app
    from minique.server import free_port

    port = free_port()
    app = create_app(redis_url, queues=[queue.name], poll_interval=0.5)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=10)
    seen: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=10) as c, c.stream(
                "GET", f"http://127.0.0.1:{port}/api/stream?queue={queue.name}") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            added = False
            async with asyncio.timeout(10):
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        seen.append(line.split(":", 1)[1].strip())
                    if seen[:1] == ["status"] and "change" in seen and not added:
                        seen.clear()  # the first change is the initial digest
                        seen.append("status")
                        await queue.add("x", {"secret": "not-in-the-stream"})
                        added = True
                    elif added and "change" in seen:
                        break
    finally:
        server.should_exit = True
        await serving
    assert "change" in seen
    bad = await httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://t").get("/api/stream?queue=nope")
    assert bad.status_code == 404
