"""The worker's life cycle as deployed: the supervisor (--processes N) under a terminal's
Ctrl-C, kill -9 and signals that cross a restart; shutdown edge cases."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import ROOT, start_worker, wait_until

from minique import Queue, Worker
from minique.server import RedisServer, free_port


def start_supervisor(url: str, prefix: str, *args: str, log: Path | None = None
                     ) -> subprocess.Popen[bytes]:
    """``minique worker --processes ...`` in a session of its own, as a terminal runs it:
    a signal to its process group reaches the supervisor and its children alike."""
    cmd = [sys.executable, "-m", "minique", "--log-level", "INFO", "worker",
           "tests.procs:registry", "--queue", "procs", "--url", url, "--prefix", prefix, *args]
    err = open(log, "ab") if log is not None else None  # noqa: SIM115 - closed by the child's end
    try:
        return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stderr=err, start_new_session=True)
    finally:
        if err is not None:
            err.close()


async def effects(q: Queue) -> dict[str, int]:
    raw = await q.redis.hgetall(f"{q.keys.base}:effects")
    return {k.decode(): int(v) for k, v in raw.items()}


async def started(q: Queue, n: int) -> bool:
    return len(await effects(q)) >= n


async def workers(q: Queue, n: int) -> bool:
    return len(await q.get_workers()) >= n


def slot_0_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"started worker 0 \(pid (\d+)\)", log.read_text())]


async def pid_listed(q: Queue, pid: int) -> bool:
    return pid in {w.pid for w in await q.get_workers()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_ctrl_c_on_the_supervisor_lets_the_running_job_finish(
        redis_url: str, procs: list[Any], tmp_path: Path) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole process group: the supervisor and its
    children. The children must count that as one signal (a graceful shutdown), not as the
    terminal's plus the supervisor's forwarded copy, a 'second signal' that exits at once
    and leaves the running job to its lease."""
    q = Queue("procs", url=redis_url, prefix="ctrlc")
    await q.obliterate(force=True)
    job = await q.add("effect", {"sleep": 1.0}, attempts=1)
    log = tmp_path / "sup.log"
    sup = start_supervisor(redis_url, "ctrlc", "--processes", "2", log=log)
    procs.append(sup)
    await wait_until(lambda: started(q, 1), timeout=15, message="job started")
    await wait_until(lambda: workers(q, 2), timeout=15, message="both children started")
    # The terminal's SIGINT reaches the children first (the order is the kernel's; this
    # one is the order that ended the job), then the supervisor, which forwards it.
    for info in await q.get_workers():
        os.kill(info.pid, signal.SIGINT)
    await wait_until(lambda: log.read_text().count("finishing running jobs") == 2, timeout=10,
                     message="the children heard the terminal's SIGINT")
    os.kill(sup.pid, signal.SIGINT)
    assert await asyncio.to_thread(sup.wait, 15) == 0
    done = await q.get_job(job.id)
    assert done is not None, log.read_text()
    assert done.state == "completed", (done.state, log.read_text())
    assert "exiting now" not in log.read_text()
    await q.obliterate(force=True)
    await q.close()


async def test_a_supervisor_killed_with_9_takes_its_children_along_gracefully(
        redis_url: str, procs: list[Any], tmp_path: Path) -> None:
    """kill -9 of the supervisor: its children must not run on as orphans that nothing
    restarts and that a restarted supervisor doubles. They stop as after a SIGTERM: the
    running job finishes first."""
    q = Queue("procs", url=redis_url, prefix="supkill")
    await q.obliterate(force=True)
    job = await q.add("effect", {"sleep": 1.0}, attempts=1)
    sup = start_supervisor(redis_url, "supkill", "--processes", "2", log=tmp_path / "sup.log")
    procs.append(sup)
    await wait_until(lambda: started(q, 1), timeout=15, message="job started")
    await wait_until(lambda: workers(q, 2), timeout=15, message="both children started")
    children = [w.pid for w in await q.get_workers()]
    sup.kill()
    sup.wait(5)
    try:
        await wait_until(lambda: not any(alive(pid) for pid in children), timeout=15,
                         message="the children exited")
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    done = await q.get_job(job.id)
    assert done is not None and done.state == "completed"
    await q.obliterate(force=True)
    await q.close()


