"""Waiting for the worker that holds a job ahead (prefetch) to answer a control change.

A held job is waiting to everyone but its holder, which has it in memory. A call that
changes such a job (its data, a scheduler's template, a withdrawal) rewrites the stored job
and asks the holders to hand held jobs back (lua/includes/base.lua, control_changed); it
then waits here until the holder has answered, so that once the call returns the job runs
as it is stored now, as it would if taken one at a time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .queue import Queue

HOLDER_WAIT = 1.0  # s waited for a holding worker's answer beyond what is left of its hold


async def holders_answer(queue: Queue, job_id: bytes | str, token: bytes | str,
                         hold_ms: int) -> None:
    """Waits until the worker holding ``job_id`` under ``token`` has answered: handed it
    back (waiting again, or deleted if it was withdrawn; held again under a new token) or
    started it before it heard (it runs as it was taken, like an active job). ``hold_ms``
    is what was left of the longest hold when the control changed (the script's answer);
    ``token`` is '' for a withdrawn job, which stays 'removed' until its holder answers.
    A holder that does not answer cannot start the job once its hold has run out: this
    returns then, at the latest HOLDER_WAIT seconds after (the stalled check gives the job
    back later). Polls the job's hash every 5 ms: one HMGET per poll, for about a round
    trip of the holder's."""
    key = queue.keys.job(job_id.decode() if isinstance(job_id, bytes) else str(job_id))
    tok = token.encode() if isinstance(token, str) else token
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_ms / 1000.0 + HOLDER_WAIT
    while loop.time() < deadline:
        st, now_tok = await queue.redis.hmget(key, "st", "tok")
        if st != b"removed" and (st != b"held" or now_tok != tok):
            return
        await asyncio.sleep(0.005)
