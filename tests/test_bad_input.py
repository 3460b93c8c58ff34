"""Bad input gets a clear error, and nothing else is touched."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from redis.exceptions import ResponseError

from minique import JobCorrupted, JobFailed, PayloadError, Queue, Worker, scripts
from minique.own_link import OwnLink


async def nothing_written(queue: Queue) -> None:
    assert (await queue.get_stats())["total"] == 0
    assert await queue.redis.get(queue.keys.idc) is None


async def test_unencodable_payload_names_the_field(queue: Queue) -> None:
    with pytest.raises(PayloadError, match=r"at \$\.when\[1\]"):
        await queue.add("x", {"ok": 1, "when": [1, object()]})
    with pytest.raises(TypeError):  # PayloadError is a TypeError
        await queue.add_bulk([("fine", 1), ("bad", {1j})])
    await nothing_written(queue)
    # datetimes and the like are fine: msgspec encodes them
    await queue.add("t", {"at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)})


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"atempts": 3}, TypeError, "unknown job option"),
        ({"delay": -1}, ValueError, "delay must be >= 0"),
        ({"delay": float("nan")}, ValueError, "finite"),
        ({"delay": 1e300}, ValueError, "at most"),
        ({"attempts": 0}, ValueError, "attempts must be an integer >= 1"),
        ({"attempts": 1.5}, ValueError, "attempts"),
        ({"priority": -1}, ValueError, "priority must be an integer from 0"),
        ({"priority": 2**21 + 1}, ValueError, "priority"),
        ({"priority": 2**21}, ValueError, "priority"),
        ({"job_id": "123"}, ValueError, "plain integer"),
        ({"job_id": ""}, ValueError, "job_id"),
        ({"backoff": {"type": "fixed", "delay": -2}}, ValueError, "backoff.delay"),
        ({"backoff": {"kind": "fixed"}}, TypeError, "backoff: unknown"),
        ({"remove_on_complete": {"age": 10, "cnt": 1}}, TypeError, "remove_on_complete"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"remove_on_complete": 2**70}, ValueError, "2\\*\\*53"),
        ({"attempts": 2**70}, ValueError, "attempts"),
    ],
)
async def test_bad_options_rejected(queue: Queue, options: dict[str, Any], error: type,
                                    match: str) -> None:
    with pytest.raises(error, match=match):
        await queue.add("x", 1, **options)
    with pytest.raises(error, match=match):
        await queue.add_bulk([("ok", 1), ("x", 1, options)])
    await nothing_written(queue)


async def test_bad_names_and_defaults(redis_url: str, queue: Queue) -> None:
    with pytest.raises(ValueError, match="job name"):
        await queue.add("", 1)
    with pytest.raises(ValueError, match="queue name"):
        Queue("has{brace}", url=redis_url)
    with pytest.raises(TypeError, match="default_job_options"):
        Queue("q", url=redis_url, default_job_options={"retries": 3})
    with pytest.raises(TypeError, match="add_bulk item 0"):
        await queue.add_bulk(["just-a-name"])  # type: ignore[list-item]
    await nothing_written(queue)


async def test_corrupted_job_data_is_a_clear_error_and_the_worker_carries_on(
        queue: Queue, redis_url: str) -> None:
    bad = await queue.add("x", {"fine": True}, attempts=3)
    good = await queue.add("x", {"fine": True})
    await queue.redis.hset(queue.keys.job(bad.id), "d", b"\xc1\xff garbage")
    with pytest.raises(JobCorrupted, match=f"job {bad.id}: stored data cannot be decoded"):
        _ = (await queue.get_job(bad.id)).data  # type: ignore[union-attr]
    ran: list[str] = []

    async def proc(job: Any) -> Any:
        ran.append(job.id)
        return job.data

    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    with pytest.raises(JobFailed, match="stored data cannot be decoded"):
        await bad.wait_until_finished(timeout=5)
    assert await good.wait_until_finished(timeout=5) == {"fine": True}
    # Failed at once, like an unknown job name: no retry, and the processor never ran.
    failed = await queue.get_job(bad.id)
    assert failed is not None and failed.attempts_made == 1 and failed.attempts_started == 1
    assert ran == [good.id]
    await worker.close()
    await task


async def test_corrupted_options_fail_the_job_not_the_worker(queue: Queue, redis_url: str) -> None:
    bad = await queue.add("x", 1, attempts=5)
    await queue.redis.hset(queue.keys.job(bad.id), "o", b"\x01\x02\x03")
    with pytest.raises(JobCorrupted, match="options"):
        await queue.get_job(bad.id)
    worker = Worker(queue.name, lambda job: 1, url=redis_url)
    task = asyncio.create_task(worker.run())
    with pytest.raises(JobFailed, match="stored options cannot be decoded"):
        await bad.wait_until_finished(timeout=5)
    await worker.close()
    await task


async def test_scripts_reload_after_noscript(queue: Queue) -> None:
    """A restarted or flushed Redis lacks the library (or the scripts): it is loaded
    again and the call goes on, for single calls and for pipelines."""
    await queue.add("x", 1)
    await queue.redis.function_flush()
    await queue.redis.script_flush()
    with pytest.raises(ResponseError, match="Function not found"):
        await queue.redis.fcall(scripts.library().function("add"), 0)
    await queue.add("y", 2)  # reloads and goes on
    assert scripts.library().name.encode() in str(await queue.redis.function_list()).encode()
    await queue.redis.function_flush()
    await queue.add_bulk([("z", i) for i in range(3)])  # the pipelined path too
    assert (await queue.get_stats())["waiting"] == 5


async def test_scripts_mode_where_redis_has_no_functions(
        queue: Queue, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before Redis 7 there is no FCALL: the same transitions run as EVAL scripts."""
    real_fcall = queue.redis.fcall
    refused: list[str] = []

    async def no_fcall(name: str, *args: object) -> object:
        refused.append(name)
        raise ResponseError("unknown command 'FCALL', with args beginning with: ")

    async def link_no_fcall(_link: object, name: str, *args: object) -> object:
        return await no_fcall(name, *args)

    async def link_no_packed_fcall(_link: object, packed: bytes) -> object:
        return await no_fcall(packed.split(b"\r\n")[4].decode())

    monkeypatch.setattr(queue.redis, "fcall", no_fcall)
    # Adds go through the queue's own connection (minique/own_link.py); a plain one-job
    # add sends its FCALL packed by the queue itself.
    monkeypatch.setattr(OwnLink, "fcall", link_no_fcall)
    monkeypatch.setattr(OwnLink, "execute_packed", link_no_packed_fcall)
    monkeypatch.setattr(scripts, "_use_functions", True)
    job = await queue.add("x", 21)
    assert refused and not scripts.uses_functions()
    await queue.redis.script_flush()
    await queue.add_bulk([("x", i) for i in range(3)])  # pipelines take the script path
    worker = Worker(queue.name, lambda j: j.data * 2, url=redis_url)
    task = asyncio.create_task(worker.run())
    assert await job.wait_until_finished(timeout=10) == 42
    await worker.close()
    await task
    stats = await queue.redis.info("commandstats")
    assert int(stats["cmdstat_evalsha"]["calls"]) > 0
    assert real_fcall is not None


