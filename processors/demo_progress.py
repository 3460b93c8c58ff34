"""Live progress bars for the demo: one line per job, read from Redis as the worker saves it.

On a terminal the lines are redrawn in place; otherwise (CI, a pipe) a line is printed
whenever a job's state or progress changes, so the log still tells the story.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from minique import Job

WIDTH = 30
FINISHED = ("completed", "failed")


@dataclass
class Tracked:
    label: str
    job: Job
    state: str = "waiting"
    progress: float = 0.0
    reason: str | None = None
    shown: tuple[str, float] | None = field(default=None)


class ProgressBoard:
    def __init__(self, out: TextIO = sys.stdout, live: bool | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.rows: list[Tracked] = []
        self._drawn = 0

    def track(self, label: str, job: Job) -> None:
        self.rows.append(Tracked(label, job))

    @property
    def done(self) -> bool:
        return all(r.state in FINISHED for r in self.rows)

    @property
    def failed(self) -> list[Tracked]:
        return [r for r in self.rows if r.state == "failed"]

    async def refresh(self) -> None:
        for row in self.rows:
            if row.state in FINISHED:
                continue
            fresh = await row.job.queue.get_job(row.job.id)
            if fresh is None:  # removed by retention: it had finished
                row.state = "completed"
                continue
            row.state = fresh.state or "unknown"
            progress = fresh.progress
            if isinstance(progress, int | float):
                row.progress = float(progress)
            if row.state == "completed":
                row.progress = 100.0
            row.reason = fresh.failed_reason
            if row.state in ("waiting", "delayed") and fresh.attempts_started > fresh.attempts_made:
                # It ran, and went back without using an attempt (Delayed, a busy account's
                # GroupRateLimited): the same job, not a second one.
                row.state = f"{row.state} again (put back, no attempt used)"
                continue
            if row.state == "waiting":
                # Amazon said 429: the job is back in the queue, which waits out the delay.
                ttl = await row.job.queue.get_rate_limit_ttl()
                if ttl > 0:
                    row.state = f"waiting (rate limited, {ttl:.0f}s)"

    def line(self, row: Tracked) -> str:
        filled = round(WIDTH * row.progress / 100)
        bar = "#" * filled + "." * (WIDTH - filled)
        note = f"  {row.reason}" if row.state == "failed" and row.reason else ""
        return f"  {row.label:<34} [{bar}] {row.progress:5.1f}%  {row.state}{note}"

    def render(self) -> None:
        if self.live:
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F")  # back to the first line of the board
            for row in self.rows:
                self.out.write("\x1b[2K" + self.line(row) + "\n")
            self._drawn = len(self.rows)
        else:
            for row in self.rows:
                key = (row.state, row.progress)
                if key != row.shown:
                    row.shown = key
                    self.out.write(self.line(row) + "\n")
        self.out.flush()

    async def follow(self, timeout: float, interval: float = 0.1) -> bool:
        """Redraws until every tracked job has finished; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            await self.refresh()
            self.render()
            if self.done:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)
