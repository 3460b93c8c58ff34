"""Authentication, CSRF, the bind check, the CLI command and mounting under a path prefix."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from minique import Queue
from minique.dashboard import Auth, ConfigError, check_bind, create_app, dashboard_command

TOKEN = "s3cret-token-for-tests-0123456789"


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


@pytest.fixture
async def token_client(redis_url: str, queue: Queue) -> AsyncIterator[httpx.AsyncClient]:
    await queue.add("x", None)
    app = create_app(redis_url, queues=[queue.name], auth=Auth(token=TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dash.test") as client:
        yield client
    await app.state.dashboard.redis.aclose()


async def test_token_auth_refusals(token_client: httpx.AsyncClient, queue: Queue) -> None:
    c = token_client
    for path in ("/api/queues", "/metrics", "/api/openapi.json", f"/api/queues/{queue.name}/jobs"):
        r = await c.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert (await c.get("/api/queues", headers={"authorization": "Bearer wrong"})).status_code == 401
    assert (await c.get("/api/queues", headers=basic("admin", TOKEN))).status_code == 401
    page = await c.get("/")
    assert page.status_code == 401 and "text/html" in page.headers["content-type"]
    assert "token" in page.text
    assert (await c.get("/static/app.css")).status_code == 200  # static files are public
    r = await c.post(f"/api/queues/{queue.name}/pause")
    assert r.status_code == 401 and not await queue.is_paused()


async def test_bearer_token_works_without_csrf(token_client: httpx.AsyncClient, queue: Queue) -> None:
    h = {"authorization": f"Bearer {TOKEN}"}
    r = await token_client.get("/api/queues", headers=h)
    assert r.status_code == 200 and r.json()["queues"][0]["name"] == queue.name
    r = await token_client.post(f"/api/queues/{queue.name}/pause", headers=h)
    assert r.status_code == 200 and await queue.is_paused()
    # ...but a cross-site Origin is refused even then.
    r = await token_client.post(f"/api/queues/{queue.name}/resume",
                                headers={**h, "origin": "https://evil.example"})
    assert r.status_code == 403 and await queue.is_paused()


async def test_sign_in_posts_the_token_and_never_takes_it_from_a_url(
        token_client: httpx.AsyncClient, queue: Queue) -> None:
    c = token_client
    # A token in the URL is not a way in (it would be written to access logs).
    r = await c.get(f"/queues/{queue.name}?token={TOKEN}")
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert "method='post'" in r.text and TOKEN not in r.text
    wrong = await c.post("/_signin", data={"token": "wrong-" + TOKEN, "next": "/"})
    assert wrong.status_code == 401 and "not right" in wrong.text
    cross = await c.post("/_signin", data={"token": TOKEN, "next": "/"},
                         headers={"origin": "https://evil.example"})
    assert cross.status_code == 401
    sneaky = await c.post("/_signin", data={"token": TOKEN, "next": "//evil.example/x"})
    assert sneaky.status_code == 303 and sneaky.headers["location"] == "/"
    c.cookies.clear()
    target = f"/queues/{queue.name}?state=waiting"
    r = await c.post("/_signin", data={"token": TOKEN, "next": target})
    assert r.status_code == 303 and r.headers["location"] == target
    assert "HttpOnly" in r.headers["set-cookie"] and TOKEN not in r.headers["set-cookie"]
    assert TOKEN not in r.headers["location"]
    assert (await c.get(r.headers["location"])).status_code == 200
    # The cookie authenticates, so the CSRF check applies.
    assert (await c.post(f"/api/queues/{queue.name}/pause")).status_code == 403
    csrf = (await c.get("/api/csrf")).json()["token"]
    r = await c.post(f"/api/queues/{queue.name}/pause", headers={"x-csrf-token": csrf})
    assert r.status_code == 200 and await queue.is_paused()


async def test_basic_auth(redis_url: str, queue: Queue) -> None:
    await queue.add("x", None)
    app = create_app(redis_url, queues=[queue.name], auth=Auth(username="ops", password="pa:ss"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/api/queues")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert (await c.get("/api/queues", headers=basic("ops", "wrong"))).status_code == 401
        assert (await c.get("/api/queues", headers=basic("opz", "pa:ss"))).status_code == 401
        assert (await c.get("/api/queues", headers={"authorization": "Basic !!!"})).status_code == 401
        good = basic("ops", "pa:ss")
        assert (await c.get("/api/queues", headers=good)).status_code == 200
        assert (await c.get("/", headers=good)).status_code == 200
        # Browsers resend basic credentials by themselves: CSRF still applies.
        assert (await c.post(f"/api/queues/{queue.name}/pause", headers=good)).status_code == 403
        csrf = (await c.get("/api/csrf", headers=good)).json()["token"]
        r = await c.post(f"/api/queues/{queue.name}/pause", headers={**good, "x-csrf-token": csrf})
        assert r.status_code == 200
    await app.state.dashboard.redis.aclose()


async def test_csrf_double_submit_and_origin(redis_url: str, queue: Queue) -> None:
    await queue.add("x", None)
    app = create_app(redis_url, queues=[queue.name])
    pause = f"/api/queues/{queue.name}/pause"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dash.test") as c:
        r = await c.post(pause)
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
        first = await c.get("/")
        assert "minique_csrf=" in first.headers["set-cookie"]
        token = c.cookies["minique_csrf"]
        assert (await c.post(pause, headers={"x-csrf-token": "x" * 43})).status_code == 403
        for origin in ("https://evil.example", "null"):
            r = await c.post(pause, headers={"x-csrf-token": token, "origin": origin})
            assert r.status_code == 403, origin
        r = await c.post(pause, headers={"x-csrf-token": token, "sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        assert not await queue.is_paused()
        r = await c.post(pause, headers={"x-csrf-token": token, "origin": "http://dash.test"})
        assert r.status_code == 200 and await queue.is_paused()
        assert r.headers["x-frame-options"] == "DENY"
    await app.state.dashboard.redis.aclose()
    trusting = create_app(redis_url, queues=[queue.name], trusted_origins=["https://ops.example.org/"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=trusting),
                                 base_url="http://dash.test") as c:
        await c.get("/")
        ok = await c.post(f"/api/queues/{queue.name}/resume", headers={
            "x-csrf-token": c.cookies["minique_csrf"], "origin": "https://ops.example.org"})
        assert ok.status_code == 200 and not await queue.is_paused()
    await trusting.state.dashboard.redis.aclose()
    # A header without the cookie is refused too (the cookie is what a forger cannot read).
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash.test") as c:
        assert (await c.post(pause, headers={"x-csrf-token": token})).status_code == 403
    await app.state.dashboard.redis.aclose()


def test_bind_check_and_auth_config() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    for host in ("0.0.0.0", "::", "192.0.2.10", "dash.example.org"):
        with pytest.raises(ConfigError, match="without authentication"):
            check_bind(host, None)
        check_bind(host, Auth(token=TOKEN))
    with pytest.raises(ConfigError, match="16 characters"):
        Auth(token="short")
    with pytest.raises(ConfigError, match="both"):
        Auth(username="ops")
    assert Auth.from_env({}) is None
    assert Auth.from_env({"MINIQUE_DASHBOARD_TOKEN": TOKEN}) == Auth(token=TOKEN)
    env = {"MINIQUE_DASHBOARD_USERNAME": "a", "MINIQUE_DASHBOARD_PASSWORD": "b"}
    assert Auth.from_env(env) == Auth(username="a", password="b")
    with pytest.raises(ConfigError):
        Auth.from_env({"MINIQUE_DASHBOARD_PASSWORD": "b"})


def test_cli_refuses_public_bind_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    for var in ("MINIQUE_DASHBOARD_TOKEN", "MINIQUE_DASHBOARD_USERNAME", "MINIQUE_DASHBOARD_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    refused = runner.invoke(dashboard_command, ["--host", "0.0.0.0", "--port", "8099"])
    assert refused.exit_code == 2 and "without authentication" in refused.output
    assert calls == []
    ok = runner.invoke(dashboard_command, ["--port", "8099", "--queue", "a"])
    assert ok.exit_code == 0, ok.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8099
    monkeypatch.setenv("MINIQUE_DASHBOARD_TOKEN", TOKEN)
    ok = runner.invoke(dashboard_command, ["--host", "0.0.0.0", "--port", "8099"])
    assert ok.exit_code == 0, ok.output
    assert calls[-1]["host"] == "0.0.0.0" and "token auth" in ok.output
    monkeypatch.setenv("MINIQUE_DASHBOARD_TOKEN", "short")
    bad = runner.invoke(dashboard_command, ["--host", "0.0.0.0"])
    assert bad.exit_code == 2 and "16 characters" in bad.output
    # --port 0 (any free port): the address printed is the one served, not ":0" (a
    # newcomer run found it printed http://127.0.0.1:0/).
    monkeypatch.delenv("MINIQUE_DASHBOARD_TOKEN")
    anywhere = runner.invoke(dashboard_command, ["--port", "0", "--queue", "a"])
    assert anywhere.exit_code == 0, anywhere.output
    served = calls[-1]["port"]
    assert served > 0 and f"http://127.0.0.1:{served}/" in anywhere.output


async def test_mounted_under_a_path_prefix(redis_url: str, queue: Queue) -> None:
    job = await queue.add("mounted", {"k": 1})
    dash = create_app(redis_url, queues=[queue.name])

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    outer = Starlette(routes=[Route("/", home), Mount("/admin/queues", app=dash)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as c:
        assert (await c.get("/")).text == "host app"
        page = await c.get("/admin/queues/")
        assert page.status_code == 200
        assert 'href="/admin/queues/static/app.css"' in page.text
        assert f'href="/admin/queues/queues/{queue.name}"' in page.text
        assert "Path=/admin/queues" in page.headers["set-cookie"]
        assert (await c.get("/admin/queues/static/htmx.min.js")).status_code == 200
        job_page = await c.get(f"/admin/queues/queues/{queue.name}/jobs/{job.id}")
        assert job_page.status_code == 200
        assert f'hx-post="/admin/queues/api/queues/{queue.name}' in job_page.text
        api = await c.get(f"/admin/queues/api/queues/{queue.name}/jobs/{job.id}")
        assert api.json()["data"] == {"k": 1}
        spec = (await c.get("/admin/queues/api/openapi.json")).json()
        assert spec["servers"] == [{"url": "/admin/queues"}]
        csrf = c.cookies["minique_csrf"]
        r = await c.post(f"/admin/queues/api/queues/{queue.name}/pause", headers={"x-csrf-token": csrf})
        assert r.status_code == 200 and await queue.is_paused()
        metrics = await c.get("/admin/queues/metrics")
        assert "minique_queue_jobs" in metrics.text
    await dash.state.dashboard.redis.aclose()


def test_a_token_in_a_url_never_reaches_the_access_log(redis_url: str) -> None:
    """The real command, with uvicorn's access log: someone pastes ?token=... anyway."""
    import os
    import subprocess
    import sys
    import time

    from helpers import ROOT

    from minique.server import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINIQUE_DASHBOARD_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "minique", "dashboard", "--url", redis_url,
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/queues?token={TOKEN}&x=1", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "dashboard did not start"
                time.sleep(0.05)
        assert r.status_code == 401
        httpx.get(f"http://127.0.0.1:{port}/queues/q?state=failed&token={TOKEN}", timeout=2)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    text = out.decode(errors="replace")
    assert "token=***" in text, text  # the request was logged...
    assert TOKEN not in text  # ...without the credential