async def test_unreachable_redis_is_a_clear_error() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    q = Queue("x", url="redis://127.0.0.1:1/0")
    with pytest.raises(RedisConnectionError):
        await q.add("x", 1)
    await q.close()


async def test_values_over_the_size_limit_are_a_clear_error_and_nothing_is_lost(
        queue: Queue, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis refuses a bulk string over proto-max-bulk-len (512 MB) by closing the link: an
    add that size failed with a connection error, and a worker's result that size was sent
    again and again, holding up every result after it. A payload over
    codec.MAX_VALUE_BYTES is refused at add (nothing written); a return value over it
    fails its job for good, with the reason; the worker goes on. (The limit is lowered
    here, so that the test moves kilobytes, not hundreds of megabytes.)"""
    from minique import codec

    monkeypatch.setattr(codec, "MAX_VALUE_BYTES", 4096)
    with pytest.raises(PayloadError, match=r"payload of job 'x' is [\d,]+ bytes encoded"):
        await queue.add("x", "a" * 5000)
    with pytest.raises(PayloadError, match="MAX_VALUE_BYTES"):
        await queue.add_bulk([("x", 1), ("x", "a" * 5000)])
    await nothing_written(queue)

    async def work(job: Any) -> str:
        return "b" * job.data

    big = await queue.add("x", 5000)
    small = await queue.add("x", 10)
    worker = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(worker.run())
    try:
        assert await small.wait_until_finished(timeout=10) == "b" * 10
        with pytest.raises(JobFailed, match=r"return value is [\d,]+ bytes encoded"):
            await big.wait_until_finished(timeout=10)
    finally:
        await worker.close()
        await task
    failed = await queue.get_job(big.id)
    assert failed is not None and failed.attempts_made == 1  # no retry can do better


async def test_a_huge_failure_reason_is_cut_and_results_go_in_calls_of_bounded_size(
        queue: Queue, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception whose message is megabytes long is stored cut (head and tail), and a
    worker's results go to Redis in calls of at most CALL_VALUES_MAX bytes of values (one
    result alone may pass it): every job still ends, each once."""
    import minique.worker as mw

    monkeypatch.setattr(mw, "CALL_VALUES_MAX", 1000)
    sizes: list[int] = []
    build = mw.Worker._build_call

    def counting(self: Any, results: Any, *args: Any) -> Any:
        sizes.append(len(results))
        return build(self, results, *args)

    monkeypatch.setattr(mw.Worker, "_build_call", counting)

    async def work(job: Any) -> str:
        if job.data == "boom":
            raise ValueError("x" * 3_000_000 + " the end")
        return "v" * 600

    boom = await queue.add("x", "boom", attempts=1)
    jobs = await queue.add_bulk([("x", i) for i in range(20)])
    worker = Worker(queue.name, work, url=redis_url, concurrency=5)
    task = asyncio.create_task(worker.run())
    try:
        for job in jobs:
            assert await job.wait_until_finished(timeout=20) == "v" * 600
        with pytest.raises(JobFailed):
            await boom.wait_until_finished(timeout=10)
    finally:
        await worker.close()
        await task
    failed = await queue.get_job(boom.id)
    assert failed is not None and failed.failed_reason is not None
    assert failed.failed_reason.startswith("ValueError: xxx")
    assert failed.failed_reason.endswith(" the end") and len(failed.failed_reason) < 70_000
    assert max(sizes) <= 2, f"a call carried {max(sizes)} results of 600 bytes"


async def test_a_redis_that_wants_a_password_none_was_given_for_is_one_clear_error() -> None:
    """Found by a newcomer run: against a Redis with requirepass and no password in the URL,
    every call (an add, get_stats, `minique stats`, a worker) ran ~8 s and ended in a
    RecursionError: the handshake's HELLO health-checked first (packing._send connected
    with redis-py's connect(), which health-checks), the PING failed, reconnected, whose
    HELLO PINGed... And an AuthenticationError, a ConnectionError to redis-py, was retried
    like a dropped link. Now each call raises AuthenticationError on its first handshake,
    and the CLI says so in one line."""
    import subprocess
    import sys

    import redis
    from helpers import server_binary
    from redis.exceptions import AuthenticationError

    from minique.server import RedisServer

    with RedisServer(binary=server_binary()) as server:
        admin = redis.Redis(port=server.port)
        admin.config_set("requirepass", "s3cret")
        admin.close()
        admin = redis.Redis(port=server.port, password="s3cret")

        def connections() -> int:
            return int(admin.info("stats")["total_connections_received"])

        q = Queue("x", url=server.url)
        try:
            before = connections()
            with pytest.raises(AuthenticationError):
                await q.add("a", 1)
            with pytest.raises(AuthenticationError):
                await q.get_stats()
            # One handshake a call (plus the admin's own INFO link), not one per retry.
            assert connections() - before <= 3
        finally:
            await q.close()
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "minique", "stats", "--queue", "x", "--url",
                             server.url], capture_output=True, text=True, timeout=60)
        admin.close()
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "authentication" in lines[0], out.stderr[-2000:]


