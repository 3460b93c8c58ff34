"""What is wrong with the Redis a command or a worker was given, in one line.

``check_url`` refuses a URL that cannot work before anything connects; ``describe`` turns
the client's exception into a line such as ``cannot connect to Redis at 127.0.0.1:6499
(connection refused)``; ``wait_until_reachable`` is how a worker starts on a Redis that is
not up yet: one line per attempt, with backoff, or ``RedisUnavailable`` at once. No line
ever shows the URL's password.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.exceptions import AuthenticationError, RedisClusterException, RedisError

from .errors import MiniqueError

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
# Everything a client raises when Redis is missing, refuses, or answers nonsense.
PROBLEMS = (RedisError, RedisClusterException, OSError)
FIRST_RETRY = 1.0  # seconds before the first retry at start-up; doubles up to MAX_RETRY
MAX_RETRY = 30.0


class BadRedisURL(ValueError, MiniqueError):
    """A Redis URL that no client could use; the message says what is wrong with it."""


class RedisUnavailable(MiniqueError):
    """Redis cannot be used: unreachable, or refusing this client (password, DB index).
    The message is one line, without the URL's password."""


def where(url: str, *, db: bool = False) -> str:
    """``host:port`` (and ``/db`` when not 0, or always with ``db``) or the socket path of
    ``url`` (and ``?db=N`` with ``db``); no credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path + (f"?db={parse_qs(parts.query).get('db', ['0'])[0]}" if db else "")
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    # As redis-py reads it: a ?db= in the query wins over the path.
    number = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[0]
    return f"{parts.hostname or '127.0.0.1'}:{port}" + (f"/{number}" if db or number != "0" else "")


def url_of(client: Any) -> str:
    """A URL that names where ``client`` connects (for messages; no credentials)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if kwargs is None:  # a cluster client: name the node it started from
        node = getattr(client, "get_default_node", lambda: None)()
        return f"redis://{node.host}:{node.port}/0" if node is not None else "redis://cluster"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def shown_url(url: str) -> str:
    """``url`` as an error message may show it: never with its password."""
    return url.split("@", 1)[-1] if "@" in url else url


def check_url(url: str) -> str:
    """Returns ``url`` if a client can use it, else raises BadRedisURL naming the problem."""
    shown = shown_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket, say
        raise BadRedisURL(f"invalid Redis URL {shown!r}: {exc}") from None
    if "://" not in url or parts.scheme not in SCHEMES:
        got = f"'{parts.scheme}://'" if "://" in url else "no scheme"
        raise BadRedisURL(f"invalid Redis URL {shown!r}: it must start with redis://, rediss://, "
                          f"unix:// or redis+cluster:// (got {got})")
    if parts.scheme == "unix":
        if not parts.path:
            raise BadRedisURL(f"invalid Redis URL {shown!r}: unix:// needs a socket path")
        return url
    try:
        port = parts.port
    except ValueError:
        raise BadRedisURL(f"invalid Redis URL {shown!r}: the port must be a number from 1 to 65535"
                          ) from None
    if port == 0:
        raise BadRedisURL(f"invalid Redis URL {shown!r}: the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise BadRedisURL(f"invalid Redis URL {shown!r}: it names no host")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise BadRedisURL(f"invalid Redis URL {shown!r}: the path is the DB number, got {db!r}")
    return url


def _cause(exc: BaseException) -> str | None:
    """The OS-level reason behind a client's connection error, in a few words."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, TimeoutError | asyncio.TimeoutError):
            return "timed out"
        if isinstance(seen, OSError) and seen.errno is not None:
            return {
                errno.ECONNREFUSED: "connection refused",
                errno.ENOENT: "no such socket",
                errno.ECONNRESET: "connection reset",
                errno.EHOSTUNREACH: "host unreachable",
                errno.ENETUNREACH: "network unreachable",
                errno.ETIMEDOUT: "timed out",
                errno.EACCES: "permission denied",
            }.get(seen.errno, seen.strerror or str(seen))
        seen = seen.__cause__ or seen.__context__
    return None


def is_fatal(exc: BaseException) -> bool:
    """True when retrying cannot help: Redis answered, but refuses this client or this URL
    (wrong password, missing DB, not a Redis at all)."""
    if isinstance(exc, BadRedisURL | AuthenticationError | ValueError):
        return True
    text = str(exc)
    return isinstance(exc, RedisError) and (
        "DB index" in text or "WRONGPASS" in text or "NOAUTH" in text
        or "Protocol error" in text)


def describe(exc: BaseException, url: str) -> str:
    """One line for a failure to use the Redis at ``url``."""
    at = where(url)
    if isinstance(exc, BadRedisURL):
        return str(exc)
    if isinstance(exc, ValueError):
        return f"invalid Redis URL: {exc}"
    text = str(exc).strip().rstrip(".")
    if "DB index" in text:
        db = urlsplit(url).path.strip("/")
        return f"cannot use Redis at {at}: DB {db} does not exist on that server ({text})"
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return f"cannot use Redis at {at}: authentication failed ({text})"
    if "Protocol error" in text:
        return f"cannot use Redis at {at}: what answers there does not speak Redis ({text})"
    cause = _cause(exc)
    if cause is None and "Timeout" in type(exc).__name__:
        cause = "timed out"
    if cause is not None:
        return f"cannot connect to Redis at {at} ({cause})"
    return f"Redis at {at} failed: {type(exc).__name__}: {text}"


async def wait_until_reachable(redis: Any, url: str, *, fail_fast: bool, log: logging.Logger,
                               what: str, stopped: Callable[[], bool] = lambda: False) -> bool:
    """PINGs ``redis`` until it answers. Each failure logs one line (``what`` says who waits)
    and waits FIRST_RETRY seconds, doubling up to MAX_RETRY. Raises RedisUnavailable at once
    for a fatal problem (``is_fatal``), or for any problem when ``fail_fast``. Returns False
    if ``stopped()`` became true while waiting, True once Redis answered."""
    delay = FIRST_RETRY
    failed = False
    while not stopped():
        try:
            await redis.ping()
        except PROBLEMS as exc:
            line = describe(exc, url)
            if fail_fast or is_fatal(exc):
                raise RedisUnavailable(line) from exc
            if stopped():
                break
            log.error("%s: %s; retrying in %.0fs", what, line, delay)
            failed = True
            slept = 0.0
            while slept < delay and not stopped():  # wake up promptly when stopped
                await asyncio.sleep(min(0.1, delay - slept))
                slept += 0.1
            delay = min(MAX_RETRY, delay * 2)
            continue
        if failed:
            log.warning("%s: Redis at %s answers now", what, where(url))
        return True
    return False
