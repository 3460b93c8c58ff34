"""The operator commands (`minique queues/stats/jobs/retry/pause/resume/drain`, `--version`):
one-line errors, retry semantics, misspelled queues, and the tables they print. Run in
process with click's CliRunner against the suite's Redis; the worker command is in
tests/test_cli_worker.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from minique import Queue, Worker, __version__
from minique.cli import main
from minique.server import free_port

_prefixes = itertools.count()
OPERATOR_COMMANDS = ["stats", "jobs", "retry", "pause", "resume", "drain"]


@pytest.fixture
def prefix() -> str:
    """A prefix of the test's own, so 'known queues' are only the test's."""
    return f"cli{next(_prefixes)}"


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error_line(result: Result) -> str:
    """The command failed with exactly one line on stderr, ``error: ...``, and no stdout."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def snapshot(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under the prefix with its value: any write shows. Hashes are compared by
    content: a large hash's serialized field order can change without a write (a read
    may take a step of the dict's incremental rehash)."""
    return {key: client.hgetall(key) if client.type(key) == b"hash" else client.dump(key)
            for key in client.scan_iter(match="{" + prefix + ":*")}


def mailer(job: Any) -> dict[str, str]:
    if job.data.get("bounce"):
        raise RuntimeError(f"550 mailbox unavailable: {job.data['to']}")
    return {"sent_to": job.data["to"]}