async def test_a_job_id_given_as_an_int_is_a_clear_type_error(queue: Queue) -> None:
    """Automatic ids print as digits ("1"), so `get_job(1)` is a natural slip: a TypeError
    that says to use "1", where it was an error about concatenating str and int."""
    job = await queue.add("x", {})
    for call in (queue.get_job, queue.get_job_logs):
        with pytest.raises(TypeError, match=rf"a job id is a string, not int .*use '{job.id}'"):
            await call(int(job.id))  # type: ignore[arg-type]
    assert (await queue.get_job(job.id)) is not None


def test_a_worker_on_a_queue_its_registry_does_not_serve_is_refused(redis_url: str) -> None:
    """A typo in the queue name started a worker that failed every job of that queue for
    good ("no processor"); it is refused at once, as `minique worker` refuses it."""
    from minique import Registry, Worker

    registry = Registry()
    registry.add("other", lambda job: None, name="a")
    with pytest.raises(ValueError, match="the registry has no processor for queue 'mist'; "
                                         "it serves: 'other'"):
        Worker("mist", registry, url=redis_url)


async def test_an_unknown_option_names_the_flow_options_add_takes_too(queue: Queue) -> None:
    """The list of valid options left out parent and on_failure, which add() takes (a
    newcomer run took them for unsupported)."""
    with pytest.raises(TypeError, match=r"add: unknown job option\(s\) retries; valid options "
                                        r"are .*; add\(\) also takes parent and on_failure"):
        await queue.add("x", None, retries=3)


def test_a_bad_url_given_to_a_queue_is_named_in_minique_words() -> None:
    """redis-py's own error neither repeated the URL nor knew redis+cluster:// (newcomer
    run); the CLI's message for the same mistake is the one raised now."""
    from minique.redis_problems import BadRedisURL

    with pytest.raises(BadRedisURL, match=r"invalid Redis URL 'localhost:6379': it must start "
                                          r"with redis://, rediss://, unix:// or redis\+cluster://"):
        Queue("x", url="localhost:6379")
    with pytest.raises(ValueError, match="the port must be a number"):
        Queue("x", url="redis://127.0.0.1:notaport/0")