async def test_sigterm_while_the_supervisor_restarts_a_child_still_stops_it(
        redis_url: str, procs: list[Any], tmp_path: Path) -> None:
    """A child that keeps dying is restarted after a pause (1 s, then 2 s); a SIGTERM in that pause
    must stop the supervisor, not leave it waiting for a child it starts afterwards and
    never tells to stop."""
    q = Queue("procs", url=redis_url, prefix="suprestart")
    await q.obliterate(force=True)
    log = tmp_path / "sup.log"
    sup = start_supervisor(redis_url, "suprestart", "--processes", "2", log=log)
    procs.append(sup)
    await wait_until(lambda: workers(q, 2), timeout=15, message="two children live")
    victims: list[int] = []
    for restarts in (1, 2):
        # The child of slot 0 (restarted once the second time round): the same slot.
        await wait_until(lambda: slot_0_pids(log)[-1] not in victims, timeout=15,
                         message="slot 0 restarted")
        victims.append(slot_0_pids(log)[-1])
        await wait_until(lambda: pid_listed(q, victims[-1]), timeout=15,
                         message="the child started")
        os.kill(victims[-1], signal.SIGKILL)
        await wait_until(lambda: log.read_text().count("restarting") >= restarts,  # noqa: B023
                         timeout=15, message="restart noticed")
    # The second quick death waits 2 s before its restart (1 s, 2 s, ...): signal it now.
    sup.send_signal(signal.SIGTERM)
    try:
        assert await asyncio.to_thread(sup.wait, 15) == 0
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
    await q.obliterate(force=True)
    await q.close()


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_close_during_a_redis_outage_returns_and_loses_no_job(outage: str) -> None:
    """close() (SIGTERM) while Redis is away (stopped) or frozen (SIGSTOP: the call out
    never gets an answer), with a result still to report: the worker tries for its grace
    again, then stops (BullMQ's close() and Celery's warm shutdown hang for ever there).
    The job is not lost: its lease returns it and it runs again once Redis is back."""
    server = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]).start()
    try:
        q = Queue("q", url=server.url)
        ran: list[str] = []

        async def work(job: Any) -> str:
            ran.append(job.id)
            await asyncio.sleep(0.2)
            return "ok"

        w = Worker("q", work, url=server.url, shutdown_timeout=0.5, lock_duration=1.0)
        task = asyncio.create_task(w.run())
        job = await q.add("x", {})
        await wait_until(lambda: bool(ran), timeout=5, message="job started")
        # The result comes while Redis is away.
        if outage == "stopped":
            server.stop()
        else:
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(0.3)
        async with asyncio.timeout(6):
            await w.close()
            await task
        if outage == "stopped":
            server.start()
        else:
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGCONT)
        again = Worker("q", work, url=server.url, stalled_interval=0.2, lock_duration=1.0)
        second = asyncio.create_task(again.run())
        assert await job.wait_until_finished(timeout=10) == "ok"
        await again.close()
        await second
        await q.close()
    finally:
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.close()


SLOW_START = '''
import os, time
_gate = os.environ.get("MINIQUE_TEST_SLOW_CHILD")
if _gate:
    # A child process starting up (a heavy main module, say): it says so, then waits for
    # the test's go, at most 3 s.
    open(_gate + ".started", "w").close()
    _end = time.monotonic() + 3
    while not os.path.exists(_gate + ".go") and time.monotonic() < _end:
        time.sleep(0.01)
    if not os.path.exists(_gate + ".go"):
        open(_gate + ".timedout", "w").close()
'''


def echo_len(job: Any) -> int:
    return len(job.data["blob"])


