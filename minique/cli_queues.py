"""The operator commands of ``minique``: look at queues and act on them.

    minique queues                              # every queue under the prefix, with counts
    minique stats --queue reports               # counts by state (--json)
    minique jobs --queue reports --state failed # id, name, state, attempts, times, reason/value
    minique retry --queue reports [ID...]       # failed jobs back to waiting
    minique pause|resume|drain --queue reports

A queue name that does not exist under the prefix (no jobs, no workers, no schedulers) is
refused with the list of the queues that do, and nothing is written: a misspelling never
creates a phantom queue. ``pause --create`` pauses such a queue all the same (before its
first job: its workers start paused). Reading commands never write at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click

from .cli_common import CliError, prefix_option, printable, run, table, url_option
from .connection import connect
from .discovery import known_queues, queue_exists
from .errors import InvalidJobState, JobCorrupted, JobNotFound
from .job import Job
from .queue import Queue
from .redis_problems import where

COUNTS = ("waiting", "active", "completed", "failed", "delayed", "waiting-children")
VALUE_WIDTH = 100  # characters of a reason or return value shown per job
MAX_PAGE = 100_001  # jobs one ``jobs`` command lists (Queue.get_job_ids' limit)
MAX_RANK = 10**12  # ranks past this are past any list (Redis refuses numbers past int64)


async def _missing_queue(redis: Any, name: str, prefix: str, url: str) -> CliError:
    names = (await known_queues(redis, prefix)).get(prefix, [])
    # Which server and DB were searched: the wrong DB (the default URL's 0) is a likely cause.
    head = (f"no queue {name!r} under prefix {prefix!r} on Redis {where(url, db=True)} "
            "(no jobs, no workers, no schedulers)")
    if names:
        return CliError(f"{head}; known queues: {', '.join(names)}")
    return CliError(f"{head}; {await _no_queues_hint(redis, prefix)}")


async def _no_queues_hint(redis: Any, prefix: str, url: str | None = None) -> str:
    """``there are no queues under prefix 'x'`` (``on Redis host:port/db`` when given the
    ``url``), plus the prefixes that do have queues."""
    others = [p for p in await known_queues(redis, None) if p != prefix]
    hint = f"there are no queues under prefix {prefix!r}"
    if url is not None:
        hint += f" on Redis {where(url, db=True)}"
    if others:
        hint += " (queues exist under " + ", ".join(f"--prefix {p}" for p in others) + ")"
    return hint


async def open_queue(name: str, url: str, prefix: str, create: bool = False) -> Queue:
    """The queue ``name``, or CliError naming the known queues if it does not exist (unless
    ``create``)."""
    try:
        q = Queue(name, url=url, prefix=prefix)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        if not create and not await queue_exists(q.redis, q.keys):
            raise await _missing_queue(q.redis, name, prefix, url)
    except BaseException:
        await q.close()
        raise
    return q


def _when(seconds: float | None) -> str:
    return "" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 1] + "…"


def _outcome(job: Job) -> str:
    """The return value (as JSON) of a completed job, else the failure reason (the last
    attempt's, also of a job waiting for its retry), or what the job waits for. A job that
    completed after failed attempts keeps their reason: its value comes first."""
    if job.state == "completed":
        try:
            return json.dumps(job.return_value, default=str)
        except Exception as exc:  # a value that does not decode still gets a row
            return f"<return value does not decode: {exc}>"
    if job.failed_reason:
        return job.failed_reason
    if job.state == "delayed" and job.delay_until:
        return f"due {_when(job.delay_until)}"
    return ""


def _corrupted_row(job_id: str, state: str, error: JobCorrupted) -> dict[str, Any]:
    """A job whose stored fields cannot be decoded: listed with the error (the listing
    failed as a whole on it), so that it can be found and removed."""
    return {"id": job_id, "name": "", "state": f"{state} (corrupted)", "attempts": None,
            "created": None, "started": None, "finished": None, "result": str(error)}


def _job_row(job: Job) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "state": job.state, "attempts": job.attempts_made,
            "created": job.timestamp or None, "started": job.processed_on,
            "finished": job.finished_on, "result": _outcome(job),
            "stacktrace": job.stacktrace or None}


QUEUE_HELP = "The queue's name (`minique stats` lists those that exist)."


@click.command()
@url_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def queues(url: str, prefix: str, as_json: bool) -> None:
    """Every queue under the prefix, with its counts, workers and schedulers."""

    async def go() -> list[dict[str, Any]]:
        redis = connect(url)
        try:
            names = (await known_queues(redis, prefix)).get(prefix, [])
            if not names and not as_json:
                click.echo(await _no_queues_hint(redis, prefix, url), err=True)
            out = []
            for name in names:
                q = Queue(name, connection=redis, prefix=prefix)
                stats = await q.get_stats()
                out.append({"queue": name, **{c: stats[c] for c in COUNTS},
                            "paused": await q.is_paused(), "workers": len(await q.get_workers()),
                            "schedulers": int(await redis.zcard(q.keys.schedulers))})
            return out
        finally:
            await redis.aclose()

    rows = run(go(), url)
    if as_json:
        click.echo(json.dumps(rows))
    elif rows:
        headers = list(rows[0])
        click.echo(table(headers, [[r[h] for h in headers] for r in rows]))


@click.command()
@click.option("--queue", "names", multiple=True,
              help="Queue (repeatable); every queue under the prefix when none is given.")
@url_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(names: tuple[str, ...], url: str, prefix: str, as_json: bool) -> None:
    """Counts by state for each queue (every queue under the prefix, or each --queue)."""

    async def go() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        listed = list(names)
        if not listed:
            redis = connect(url)
            try:
                listed = (await known_queues(redis, prefix)).get(prefix, [])
                if not listed and not as_json:
                    click.echo(await _no_queues_hint(redis, prefix, url), err=True)
            finally:
                await redis.aclose()
        for name in listed:
            q = await open_queue(name, url, prefix)
            try:
                out[name] = {**await q.get_stats(), "paused": await q.is_paused()}
            finally:
                await q.close()
        return out

    result = run(go(), url)
    if as_json:
        click.echo(json.dumps(result))
        return
    if not result:
        return  # (the hint is on stderr)
    cols = [*COUNTS, "total", "paused"]
    click.echo(table(["queue", *cols], [[name, *(row[c] for c in cols)] for name, row in result.items()]))


@click.command()
@click.option("--queue", required=True, help=QUEUE_HELP)
@click.option("--state", default="failed", show_default=True, type=click.Choice(COUNTS))
@click.option("--start", default=0, show_default=True, type=click.IntRange(0, MAX_RANK),
              help="First job (0 = newest finished, or next to run).")
@click.option("--end", default=49, show_default=True, type=click.IntRange(0, MAX_RANK),
              help=f"Last job, inclusive (at most {MAX_PAGE:,} jobs after --start).")
@url_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (times as Unix seconds).")
@click.option("--trace", is_flag=True,
              help="After the table, each listed job's stack trace (of its last failed attempt).")
def jobs(queue: str, state: str, start: int, end: int, url: str, prefix: str, as_json: bool,
         trace: bool) -> None:
    """List the jobs of one state: id, name, state, attempts, created/started/finished (local
    time), and the failure reason or return value; --json adds each job's stack trace."""
    if end < start:
        raise click.BadParameter(f"--end ({end}) must not be before --start ({start})",
                                 param_hint="'--end'")
    if end - start >= MAX_PAGE:
        # Queue.get_job_ids refuses more with a ValueError, which was a traceback here.
        raise click.BadParameter(f"at most {MAX_PAGE:,} jobs at once (--start {start} "
                                 f"--end {end} asks for {end - start + 1:,})", param_hint="'--end'")

    async def go() -> list[dict[str, Any]]:
        q = await open_queue(queue, url, prefix)
        try:
            return [_corrupted_row(job_id, state, job) if isinstance(job, JobCorrupted)
                    else _job_row(job)
                    for job_id, job in await q.get_jobs_or_errors(state, start, end)]
        finally:
            await q.close()

    rows = run(go(), url)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo(f"no {state} jobs in queue {queue!r}", err=True)
        return
    headers = ["id", "name", "state", "attempts", "created", "started", "finished",
               "reason" if state == "failed" else "value" if state == "completed" else "info"]
    click.echo(table(headers, [
        [r["id"], r["name"], r["state"], r["attempts"], _when(r["created"]), _when(r["started"]),
         _when(r["finished"]), _short(r["result"])] for r in rows]))
    if trace:
        for r in rows:
            if r.get("stacktrace"):
                # Line by line: a control character in a trace must not drive the terminal.
                lines = "\n".join(printable(line) for line in r["stacktrace"].splitlines())
                click.echo(f"\n--- job {printable(r['id'])} ({printable(r['name'])}) ---\n{lines}")


@click.command()
@click.option("--queue", required=True, help=QUEUE_HELP)
@click.option("--state", default="failed", show_default=True, type=click.Choice(["failed", "completed"]),
              help="Which finished jobs to retry; given ids must be in this state.")
@click.argument("job_ids", nargs=-1)
@url_option
@prefix_option
def retry(queue: str, state: str, job_ids: tuple[str, ...], url: str, prefix: str) -> None:
    """Send finished jobs back to waiting with fresh attempts: every job of --state, or the
    given ids (each must exist and be in --state; if one is not, none is retried)."""

    async def go() -> int:
        q = await open_queue(queue, url, prefix)
        try:
            if not job_ids:
                return await q.retry_jobs(state)
            problems = []
            for job_id in job_ids:
                actual = await q.get_state(job_id)
                if actual == "unknown":
                    problems.append(f"job {job_id} does not exist")
                elif actual != state:
                    hint = " (use --state completed)" if actual == "completed" else ""
                    problems.append(f"job {job_id} is {actual}, not {state}{hint}")
            if problems:
                raise CliError(f"nothing retried in queue {queue!r}: {'; '.join(problems)}")
            for job_id in job_ids:
                try:
                    await q.retry_job(job_id, state)
                except (JobNotFound, InvalidJobState) as exc:  # changed since the check
                    raise CliError(f"queue {queue!r}: {exc}") from None
            return len(job_ids)
        finally:
            await q.close()

    click.echo(f"retried {run(go(), url)} {state} job(s) in queue {queue!r}")


def _queue_action(name: str, doc: str, action: Callable[[Queue], Awaitable[Any]],
                  said: Callable[[Any], str], creates: bool = False) -> click.Command:
    @click.command(name=name, help=doc)
    @click.option("--queue", required=True, help=QUEUE_HELP)
    @url_option
    @prefix_option
    def command(queue: str, url: str, prefix: str, create: bool = False) -> None:
        async def go() -> Any:
            q = await open_queue(queue, url, prefix, create)
            try:
                return await action(q)
            finally:
                await q.close()

        click.echo(f"{name}: queue {queue!r} {said(run(go(), url))}")

    if creates:
        command = click.option(
            "--create", is_flag=True,
            help="Also a queue that has no keys yet (before its first job): without it, an "
                 "unknown name is refused, so that a misspelling creates nothing.")(command)
    return command


pause = _queue_action("pause", "Stop every worker taking jobs from a queue.", lambda q: q.pause(),
                      lambda _: "paused", creates=True)
resume = _queue_action("resume", "Let workers take jobs from a paused queue again.",
                       lambda q: q.resume(), lambda _: "resumed")
drain = _queue_action("drain", "Remove every waiting job of a queue.", lambda q: q.drain(),
                      lambda n: f"drained ({n} waiting job(s) removed)")

COMMANDS = (queues, stats, jobs, retry, pause, resume, drain)