async def _settle(url: str, prefix: str, queue: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Adds the jobs and runs a burst worker until they are all finished."""
    async with Queue(queue, url=url, prefix=prefix) as q:
        ids = [(await q.add("send", p, attempts=1)).id for p in payloads]
    worker = Worker(queue, mailer, url=url, prefix=prefix, burst=True, block_timeout=1.0)
    await asyncio.wait_for(worker.run(), 30)
    return ids


def settle(url: str, prefix: str, queue: str, payloads: list[dict[str, Any]]) -> list[str]:
    return asyncio.run(_settle(url, prefix, queue, payloads))


async def _add(url: str, prefix: str, queue: str, n: int, **options: Any) -> list[str]:
    async with Queue(queue, url=url, prefix=prefix) as q:
        return [(await q.add("send", {"to": f"u{i}@example.com"}, **options)).id for i in range(n)]


def add(url: str, prefix: str, queue: str, n: int = 1, **options: Any) -> list[str]:
    return asyncio.run(_add(url, prefix, queue, n, **options))


# ----- one line for every Redis or URL problem --------------------------------------------

def _problem_urls(redis_url: str) -> dict[str, tuple[str, str]]:
    port = free_port()
    return {
        "refused": (f"redis://127.0.0.1:{port}/0",
                    f"error: cannot connect to Redis at 127.0.0.1:{port} (connection refused)"),
        "unknown host": ("redis://no-such-host.invalid:6379/0",
                         "error: cannot connect to Redis at no-such-host.invalid:6379 (unknown host)"),
        "http": ("http://127.0.0.1:6379/0", "error: invalid Redis URL 'http://127.0.0.1:6379/0': it "
                 "must start with redis://, rediss://, unix:// or redis+cluster:// (got 'http://')"),
        "no scheme": ("127.0.0.1:6379", "error: invalid Redis URL '127.0.0.1:6379': it must start "
                      "with redis://, rediss://, unix:// or redis+cluster:// (got no scheme)"),
        "db 99": (redis_url.rsplit("/", 1)[0] + "/99", "DB 99 does not exist on that server"),
        "db not a number": (redis_url.rsplit("/", 1)[0] + "/abc", "the path is the DB number"),
    }


@pytest.mark.parametrize("problem", ["refused", "unknown host", "http", "no scheme", "db 99",
                                     "db not a number"])
@pytest.mark.parametrize("command", [*OPERATOR_COMMANDS, "queues"])
def test_every_redis_or_url_problem_is_one_line(redis_url: str, command: str, problem: str) -> None:
    url, expected = _problem_urls(redis_url)[problem]
    args = [command, "--url", url] + ([] if command == "queues" else ["--queue", "emails"])
    line = one_error_line(CliRunner().invoke(main, args))
    assert expected in line


def test_a_password_in_the_url_is_never_printed(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["stats", "--queue", "q", "--url",
                                       "http://user:hunter2@127.0.0.1:6379/0"])
    assert "hunter2" not in one_error_line(result)
    result = CliRunner().invoke(main, ["stats", "--queue", "q", "--url",
                                       f"redis://user:hunter2@127.0.0.1:{free_port()}/0"])
    assert "hunter2" not in one_error_line(result)


def test_the_url_comes_from_the_environment_and_is_checked_too() -> None:
    result = CliRunner().invoke(main, ["queues"], env={"MINIQUE_REDIS_URL": "localhost:6379"})
    assert "got no scheme" in one_error_line(result)


# ----- misspelled queues, and reading without writing -------------------------------------

@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_a_misspelled_queue_is_refused_with_the_known_queues_and_nothing_is_written(
        redis_url: str, prefix: str, sync_redis: redis.Redis, command: str) -> None:
    add(redis_url, prefix, "emails")
    add(redis_url, prefix, "reports")
    before = snapshot(sync_redis, prefix)
    line = one_error_line(cli(command, "--queue", "emial", "--url", redis_url, "--prefix", prefix))
    at = redis_url.split("//", 1)[1]
    assert line == (f"error: no queue 'emial' under prefix '{prefix}' on Redis {at} (no jobs, no "
                    "workers, no schedulers); known queues: emails, reports")
    assert snapshot(sync_redis, prefix) == before
    listed = json.loads(cli("queues", "--json", "--url", redis_url, "--prefix", prefix).stdout)
    assert [row["queue"] for row in listed] == ["emails", "reports"]  # no phantom queue


@pytest.mark.parametrize("command", [*OPERATOR_COMMANDS, "queues"])
def test_no_queue_names_the_redis_and_db_it_looked_at_without_the_password(
        redis_url: str, prefix: str, command: str) -> None:
    # The queue is in DB 1; the command looks in DB 0 (the default URL's): the line must
    # say so, since a wrong DB is the likely cause.
    add(redis_url.rsplit("/", 1)[0] + "/1", prefix, "tutorial")
    host = redis_url.split("//", 1)[1].rsplit("/", 1)[0]
    url = f"redis://default:hunter2@{host}/0"  # any password passes for a nopass user
    args = [command, "--prefix", prefix] + ([] if command == "queues" else ["--queue", "tutorial"])
    result = CliRunner().invoke(main, args, env={"MINIQUE_REDIS_URL": url})
    if command == "queues":  # not an error: an empty listing, and the reason on stderr
        assert result.exit_code == 0 and result.stdout == ""
        line = result.stderr.strip()
    else:
        line = one_error_line(result)
    assert f" on Redis {host}/0" in line, line
    assert "hunter2" not in result.output


def test_an_empty_prefix_points_at_the_prefixes_that_have_queues(redis_url: str, prefix: str) -> None:
    add(redis_url, prefix, "emails")
    line = one_error_line(cli("stats", "--queue", "emails", "--url", redis_url,
                              "--prefix", prefix + "-typo"))
    assert f"there are no queues under prefix '{prefix}-typo'" in line
    assert f"--prefix {prefix}" in line
    listed = cli("queues", "--url", redis_url, "--prefix", prefix + "-typo")
    assert listed.exit_code == 0 and listed.stdout == ""
    assert f"--prefix {prefix}" in listed.stderr


def test_reading_commands_write_nothing(redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    settle(redis_url, prefix, "emails", [{"to": "a@example.com"}, {"to": "b@example.com", "bounce": True}])
    add(redis_url, prefix, "emails", 2)
    before = snapshot(sync_redis, prefix)
    for args in (["queues"], ["queues", "--json"], ["stats", "--queue", "emails"],
                 ["stats", "--queue", "emails", "--json"],
                 *(["jobs", "--queue", "emails", "--state", s] for s in
                   ("waiting", "active", "completed", "failed", "delayed"))):
        result = cli(*args, "--url", redis_url, "--prefix", prefix)
        assert result.exit_code == 0, result.output
    assert snapshot(sync_redis, prefix) == before


# ----- retry ------------------------------------------------------------------------------

def test_retry_of_a_job_that_does_not_exist_says_so(redis_url: str, prefix: str) -> None:
    settle(redis_url, prefix, "emails", [{"to": "a@example.com", "bounce": True}])
    line = one_error_line(cli("retry", "--queue", "emails", "999", "--url", redis_url,
                              "--prefix", prefix))
    assert line == "error: nothing retried in queue 'emails': job 999 does not exist"


def test_retry_with_ids_honours_state_and_retries_all_or_nothing(
        redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    ok, bounced = settle(redis_url, prefix, "emails",
                         [{"to": "a@example.com"}, {"to": "b@example.com", "bounce": True}])
    before = snapshot(sync_redis, prefix)
    # The completed job is not failed: nothing re-runs, not even the failed one listed with it.
    line = one_error_line(cli("retry", "--queue", "emails", bounced, ok, "--url", redis_url,
                              "--prefix", prefix))
    assert line == (f"error: nothing retried in queue 'emails': job {ok} is completed, not failed "
                    "(use --state completed)")
    assert snapshot(sync_redis, prefix) == before
    done = cli("retry", "--queue", "emails", bounced, "--url", redis_url, "--prefix", prefix)
    assert done.stdout == "retried 1 failed job(s) in queue 'emails'\n"
    again = cli("retry", "--queue", "emails", "--state", "completed", ok, "--url", redis_url,
                "--prefix", prefix)
    assert again.stdout == "retried 1 completed job(s) in queue 'emails'\n"
    states = json.loads(cli("stats", "--queue", "emails", "--json", "--url", redis_url,
                            "--prefix", prefix).stdout)["emails"]
    assert (states["waiting"], states["completed"], states["failed"]) == (2, 0, 0)


def test_retry_of_a_job_that_has_not_finished_is_refused(redis_url: str, prefix: str) -> None:
    (waiting,) = add(redis_url, prefix, "emails")
    line = one_error_line(cli("retry", "--queue", "emails", waiting, "--url", redis_url,
                              "--prefix", prefix))
    assert line.endswith(f"job {waiting} is waiting, not failed")


async def test_queue_retry_job_checks_existence_and_state(queue: Queue) -> None:
    """The library call under the command: a missing job is JobNotFound, a wrong state
    InvalidJobState, checked inside the script."""
    from minique import InvalidJobState, JobNotFound

    with pytest.raises(JobNotFound, match="job 999 does not exist"):
        await queue.retry_job("999")
    job = await queue.add("x", 1)
    with pytest.raises(InvalidJobState, match="is waiting"):
        await queue.retry_job(job.id)
    with pytest.raises(ValueError, match="retry_job takes state"):
        await queue.retry_job(job.id, "active")


# ----- listing ----------------------------------------------------------------------------

def test_stats_without_a_queue_counts_every_queue_under_the_prefix(redis_url: str,
                                                                   prefix: str) -> None:
    """Found by a newcomer run: a bare `minique stats` (as the production guide shows it)
    was "Missing option '--queue'"."""
    empty = cli("stats", "--url", redis_url, "--prefix", prefix)
    assert empty.exit_code == 0 and empty.stdout == "" and "no queues" in empty.stderr
    add(redis_url, prefix, "reports", 2)
    add(redis_url, prefix, "emails", 1)
    rows = json.loads(cli("stats", "--json", "--url", redis_url, "--prefix", prefix).stdout)
    assert sorted(rows) == ["emails", "reports"]
    assert rows["reports"]["waiting"] == 2 and rows["emails"]["waiting"] == 1
    out = cli("stats", "--url", redis_url, "--prefix", prefix).stdout.splitlines()
    assert [line.split()[0] for line in out] == ["queue", "emails", "reports"]


def test_queues_lists_every_queue_with_its_counts(redis_url: str, prefix: str) -> None:
    settle(redis_url, prefix, "emails", [{"to": "a@example.com"}, {"to": "b@example.com", "bounce": True}])
    add(redis_url, prefix, "reports", 3)
    add(redis_url, prefix, "reports", 1, delay=3600)
    assert cli("pause", "--queue", "reports", "--url", redis_url, "--prefix", prefix).exit_code == 0
    out = cli("queues", "--url", redis_url, "--prefix", prefix).stdout.splitlines()
    assert out[0].split() == ["queue", "waiting", "active", "completed", "failed", "delayed",
                              "waiting-children", "paused", "workers", "schedulers"]
    assert out[1].split() == ["emails", "0", "0", "1", "1", "0", "0", "False", "0", "0"]
    assert out[2].split() == ["reports", "3", "0", "0", "0", "1", "0", "True", "0", "0"]
    rows = json.loads(cli("queues", "--json", "--url", redis_url, "--prefix", prefix).stdout)
    assert rows[1] == {"queue": "reports", "waiting": 3, "active": 0, "completed": 0, "failed": 0,
                       "delayed": 1, "waiting-children": 0, "paused": True, "workers": 0,
                       "schedulers": 0}


def test_jobs_shows_a_header_the_state_the_times_and_the_reason_or_value(
        redis_url: str, prefix: str) -> None:
    ok, bounced = settle(redis_url, prefix, "emails",
                         [{"to": "a@example.com"}, {"to": "b@example.com", "bounce": True}])
    failed = cli("jobs", "--queue", "emails", "--url", redis_url, "--prefix", prefix).stdout.splitlines()
    assert failed[0].split() == ["id", "name", "state", "attempts", "created", "started", "finished",
                                 "reason"]
    row = failed[1]
    assert row.split()[:4] == [bounced, "send", "failed", "1"]
    assert row.endswith("RuntimeError: 550 mailbox unavailable: b@example.com")
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)) == 3  # created, started, finished
    completed = cli("jobs", "--queue", "emails", "--state", "completed", "--url", redis_url,
                    "--prefix", prefix).stdout.splitlines()
    assert completed[0].split()[-1] == "value"
    assert completed[1].split()[:3] == [ok, "send", "completed"]
    assert completed[1].endswith('{"sent_to": "a@example.com"}')
    rows = json.loads(cli("jobs", "--queue", "emails", "--json", "--url", redis_url,
                          "--prefix", prefix).stdout)
    assert rows[0]["id"] == bounced and rows[0]["state"] == "failed" and rows[0]["attempts"] == 1
    assert rows[0]["created"] <= rows[0]["started"] <= rows[0]["finished"]
    # The stack trace (found by a newcomer run: the CLI showed it nowhere).
    assert rows[0]["stacktrace"].rstrip().endswith(
        "RuntimeError: 550 mailbox unavailable: b@example.com")
    traced = cli("jobs", "--queue", "emails", "--trace", "--url", redis_url,
                 "--prefix", prefix).stdout
    assert f"--- job {bounced} (send) ---\nTraceback (most recent call last):" in traced
    assert traced.rstrip().endswith("RuntimeError: 550 mailbox unavailable: b@example.com")
    empty = cli("jobs", "--queue", "emails", "--state", "active", "--url", redis_url, "--prefix", prefix)
    assert empty.exit_code == 0 and empty.stderr == "no active jobs in queue 'emails'\n"


def test_jobs_shows_the_value_of_a_job_that_completed_after_a_failed_attempt(
        redis_url: str, prefix: str) -> None:
    """Found by a newcomer run: the row showed the failed attempt's reason (which the job
    keeps) instead of the value it completed with."""
    from driver import complete, fetch, finish, retry

    async def fail_then_complete() -> str:
        q = Queue("emails", url=redis_url, prefix=prefix)
        try:
            job = await q.add("send", 1, attempts=2)
            [(job_id, token)] = await fetch(q)
            await finish(q, [retry(job_id, token, reason="boom on attempt 1")])
            [(job_id, token)] = await fetch(q)
            await finish(q, [complete(job_id, token, b"\xa2ok")])
            return job.id
        finally:
            await q.close()

    job_id = asyncio.run(fail_then_complete())
    common = ["--queue", "emails", "--url", redis_url, "--prefix", prefix]
    row = cli("jobs", "--state", "completed", *common).stdout.splitlines()[1]
    assert row.split()[:3] == [job_id, "send", "completed"] and row.endswith('"ok"'), row
    [listed] = json.loads(cli("jobs", "--state", "completed", "--json", *common).stdout)
    assert listed["result"] == '"ok"', listed


def test_jobs_lists_a_corrupted_job_with_its_error_and_the_others(
        redis_url: str, prefix: str) -> None:
    """From the dashboard break run: one job whose stored fields do not decode made the
    whole `minique jobs` listing fail. It is a row of its own now, with the error."""
    ok, bad = add(redis_url, prefix, "emails", 2)
    r = redis.Redis.from_url(redis_url)
    try:
        q = Queue("emails", url=redis_url, prefix=prefix)
        r.hset(q.keys.job(bad), "p", "not-a-number")
    finally:
        r.close()
    common = ["--queue", "emails", "--url", redis_url, "--prefix", prefix]
    listed = cli("jobs", "--state", "waiting", "--json", *common)
    assert listed.exit_code == 0, listed.output
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {ok, bad}
    assert rows[bad]["state"] == "waiting (corrupted)" and "not numbers" in rows[bad]["result"]
    assert rows[ok]["state"] == "waiting"
    table = cli("jobs", "--state", "waiting", *common)
    assert table.exit_code == 0 and "(corrupted)" in table.stdout


def test_pause_resume_and_drain_act_on_a_known_queue(redis_url: str, prefix: str) -> None:
    add(redis_url, prefix, "emails", 3)
    common = ["--queue", "emails", "--url", redis_url, "--prefix", prefix]
    assert cli("pause", *common).stdout == "pause: queue 'emails' paused\n"
    assert cli("stats", "--json", *common).stdout.count('"paused": true') == 1
    assert cli("resume", *common).stdout == "resume: queue 'emails' resumed\n"
    assert cli("drain", *common).stdout == "drain: queue 'emails' drained (3 waiting job(s) removed)\n"


def test_pause_of_a_queue_without_keys_needs_create(redis_url: str, prefix: str) -> None:
    common = ["--queue", "later", "--url", redis_url, "--prefix", prefix]
    refused = CliRunner().invoke(main, ["pause", *common])
    assert refused.exit_code != 0 and "later" in one_error_line(refused)
    assert cli("pause", "--create", *common).stdout == "pause: queue 'later' paused\n"
    assert cli("stats", "--json", *common).stdout.count('"paused": true') == 1


def test_jobs_refuses_an_end_before_its_start(redis_url: str, prefix: str) -> None:
    result = CliRunner().invoke(main, ["jobs", "--queue", "emails", "--start", "5", "--end", "2",
                                       "--url", redis_url, "--prefix", prefix])
    assert result.exit_code == 2 and "--end (2) must not be before --start (5)" in result.stderr


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"minique, version {__version__}\n"
