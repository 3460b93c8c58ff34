"""`minique worker` and the Worker behind it: refusing what cannot work (a queue without a
processor, bad options), start-up on a Redis that is not there (one line per attempt with
backoff, or --fail-fast), the cancel listener's backoff, and --burst. Real worker processes
where the command line is the point."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from helpers import ROOT, wait_until
from redis.exceptions import ConnectionError as RedisConnectionError

from minique import Queue, Worker
from minique.cli import main
from minique.redis_problems import RedisUnavailable, where
from minique.server import RedisServer, free_port


def worker_command(url: str, *args: str, log_level: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "minique", "--log-level", log_level, "worker",
            "tests.procs:registry", "--queue", "procs", "--url", url, "--block-timeout", "1", *args]


def spawn(cmd: list[str], procs: list[Any], stderr: Path | None = None,
          new_session: bool = False) -> subprocess.Popen[bytes]:
    err = stderr.open("wb") if stderr else subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=err, start_new_session=new_session)
    procs.append(proc)
    return proc


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), (err or b"").decode()


# ----- refusing what cannot work ------------------------------------------------------------

def test_worker_refuses_a_queue_its_registry_has_no_processor_for(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["worker", "tests.procs:registry", "--queue", "procs",
                                       "--queue", "other", "--url", redis_url])
    assert result.exit_code == 2
    assert result.stderr == ("error: tests.procs:registry has no processor for queue(s) "
                             "'other' (--queue); it serves: procs\n")


@pytest.mark.parametrize(("option", "value"), [
    ("--concurrency", "0"), ("--processes", "0"), ("--cpu-processes", "-1"), ("--lock-duration", "0"),
    ("--stalled-interval", "-1"), ("--shutdown-timeout", "0"), ("--block-timeout", "0"),
    ("--limiter-max", "-1"), ("--limiter-duration", "0"), ("--lock-renew-time", "0"),
    ("--heartbeat-interval", "0"), ("--sweep-interval", "0"), ("--metrics-port", "0"),
    ("--max-stalled-count", "-1"), ("--concurrency", "many")])
def test_worker_options_out_of_range_are_option_errors(redis_url: str, option: str, value: str) -> None:
    result = CliRunner().invoke(main, ["worker", "tests.procs:registry", option, value,
                                       "--url", redis_url])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.output


def test_metrics_ports_past_65535_are_refused_before_any_worker_starts(redis_url: str) -> None:
    """Worker k of --processes serves on --metrics-port + k: 65535 with 2 processes used to
    start the workers, and the second failed to bind port 65536 after it had taken jobs."""
    result = CliRunner().invoke(main, ["worker", "tests.procs:registry", "--metrics-port",
                                       "65535", "--processes", "2", "--url", redis_url])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --metrics-port" in result.stderr and "65536" in result.stderr
    assert "Traceback" not in result.output


_packages = itertools.count()


def _broken_package(root: Path, body: str) -> str:
    """A package under ``root`` whose ``jobs`` module runs ``body`` at import. Its name is
    new to this interpreter: the package itself stays imported (sys.modules) after a test."""
    name = f"broken_{next(_packages)}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "jobs.py").write_text(body)
    return name


@pytest.mark.parametrize(("body", "expected"), [
    ("x = 1\ny = = 2\n", "SyntaxError: invalid syntax (jobs.py, line 2)"),
    ("import os\nregistry = undefined_name\n",
     "NameError: name 'undefined_name' is not defined (jobs.py, line 2)")])
def test_a_target_that_fails_to_import_is_one_error_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        body: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)  # the command imports from the current directory
    package = _broken_package(tmp_path, body)
    caplog.set_level(logging.DEBUG, "minique.cli")
    result = CliRunner().invoke(main, ["worker", f"{package}.jobs:registry", "--queue", "q",
                                       "--url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    # One line, as the workers guide says (click's usage lines came first: four lines).
    assert result.stderr == f"error: cannot import '{package}.jobs': {expected}\n"
    assert "Traceback" not in result.output
    # The whole traceback is for --log-level DEBUG.
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert debug and f"{package}.jobs" in debug[0].getMessage()


def test_the_worker_takes_log_level_after_its_name_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`minique worker ... --log-level debug` was "No such option" (a newcomer run): the
    option belonged to `minique` alone."""
    monkeypatch.chdir(tmp_path)
    package = _broken_package(tmp_path, "registry = undefined_name\n")
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # restored after the test
    result = CliRunner().invoke(main, ["worker", f"{package}.jobs:registry", "--log-level",
                                       "debug", "--url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 2 and "No such option" not in result.output, result.output
    assert root.level == logging.DEBUG


def test_every_worker_option_has_a_help_text() -> None:
    worker = main.commands["worker"]
    assert [p.name for p in worker.params if isinstance(p, click.Option) and not p.help] == []
    helps = {p.name: p.help or "" for p in worker.params}
    for name in ("block_timeout", "heartbeat_interval"):
        assert "(s)" in helps[name], name


# ----- start-up when Redis is not there -----------------------------------------------------

async def test_worker_waits_for_redis_with_backoff_then_runs(tmp_path: Path, procs: list[Any]) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "worker.log"
    worker = spawn(worker_command(url, "--prefix", "late"), procs, stderr=log)
    refused = f"minique worker: cannot connect to Redis at 127.0.0.1:{port} (connection refused)"
    await wait_until(lambda: f"{refused}; retrying in 2s" in log.read_text(), timeout=30,
                     message="two attempts logged")
    with RedisServer(port=port) as server:
        q = Queue("procs", url=server.url, prefix="late")
        job = await q.add("stamp_noop")
        await wait_until(lambda: _completed(q, job.id), timeout=60, message="job completed")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        await q.close()
    lines = log.read_text().splitlines()
    answered = next(i for i, line in enumerate(lines) if "answers now" in line)
    before = lines[:answered]
    # Only the one kind of line while waiting, each naming its next wait, which grows.
    assert before and all(refused in line for line in before), before
    waits = [line.rsplit("retrying in ", 1)[1] for line in before]
    assert waits[:2] == ["1s", "2s"]
    assert not any("started on queue" in line for line in before)
    assert any("started on queue procs" in line for line in lines[answered:])


async def _completed(q: Queue, job_id: str) -> bool:
    job = await q.get_job(job_id)
    return job is not None and job.state == "completed"


def test_fail_fast_exits_with_one_line(procs: list[Any]) -> None:
    port = free_port()
    code, out, err = finish(spawn(worker_command(f"redis://127.0.0.1:{port}/0", "--fail-fast"), procs))
    assert code == 1 and out == ""
    assert err == f"error: cannot connect to Redis at 127.0.0.1:{port} (connection refused)\n"


@pytest.mark.parametrize("extra", [[], ["--processes", "2"]])
def test_burst_exits_with_one_line_when_redis_is_not_there(procs: list[Any], extra: list[str]) -> None:
    # A script or CI job must not hang on a Redis that is not there: --burst is --fail-fast.
    port = free_port()
    proc = spawn(worker_command(f"redis://127.0.0.1:{port}/0", "--burst", *extra), procs,
                 new_session=True)
    try:
        code, out, err = finish(proc, timeout=20)
    finally:  # a supervisor's children too, whatever happened
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 1 and out == ""
    assert err == f"error: cannot connect to Redis at 127.0.0.1:{port} (connection refused)\n"


def test_a_db_that_does_not_exist_stops_the_worker_at_once(redis_url: str, procs: list[Any]) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/99"
    code, _, err = finish(spawn(worker_command(url), procs))
    assert code == 1
    assert err.splitlines() == [f"error: cannot use Redis at {url.split('//')[1]}: DB 99 does not "
                                "exist on that server (DB index is out of range)"]


def test_a_bad_url_stops_the_worker_with_one_line(procs: list[Any]) -> None:
    code, _, err = finish(spawn(worker_command("http://127.0.0.1:6379"), procs))
    assert code == 1 and err.startswith("error: invalid Redis URL") and err.count("\n") == 1


async def test_sigint_while_waiting_for_redis_exits_cleanly(tmp_path: Path, procs: list[Any]) -> None:
    log = tmp_path / "worker.log"
    worker = spawn(worker_command(f"redis://127.0.0.1:{free_port()}/0"), procs, stderr=log)
    await wait_until(lambda: "retrying in" in log.read_text(), timeout=30, message="waiting")
    worker.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(worker.wait, 30) == 0
    assert "Traceback" not in log.read_text()


async def test_worker_fail_fast_raises_redis_unavailable() -> None:
    worker = Worker("q", lambda job: None, url=f"redis://127.0.0.1:{free_port()}/0", fail_fast=True)
    with pytest.raises(RedisUnavailable, match="connection refused"):
        await worker.run()


async def test_a_burst_worker_raises_when_redis_is_not_there() -> None:
    """Burst mode is for scripts and CI: a Redis that does not answer at start is an error,
    as with the CLI's --burst, unless fail_fast=False asks to wait for it."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailable, match="connection refused"):
        await asyncio.wait_for(Worker("q", lambda job: None, url=url, burst=True).run(), 30)
    assert Worker("q", lambda job: None, url=url, burst=True, fail_fast=False).fail_fast is False
    assert Worker("q", lambda job: None, url=url).fail_fast is False


async def test_worker_closed_while_waiting_for_redis_returns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "minique.worker")
    worker = Worker("q", lambda job: None, url=f"redis://127.0.0.1:{free_port()}/0")
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: "cannot connect to Redis" in caplog.text, timeout=30, message="waiting")
    await asyncio.wait_for(worker.close(), 10)
    await asyncio.wait_for(task, 10)


class _FlakyPubSub:
    """Subscribing fails while ``broken`` is true; reading raises once ``read_fails`` says."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.subscribed = False

    async def subscribe(self, *_channels: str) -> None:
        if self.state["broken"]:
            raise RedisConnectionError("Connection refused")
        self.subscribed = True

    async def get_message(self, **_kw: Any) -> None:
        self.state["reads"] += 1
        if self.state["reads"] > 1:
            raise RedisConnectionError("Connection reset by peer")

    async def aclose(self) -> None:
        pass


async def test_cancel_listener_backs_off_while_redis_is_away(redis_url: str) -> None:
    worker = Worker("q", lambda job: None, url=redis_url)
    state: dict[str, Any] = {"broken": True, "reads": 0}
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 7:
            state["broken"] = False  # Redis is back: one good read resets the backoff
        if len(pauses) == 8:
            worker._stop.set()

    real_blocking = worker._blocking
    worker._pause = pause  # type: ignore[method-assign]
    worker._blocking = type("B", (), {"pubsub": lambda self: _FlakyPubSub(state)})()
    try:
        await asyncio.wait_for(worker._cancel_listener(_FlakyPubSub(state)), 10)
    finally:
        await worker.redis.aclose()
        await real_blocking.aclose()
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 1]


# ----- --burst ------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def procs_queue(url: str, prefix: str) -> AsyncIterator[Queue]:
    """The registry's queue under a prefix of the test's own, empty before and after."""
    q = Queue("procs", url=url, prefix=prefix)
    await q.obliterate(force=True)
    try:
        yield q
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_burst_runs_what_is_waiting_and_exits(redis_url: str, procs: list[Any]) -> None:
    async with procs_queue(redis_url, "burst") as q:
        await q.add_bulk([("stamp_noop", i) for i in range(20)])
        later = await q.add("stamp_noop", delay=3600)  # not due: a burst worker leaves it
        code, out, _ = await asyncio.to_thread(
            finish, spawn(worker_command(redis_url, "--prefix", "burst", "--burst"), procs))
        assert code == 0
        done = re.fullmatch(r"burst: 20 job\(s\) done, 0 failed; 1 delayed \(next due in (\d+) s\) "
                            r"left for later\n", out)
        assert done and 3500 < int(done[1]) <= 3600, out
        stats = await q.get_stats()
        assert (stats["waiting"], stats["active"], stats["completed"], stats["delayed"]) == (0, 0, 20, 1)
        assert await q.get_state(later.id) == "delayed"


async def test_burst_on_a_paused_queue_exits_without_taking_jobs(redis_url: str, procs: list[Any]) -> None:
    async with procs_queue(redis_url, "burst-paused") as q:
        await q.add("stamp_noop")
        await q.pause()
        code, out, _ = await asyncio.to_thread(
            finish, spawn(worker_command(redis_url, "--prefix", "burst-paused", "--burst"), procs))
        assert code == 0
        assert out == "burst: 0 job(s) done, 0 failed; 1 waiting (queue paused) left for later\n"
        assert (await q.get_stats())["waiting"] == 1


@pytest.mark.parametrize(("backoff", "due"), [(60, r"\d+"), (8, r"\d\.\d")])
async def test_burst_says_what_it_left_for_later(redis_url: str, procs: list[Any], backoff: int,
                                                 due: str) -> None:
    # The job's first attempt fails here; its retry is not due before the burst ends.
    async with procs_queue(redis_url, "burst-left") as q:
        job = await q.add("echo", {"error": "boom"}, attempts=2, backoff=backoff)
        await q.add("echo", {"value": 1})
        code, out, _ = await asyncio.to_thread(
            finish, spawn(worker_command(redis_url, "--prefix", "burst-left", "--burst"), procs))
        assert code == 0
        done = re.fullmatch(rf"burst: 1 job\(s\) done, 0 failed, 1 attempt\(s\) retried; 1 delayed "
                            rf"\(next due in ({due}) s\) left for later\n", out)
        assert done and backoff - 5 < float(done[1]) <= backoff, out
        assert await q.get_state(job.id) == "delayed"


async def test_burst_with_nothing_left_says_nothing_more(redis_url: str, procs: list[Any]) -> None:
    async with procs_queue(redis_url, "burst-clean") as q:
        await q.add("echo", {"value": 1})
        code, out, _ = await asyncio.to_thread(
            finish, spawn(worker_command(redis_url, "--prefix", "burst-clean", "--burst"), procs))
        assert code == 0 and out == "burst: 1 job(s) done, 0 failed\n"


async def test_burst_with_several_processes_exits_when_all_are_done(
        redis_url: str, procs: list[Any]) -> None:
    async with procs_queue(redis_url, "burst-sup") as q:
        await q.add_bulk([("stamp_noop", i) for i in range(50)])
        code, _, _ = await asyncio.to_thread(
            finish, spawn(worker_command(redis_url, "--prefix", "burst-sup", "--burst", "--processes", "2",
                                         log_level="WARNING"), procs), 120)
        assert code == 0
        assert (await q.get_stats())["completed"] == 50


async def test_burst_worker_waits_for_a_running_job_and_its_retry(queue: Queue, redis_url: str) -> None:
    attempts = 0

    async def flaky(job: Any) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.3)  # other slots find the queue empty meanwhile
        if attempts == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    job = await queue.add("x", 1, attempts=2, backoff=0)
    worker = Worker(queue.name, flaky, url=redis_url, concurrency=5, burst=True, block_timeout=1.0)
    await asyncio.wait_for(worker.run(), 30)
    assert await queue.get_state(job.id) == "completed" and attempts == 2


