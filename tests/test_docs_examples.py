"""The guides' and tutorials' examples run as printed, and what they say the code does is
what it does (the README's Quick start: tests/test_readme_examples.py).

A snippet is found by its first line, so an edit that drops it fails here rather than
leaving it untested. Snippets with top-level ``await`` run as they would in an asyncio
REPL (``python -m asyncio``), in one namespace per page, against the suite's server."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from minique import Job, Queue, Registry, Worker
from minique.events import EVENT_NAMES

pytest_plugins = ["pytester"]

DOCS = ROOT / "docs"
ASYNC_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def block(page: str, first_line: str) -> str:
    """The ```python block of ``page`` whose first line starts with ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"{page}: {len(found)} python blocks start with {first_line!r}"
    return str(found[0])


async def run(code: str, ns: dict[str, Any], where: str) -> None:
    """Runs ``code`` in ``ns`` as an asyncio REPL would: top-level ``await`` allowed."""
    result = eval(compile(code, where, "exec", flags=ASYNC_FLAGS), ns)
    if asyncio.iscoroutine(result):
        await result


def commented(code: str, line_start: str) -> Any:
    """The value a snippet's comment shows for its line starting with ``line_start``:
    ``x = await f()   # {'a': 1}`` -> {'a': 1}."""
    line = next(ln for ln in code.splitlines() if ln.startswith(line_start))
    return ast.literal_eval(line.split("#", 1)[1].strip())


def test_every_event_the_scripts_emit_is_named_and_documented() -> None:
    lua = "\n".join(p.read_text() for p in (ROOT / "minique" / "lua").rglob("*.lua"))
    emitted = set(re.findall(r"emit\('ev', '([a-z-]+)'", lua))
    emitted |= set(re.findall(r"emit_batched\('([a-z-]+)'", lua))
    assert {"added", "completed", "group-paused"} <= emitted  # the patterns find them
    assert emitted <= EVENT_NAMES, emitted - EVENT_NAMES
    # The guide names each in backticks, alone or in a list: `paused, resumed, drained`.
    guide = (DOCS / "guide" / "events.md").read_text()
    documented = {name.strip() for span in re.findall(r"`([^`]+)`", guide)
                  for name in span.split(",")}
    assert documented >= EVENT_NAMES, EVENT_NAMES - documented


async def test_the_first_queue_tutorial_runs(redis_url: str) -> None:
    page = "tutorials/first-queue.md"
    default_url = "redis://127.0.0.1:6379/0"
    ns: dict[str, Any] = {"__name__": "first_queue"}
    await run(block(page, "# app/jobs.py"), ns, "app/jobs.py")
    add = block(page, "import asyncio")
    assert default_url in add
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", add.replace(default_url, redis_url)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    queue = Queue("tutorial", url=redis_url)
    try:
        assert done.returncode == 0, done.stderr
        job_id, state = done.stdout.split()  # "e.g. 1 waiting"
        assert job_id.isdigit() and state == "waiting", done.stdout
        worker_code = block(page, "from minique import Worker")
        assert "await worker.run()" in worker_code and default_url in worker_code
        # The page's app/jobs.py ran in ns above: it is no module the test could import.
        worker_code = worker_code.replace("from app.jobs import registry\n", "")
        # worker.run() returns only at close(), so the test runs it in a task of its own.
        ns["asyncio"] = asyncio
        await run(worker_code.replace(default_url, redis_url).replace(
            "await worker.run()", "task = asyncio.create_task(worker.run())"), ns, "worker")
        try:
            wait = block(page, "from minique import Queue")
            assert 'get_job("1")' in wait
            await run(wait.replace(default_url, redis_url).replace(
                'get_job("1")', f'get_job("{job_id}")'), ns, "wait")
            assert ns["result"] == commented(wait, "result =")
            assert ns["logs"] == commented(wait, "logs =")
            assert ns["progress"] == commented(wait, "progress =")
            await ns["queue"].close()
            # Step 5: the failing job, retried after its backoff, then failed for good.
            ns["queue"] = queue
            fail = block(page, "from minique import JobFailed")
            await run(fail, ns, "fail")
            assert ns["reason"] == commented(fail, "    reason =")
            assert ns["attempts"] == commented(fail, "attempts =")
        finally:
            await ns["worker"].close()
            await ns["task"]
    finally:
        await queue.obliterate(force=True)
        await queue.close()


async def test_the_events_guide_follows_one_jobs_progress(redis_url: str) -> None:
    page = "guide/events.md"
    default_url = "redis://127.0.0.1:6379/0"
    code = block(page, "from minique import Queue, QueueEvents")
    assert default_url in code
    registry = Registry()

    @registry.processor("emails", name="welcome")
    async def welcome(job: Job) -> str:
        for pct in (25, 50, 100):
            await job.update_progress(pct)
        return "sent"

    worker = Worker("emails", registry, url=redis_url)
    task = asyncio.create_task(worker.run(handle_signals=False))
    ns: dict[str, Any] = {}
    try:
        await asyncio.wait_for(run(code.replace(default_url, redis_url), ns, "events"), 30)
        assert ns["seen"] == [25, 50, 100]
        assert ns["event"].name == "completed" and ns["event"].return_value == "sent"
    finally:
        await worker.close()
        await task
        await ns["queue"].obliterate(force=True)
        await ns["queue"].close()


def test_the_testing_guide_example_runs_as_a_users_tests(
        pytester: pytest.Pytester, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    page = "guide/testing.md"
    monkeypatch.setenv("MINIQUE_TEST_REDIS_URL", redis_url)
    # The configuration the guide asks for: the plugin, and pytest-asyncio's auto mode.
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(block(page, "pytest_plugins"))
    app = Path(pytester.path, "app")
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "jobs.py").write_text(block(page, "# app/jobs.py"))
    tests = Path(pytester.path, "tests")
    tests.mkdir()
    (tests / "test_jobs.py").write_text(block(page, "# tests/test_jobs.py"))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