def _every_client_taker(name: str = "q") -> list[Any]:
    from minique import FlowProducer, ManualWorker, QueueEvents
    from minique.dashboard import create_app

    return [
        lambda c: Queue(name, connection=c),
        lambda c: Worker(name, lambda job: None, connection=c),
        lambda c: ManualWorker(name, connection=c),
        lambda c: FlowProducer(connection=c),
        lambda c: QueueEvents(name, connection=c),
        lambda c: create_app(connection=c),
    ]


async def test_decoding_client_is_refused_before_anything_is_sent(redis_url: str,
                                                                  qname: str) -> None:
    """A client made with decode_responses=True failed deep in a reply (UnicodeDecodeError
    on a job's msgpack data), after the add had been written; now every constructor that
    takes connection= refuses it, naming the fix. (The server is shared with the tests
    running beside this one, so only this test's queue name is looked for.)"""
    import redis.asyncio as aioredis

    decoding = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for make in _every_client_taker(qname):
            with pytest.raises(ValueError, match="decode_responses=True"):
                make(decoding)
        assert [k async for k in decoding.scan_iter(match=f"*{qname}*")] == []
    finally:
        await decoding.aclose()


def test_synchronous_client_is_refused(redis_url: str) -> None:
    import redis

    sync_client = redis.Redis.from_url(redis_url)
    try:
        for make in _every_client_taker():
            with pytest.raises(TypeError, match="asyncio client"):
                make(sync_client)
    finally:
        sync_client.close()


async def test_url_and_connection_together_are_refused(redis_url: str) -> None:
    """url= beside connection= was silently ignored (a newcomer run gave both, the url
    naming another database): one of the two is refused, naming both."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        for make in _every_client_taker_with_url("redis://user:secret@elsewhere:6380/3"):
            with pytest.raises(TypeError, match=r"give url= or connection=, not both "
                                                r"\(url='elsewhere:6380/3' would be ignored"):
                make(client)
    finally:
        await client.aclose()


def _every_client_taker_with_url(url: str) -> list[Any]:
    from minique import FlowProducer, ManualWorker, QueueEvents
    from minique.dashboard import create_app

    return [
        lambda c: Queue("q", url=url, connection=c),
        lambda c: Worker("q", lambda job: None, url=url, connection=c),
        lambda c: ManualWorker("q", url=url, connection=c),
        lambda c: FlowProducer(url=url, connection=c),
        lambda c: QueueEvents("q", url=url, connection=c),
        lambda c: create_app(url=url, connection=c),
    ]


async def test_a_connection_pool_too_small_for_the_worker_is_refused(redis_url: str) -> None:
    """A newcomer gave Worker(connection=) a client with max_connections=3 (what the guide
    said) at concurrency 5: 8 jobs in 10 failed for good with MaxConnectionsError (the
    processors' own calls share the pool), and with 2 the worker retried its calls for
    ever. The worker now refuses such a pool, naming the size it needs; a blocking pool
    waits for a connection instead, and is taken."""
    import redis.asyncio as aioredis

    small = aioredis.Redis.from_url(redis_url, max_connections=7)
    blocking = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=3))
    roomy = aioredis.Redis.from_url(redis_url, max_connections=8)
    try:
        with pytest.raises(ValueError, match=r"max_connections=7; a worker at concurrency 5 "
                                             r"needs 8 or more .* BlockingConnectionPool"):
            Worker("q", lambda job: None, connection=small, concurrency=5)
        Worker("q", lambda job: None, connection=blocking, concurrency=5)
        Worker("q", lambda job: None, connection=roomy, concurrency=5)
    finally:
        for client in (small, blocking, roomy):
            await client.aclose()


def test_an_async_backoff_strategy_is_refused_where_it_is_given() -> None:
    """An async def strategy (BullMQ's may return a Promise) was taken, and every job
    that failed then failed for good: "returned <coroutine ...>", never awaited."""
    from minique import ManualWorker, Registry

    async def later(attempts: int, error: BaseException, job: Any) -> float:
        return 1.0

    message = r"backoff strategy 'later' must be a plain function .*\(an async def"
    with pytest.raises(TypeError, match=message):
        Registry(worker_options={"backoff_strategies": {"later": later}})
    with pytest.raises(TypeError, match=message):
        Worker("q", lambda job: None, backoff_strategies={"later": later})
    with pytest.raises(TypeError, match=message):
        ManualWorker("q", backoff_strategies={"later": later})