async def test_burst_worker_on_an_empty_queue_returns(queue: Queue, redis_url: str) -> None:
    worker = Worker(queue.name, lambda job: None, url=redis_url, burst=True, block_timeout=1.0)
    await asyncio.wait_for(worker.run(), 30)
    assert worker.jobs_done == 0


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://h:6379?db=3", "h:6379/3"),  # redis-py takes ?db= over the path
    ("redis://h/1?db=3", "h:6379/3"),
    ("redis://:secret@h:7000/2", "h:7000/2"),
    ("redis://h", "h:6379/0"),
])
def test_messages_name_the_database_redis_py_uses(url: str, shown: str) -> None:
    assert where(url, db=True) == shown


def test_a_child_that_keeps_dying_is_restarted_ever_more_slowly() -> None:
    """A child whose password was rotated away while it ran failed at every start, and the
    supervisor restarted it every second for ever; one that ran a while restarts at once."""
    from minique.cli import RESTART_DELAY_MAX, restart_delay

    waits, previous = [], 0.0
    for _ in range(9):
        previous = restart_delay(previous, lived=0.5)
        waits.append(previous)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert RESTART_DELAY_MAX == 60.0
    assert restart_delay(60.0, lived=30.0) == 0.0  # it had run a while: at once, and anew
    assert restart_delay(0.0, lived=29.0) == 1.0


