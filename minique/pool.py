"""Runs CPU-bound sync processors in worker processes, so they cannot hold the GIL and
starve the event loop (and with it the lease renewals) of the worker."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import msgspec

from .job import Job


class JobSnapshot(msgspec.Struct, frozen=True):
    """What a processor running in another process sees of its job (no Redis handle:
    progress and logs are not available there)."""

    id: str
    name: str
    data: Any
    attempts_made: int
    token: str | None


def _run(fn: Callable[[JobSnapshot], Any], snapshot: JobSnapshot) -> Any:
    return fn(snapshot)


class ProcessRunner:
    def __init__(self, processes: int) -> None:
        # "spawn" keeps the children free of the parent's event loop and sockets.
        self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))

    async def run(self, fn: Callable[..., Any], job: Job) -> Any:
        snapshot = JobSnapshot(job.id, job.name, job.data, job.attempts_made, job.token)
        return await asyncio.get_running_loop().run_in_executor(self._pool, _run, fn, snapshot)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