@pytest.mark.parametrize(("args", "expected"), [
    (["--url", "http://user:hunter2@127.0.0.1:6379/0"], "must start with redis://"),
    (["--url", "127.0.0.1:6379"], "no scheme"),
    (["--url", "redis://127.0.0.1:6379/x"], "DB number"),
    (["--prefix", "a b"], "whitespace"),
    (["--queue", "{bad}"], "braces"),
])
def test_cli_checks_url_prefix_and_queues_like_every_command(
        monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str) -> None:
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.delenv("MINIQUE_REDIS_URL", raising=False)
    result = CliRunner().invoke(dashboard_command, args)
    assert result.exit_code == 1 and calls == []
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "hunter2" not in result.output


async def test_a_post_without_origin_needs_the_token_and_a_same_origin_referer(
        redis_url: str, queue: Queue) -> None:
    """Without an Origin header (a client that sends none), a POST is accepted only with
    the CSRF token, and a Referer, when sent, must be the dashboard's own origin."""
    await queue.add("x", None)
    app = create_app(redis_url, queues=[queue.name])
    pause = f"/api/queues/{queue.name}/pause"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dash.test") as c:
        await c.get("/")
        token = c.cookies["minique_csrf"]
        for headers in ({}, {"referer": "http://dash.test/"},  # no token
                        {"x-csrf-token": token, "referer": "https://evil.example/page"},
                        {"x-csrf-token": token, "referer": "http://dash.test.evil.example/"},
                        {"x-csrf-token": token, "sec-fetch-site": "same-site"}):
            r = await c.post(pause, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "csrf", headers
        assert not await queue.is_paused()
        ok = await c.post(pause, headers={"x-csrf-token": token,
                                          "referer": f"http://dash.test/queues/{queue.name}",
                                          "sec-fetch-site": "same-origin"})
        assert ok.status_code == 200 and await queue.is_paused()
        ok = await c.post(f"/api/queues/{queue.name}/resume", headers={"x-csrf-token": token})
        assert ok.status_code == 200 and not await queue.is_paused()
    await app.state.dashboard.redis.aclose()
