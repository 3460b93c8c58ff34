"""The README's first command, in its short (CI) mode: on a machine with no Redis running,
on a shared Redis (whose keys it cleans up unless --keep), interrupted with Ctrl-C, and with
--dashboard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from minique.server import free_port
from processors.queues import QueueName

PREFIX = "minique-demo"


def demo_env(redis_url: str) -> dict[str, str]:
    env = {**os.environ, "MINIQUE_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    for suffix in ("SPAPI_ENDPOINT", "ADS_ENDPOINT", "LWA_TOKEN_URL", "ADS_TOKEN_URL"):
        env.pop("AMAZON_" + suffix, None)
    return env


def run_demo(redis_url: str, cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "processors.demo", "--short", *args], cwd=cwd,
                          env=demo_env(redis_url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def start_demo(redis_url: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """In a session of its own, so a test can send Ctrl-C to the whole group as a terminal
    does; with SIGINT's default action, as from a terminal (a test runner started in the
    background may pass on an ignored SIGINT)."""
    return subprocess.Popen([sys.executable, "-m", "processors.demo", "--short", *args], cwd=cwd,
                            env=demo_env(redis_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """stdout up to the first line holding ``marker`` (the demo runs unbuffered)."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        assert time.monotonic() < deadline, f"{marker!r} not printed within {timeout}s"
    raise AssertionError(f"the demo ended without printing {marker!r}: {''.join(seen)}")


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match="{" + PREFIX + ":*"):
        client.delete(key)
    client.close()


def demo_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="{" + PREFIX + ":*"))


def test_demo_short_runs_end_to_end_on_a_private_redis(tmp_path: Path) -> None:
    # A port where nothing answers: the demo must start its own Redis, and say so.
    out = run_demo(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    first = out.splitlines()[0]
    assert first.startswith("redis: a private server started for this run (")
    assert "it stops with the demo" in first
    assert "queue stats" in out and "manual-sync" in out
    for line in out.splitlines():
        if line.lstrip().startswith(("data-sync ", "manual-sync ")) and "%" not in line:
            fields = line.split()
            assert fields[4] == "0", line  # failed column
    reports = [Path(line.strip()) for line in out.splitlines() if line.strip().endswith(".html")]
    # Seller 1 sells in the US and Canada: a report per marketplace.
    assert len(reports) == 3 and all(p.is_file() and p.is_relative_to(tmp_path) for p in reports)
    assert "webhooks received" in out and "0 with a valid signature" not in out
    assert "add --dashboard" in out  # the private Redis is gone afterwards: says how to see it


def test_demo_on_a_shared_redis_removes_its_keys(redis_url: str, shared_redis: redis.Redis,
                                                  tmp_path: Path) -> None:
    shared_redis.set("someone-else:key", "kept")
    out = run_demo(redis_url, tmp_path)
    assert out.splitlines()[0] == (f"redis: the Redis at {redis_url} ($MINIQUE_REDIS_URL); shared, "
                                   f"so the demo keeps to the prefix {PREFIX}")
    assert "removed the demo's " in out and "--keep leaves them" in out
    assert demo_keys(shared_redis) == []
    assert shared_redis.get("someone-else:key") == b"kept"
    shared_redis.delete("someone-else:key")


@pytest.mark.slow  # opt-in (--run-slow): the default run stays under 10 minutes
def test_demo_with_keep_prints_the_exact_dashboard_command(redis_url: str, shared_redis: redis.Redis,
                                                           tmp_path: Path) -> None:
    out = run_demo(redis_url, tmp_path, "--keep")
    assert demo_keys(shared_redis)
    command = out.splitlines()[-1].strip()
    assert command.endswith(f"dashboard --url {redis_url} --prefix {PREFIX}")
    # Run the printed command (on a free port) and ask it for its queues.
    port = free_port()
    argv = command.split()
    if not Path(argv[0]).is_absolute() and argv[0] != sys.executable:
        argv[0] = str(tmp_path / argv[0])
    dashboard = subprocess.Popen([*argv, "--port", str(port)], cwd=tmp_path, env=demo_env(redis_url),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/queues", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the printed dashboard command did not serve"
                time.sleep(0.1)
        assert {q["name"] for q in reply.json()["queues"]} == {q.value for q in QueueName}
    finally:
        dashboard.terminate()
        dashboard.wait(10)


def test_ctrl_c_mid_demo_exits_cleanly_and_cleans_up(redis_url: str, shared_redis: redis.Redis,
                                                     tmp_path: Path) -> None:
    demo = start_demo(redis_url, tmp_path)
    read_until(demo, "syncing")
    os.killpg(demo.pid, signal.SIGINT)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, out + err
    assert err.strip() == "demo interrupted"  # and no traceback
    assert "queue stats" not in out  # it stopped there, rather than run to its end
    assert demo_keys(shared_redis) == []


def test_ctrl_c_mid_demo_on_a_private_redis_exits_cleanly(tmp_path: Path) -> None:
    demo = start_demo(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    read_until(demo, "syncing")
    os.killpg(demo.pid, signal.SIGINT)  # the private server is in the group: it must not die first
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, out + err
    assert err.strip() == "demo interrupted"


@pytest.mark.slow  # opt-in (--run-slow): the default run stays under 10 minutes
def test_demo_dashboard_serves_the_demo_queues_until_ctrl_c(tmp_path: Path) -> None:
    demo = start_demo(f"redis://127.0.0.1:{free_port()}/0", tmp_path, "--dashboard",
                      "--dashboard-port", str(free_port()))
    try:
        line = read_until(demo, "dashboard: http://").splitlines()[-1]
        url = line.split()[1]
        reply = httpx.get(url + "api/queues", timeout=10)
        assert {q["name"] for q in reply.json()["queues"]} == {q.value for q in QueueName}
        os.killpg(demo.pid, signal.SIGINT)
        out, err = demo.communicate(timeout=60)
        assert demo.returncode == 0, out + err
        assert "Traceback" not in err
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)


def test_without_any_redis_the_demo_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by a newcomer run: on a machine with no Redis running and no server binary (a
    venv set up while a redis-server was there, then run where none is), the demo ended in
    a traceback. It says what to install in one line, and exits 1."""
    import minique.server
    from processors import demo

    def none() -> str:
        raise minique.server.ServerNotFound("no Redis server binary: install redis-server")

    monkeypatch.setattr(minique.server, "find_server_binary", none)
    monkeypatch.setenv("MINIQUE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert demo.main(["--short", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["demo: no Redis server binary: install redis-server (or point "
                   "$MINIQUE_REDIS_URL at a Redis that runs)"], err
