"""The README's examples: the Quick start runs as pasted, and no example puts jobs on a queue
of the Amazon application (whose worker would fail them: "no processor for job ...")."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

from minique import Queue
from processors.queues import QueueName

README = (ROOT / "README.md").read_text()
# The README is the landing page; the reference, with most examples, is the docs site.
DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md"))
                 if p.name != "application.md")
APPLICATION = (ROOT / "docs" / "application.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README + DOCS, re.S)
# A queue named by a string literal: Queue("x"), Worker("x"), SyncQueue("x"),
# QueueEvents("x") or @registry.processor("x").
QUEUE_LITERAL = re.compile(r"\b(?:Queue|Worker|SyncQueue|QueueEvents|processor)\(\s*\"([^\"]+)\"")


def quick_start() -> str:
    section = README.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_no_example_uses_a_queue_of_the_amazon_application() -> None:
    named = {name for block in PYTHON_BLOCKS for name in QUEUE_LITERAL.findall(block)}
    assert "emails" in named  # the pattern finds the examples' queues
    assert not named & {q.value for q in QueueName}, named


async def test_the_quick_start_runs_as_pasted(redis_url: str) -> None:
    code = quick_start()
    assert code.count("redis://127.0.0.1:6379/0") == 2
    expected = re.search(r"print\(.*\)\s+# (.*)", code).group(1)  # type: ignore[union-attr]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code.replace("redis://127.0.0.1:6379/0", redis_url)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected
    finally:
        for name in set(QUEUE_LITERAL.findall(code)):
            async with Queue(name, url=redis_url) as q:
                await q.obliterate(force=True)


@pytest.mark.parametrize("name", [q.value for q in QueueName])
def test_the_application_queues_are_what_the_check_knows(name: str) -> None:
    # The Amazon application's queues appear in its page's table; were they renamed, the
    # collision check above would silently compare against stale names.
    assert f"| `{name}` |" in APPLICATION