async def test_a_large_payload_sent_to_a_starting_cpu_process_leaves_the_loop_free(
        redis_url: str, qname: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """processes=N: a payload larger than a pipe's buffer, sent to a child still starting
    up (importing a heavy main module), used to be written with a blocking write on the
    event loop: the whole worker (lease renewal, replies, cancels) stood still until the
    child read it. The loop must stay free; here it must see the child start and say go."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_START)
    gate = str(tmp_path / "gate")
    began, go, timedout = (Path(gate + end) for end in (".started", ".go", ".timedout"))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{ROOT}")
    monkeypatch.setenv("MINIQUE_TEST_SLOW_CHILD", gate)
    q = Queue(qname, url=redis_url)
    w = Worker(qname, echo_len, url=redis_url, processes=1)
    task = asyncio.create_task(w.run())
    try:
        job = await q.add("x", {"blob": "x" * 1_000_000})
        await wait_until(began.exists, timeout=10,
                         message="the child started")
        go.touch()
        assert await job.wait_until_finished(timeout=10) == 1_000_000
        assert not timedout.exists(), "the loop was blocked: no go in 3 s"
    finally:
        await w.close()
        await task
        await q.obliterate(force=True)
        await q.close()


def test_a_supervisor_whose_children_cannot_log_in_exits_as_one_worker_would(
        procs: list[Any]) -> None:
    """A wrong password stops a single worker at once with one error line; under
    --processes N each child did the same and the supervisor restarted it every second,
    for ever. The supervisor checks Redis as a single worker does, before any child."""
    with RedisServer() as server:
        admin = redis.Redis(port=server.port)
        admin.config_set("requirepass", "secret")
        admin.close()
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        cmd = [sys.executable, "-m", "minique", "worker", "tests.procs:registry", "--queue",
               "procs", "--url", url, "--processes", "2"]
        sup = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stderr=subprocess.PIPE, start_new_session=True)
        procs.append(sup)
        try:
            _, err = sup.communicate(timeout=15)
        finally:
            if sup.poll() is None:
                os.killpg(sup.pid, signal.SIGKILL)
        assert sup.returncode == 1
        assert err.decode().startswith("error: cannot use Redis")
        assert "restarting" not in err.decode()


async def test_a_supervisor_waiting_for_redis_stops_at_a_signal(
        procs: list[Any], tmp_path: Path) -> None:
    """The supervisor's wait for Redis (as a single worker's) ends cleanly at SIGTERM."""
    log = tmp_path / "sup.log"
    sup = start_supervisor(f"redis://127.0.0.1:{free_port()}/0", "wait", "--processes", "2",
                           log=log)
    procs.append(sup)
    await wait_until(lambda: "retrying in" in log.read_text(), timeout=15, message="waiting")
    sup.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(sup.wait, 10) == 0
    assert "Traceback" not in log.read_text() and "started worker" not in log.read_text()


def start_script(code: str) -> subprocess.Popen[bytes]:
    """A script that runs a Worker itself (its own signal handling)."""
    script = ("import asyncio; from minique import Worker; from tests.procs import registry; "
              + code)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("embedded", [False, True])
async def test_a_second_signal_exits_even_while_a_job_holds_the_event_loop(
        redis_url: str, procs: list[Any], tmp_path: Path, embedded: bool) -> None:
    """An async processor stuck in a CPU loop never yields: the signal handlers that run on
    the event loop never ran, so neither SIGTERM nor a second one stopped the worker (only
    kill -9 did). The second signal must exit at once whatever the loop is doing. Both
    handlers: the command's, and Worker.run()'s own (a worker embedded in a script)."""
    prefix = f"spin{int(embedded)}"
    q = Queue("procs", url=redis_url, prefix=prefix)
    await q.obliterate(force=True)
    await q.add("spin", {"seconds": 20})
    if embedded:
        worker = start_script(f"asyncio.run(Worker('procs', registry, url={redis_url!r}, "
                              f"prefix={prefix!r}).run())")
    else:
        worker = start_worker(redis_url, "procs", "--prefix", prefix)
    procs.append(worker)
    await wait_until(lambda: started(q, 1), timeout=15, message="job started")
    worker.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)  # two signals, not one the kernel merged
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 5) == 1
    await q.obliterate(force=True)
    await q.close()


async def test_a_return_value_over_the_servers_bulk_limit_fails_its_job_not_the_worker(
        ) -> None:
    """A Redis whose proto-max-bulk-len is below minique's own bound (256 MB; the server
    allows down to 1 MB) refused the finish call carrying a larger return value and the
    worker sent it again for ever: no result after it was saved, nothing more was taken.
    The job fails with a clear reason; the worker goes on."""
    with RedisServer(extra_args=["--proto-max-bulk-len", "1mb"]) as server:
        q = Queue("q", url=server.url)

        async def work(job: Any) -> str:
            return "x" * job.data["n"]

        w = Worker("q", work, url=server.url)
        task = asyncio.create_task(w.run())
        try:
            big = await q.add("x", {"n": 2_000_000}, attempts=1)
            small = await q.add("x", {"n": 10})
            assert await small.wait_until_finished(timeout=5) == "x" * 10
            failed = await q.get_job(big.id)
            assert failed is not None and failed.state == "failed"
            assert "proto-max-bulk-len" in (failed.failed_reason or "")
        finally:
            await w.close()
            await task
            await q.close()
