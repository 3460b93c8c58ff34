"""Redis clients with the defaults a job queue needs (bytes replies, bounded timeouts)."""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .packing import connection_class_for
from .redis_problems import BadRedisURL, check_url, shown_url

DEFAULT_URL = "redis://127.0.0.1:6379/0"
# Scripts do bounded work, so a reply that takes this long means the link is broken.
COMMAND_TIMEOUT = 15.0


class _NotRetried(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class FinalAuthRetry(Retry):
    """redis-py's Retry, except that an authentication error is raised at once: it is a
    ConnectionError to redis-py, so it was retried like a dropped link (a Redis that wants
    a password none was given for took 3.5-15 s to say so, against none for redis-py's
    default client); no retry can mend a password."""

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        async def do_once() -> Any:
            try:
                return await do()
            except AuthenticationError as exc:
                raise _NotRetried(exc) from exc

        try:
            return await super().call_with_retry(do_once, fail, *args, **kwargs)
        except _NotRetried as final:
            raise final.error from None


def check_client(connection: Any, what: str, url: str | None = None) -> Any:
    """``connection`` if minique can use it as its Redis client, else an error that says
    which client to give instead.

    Raises TypeError when ``url`` is given too: one of the two would be ignored (a
    ``url=`` naming another server or database than the client's went unnoticed).
    Raises TypeError for a synchronous redis-py client (``redis.Redis``): minique's calls
    are awaited (the sync facades, ``SyncQueue`` and friends, take ``url=``). Raises
    ValueError for a client made with ``decode_responses=True``: jobs, results and events
    are stored as msgpack bytes, which such a client fails to decode (a UnicodeDecodeError
    deep in a reply, or a worker whose wait never returns a job)."""
    import redis

    if url is not None:
        raise TypeError(f"{what}: give url= or connection=, not both (url={shown_url(url)!r} "
                        f"would be ignored for the client given)")
    if isinstance(connection, (redis.Redis, redis.RedisCluster)):
        raise TypeError(f"{what}: connection= must be an asyncio client "
                        f"(redis.asyncio.Redis or RedisCluster), got the synchronous "
                        f"{type(connection).__module__}.{type(connection).__name__}; "
                        f"give url= instead, or use the Sync* facades from synchronous code")
    encoder = getattr(connection, "get_encoder", None)
    if encoder is not None and getattr(encoder(), "decode_responses", False):
        raise ValueError(f"{what}: connection= was made with decode_responses=True, but "
                         f"minique stores jobs as msgpack bytes, which that client cannot "
                         f"decode; give a client made with decode_responses=False (the "
                         f"default), or url= and minique makes its own")
    return connection


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("MINIQUE_REDIS_URL") or DEFAULT_URL


def connect(url: str | None = None, *, socket_timeout: float = COMMAND_TIMEOUT, **kw: Any) -> Any:
    """A client for ``url`` (or ``$MINIQUE_REDIS_URL``). ``redis+cluster://`` gives a cluster client.
    Raises ``BadRedisURL`` (a ValueError) naming what is wrong with the URL; connects lazily."""
    # The URL's problem in minique's words (BadRedisURL, a ValueError): redis-py's own
    # error neither repeats the URL nor knows redis+cluster://.
    url = check_url(resolve_url(url))
    common: dict[str, Any] = dict(
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        retry=FinalAuthRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    common.update(kw)
    if url.startswith("redis+cluster://") or url.startswith("rediss+cluster://"):
        from redis.asyncio.cluster import RedisCluster

        common.pop("retry_on_error", None)
        return RedisCluster.from_url(url.replace("+cluster", "", 1), **common)
    common.setdefault("connection_class", connection_class_for(url))
    try:
        return Redis.from_url(url, health_check_interval=15, **common)
    except ValueError as exc:  # a query value redis-py cannot parse ("?db=x")
        raise BadRedisURL(f"invalid Redis URL {shown_url(url)!r}: {exc}") from None


def check_pool_room(connection: Any, concurrency: int, what: str) -> None:
    """ValueError when the client's connection pool cannot serve a worker: a pool with
    ``max_connections`` below ``concurrency`` + 3 (the processors' own calls, a script call,
    the blocking wait and the pub/sub listener at once) raises MaxConnectionsError in jobs,
    which fail for good, and in the worker's calls, sent again for ever. A
    BlockingConnectionPool waits for a free connection instead, and passes."""
    from redis.asyncio import BlockingConnectionPool

    pool = getattr(connection, "connection_pool", None)
    limit = getattr(pool, "max_connections", None)
    if pool is None or isinstance(pool, BlockingConnectionPool) or not isinstance(limit, int):
        return
    if limit < concurrency + 3:
        raise ValueError(f"{what}: connection= has a pool of max_connections={limit}; a "
                         f"worker at concurrency {concurrency} needs {concurrency + 3} or "
                         f"more (its jobs' own calls, its script calls, its blocking wait "
                         f"and its pub/sub listener), else jobs fail with "
                         f"MaxConnectionsError: raise max_connections, or use a "
                         f"BlockingConnectionPool, which waits for a free connection")