async def test_a_failed_jobs_stack_trace_under_the_cli_names_only_its_own_error(
        redis_url: str, procs: list[Any]) -> None:
    """`minique worker` ran its loop inside the `except ImportError` of the uvloop lookup:
    every processor's exception was chained to the missing uvloop, and the stack trace
    stored with the failed job (the dashboard's job page) began with "No module named
    'uvloop'"."""
    prefix = f"clitrace{os.getpid()}"
    q = Queue("procs", url=redis_url, prefix=prefix)
    try:
        job = await q.add("echo", {"error": "missing-thing"})
        # As where uvloop is not installed (the demo's set-up installs none).
        cmd = worker_command(redis_url, "--prefix", prefix, "--burst")
        cmd[1:3] = ["-c", "import sys; sys.modules['uvloop'] = None; "
                    "from minique.cli import main; main(prog_name='minique')"]
        proc = spawn(cmd, procs)
        await asyncio.to_thread(proc.wait, 30)
        failed = await q.get_job(job.id)
        assert failed is not None and failed.state == "failed"
        assert "missing-thing" in (failed.stacktrace or "")
        assert "uvloop" not in failed.stacktrace, failed.stacktrace
        assert "During handling of the above exception" not in failed.stacktrace
    finally:
        await q.obliterate(force=True)
        await q.close()


def test_a_file_path_or_a_run_from_inside_the_package_gets_a_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer gave `minique worker app/jobs.py` ("expected MODULE:ATTR") and ran
    `minique worker app.jobs:registry` from inside app/ ("No module named 'app'"): neither
    said what to do."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "jobs.py").write_text("registry = None\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["worker", "app/jobs.py", "--queue", "q"])
    assert result.exit_code == 2
    assert "app.jobs:registry, say, run from the directory that holds app" in result.stderr
    monkeypatch.chdir(tmp_path / "app")
    result = CliRunner().invoke(main, ["worker", "app.jobs:registry", "--queue", "q"])
    assert result.exit_code == 2
    assert "this directory is app/ itself: run the command from the one above" in result.stderr
