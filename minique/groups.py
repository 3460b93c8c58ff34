"""Groups: per-key fair share, concurrency and rate limits inside one queue.

A job added with ``group="acct-42"`` waits in its group. Workers take jobs round-robin
across the groups that may start one now, so a group with 10,000 jobs does not make the
others wait; each group may have a concurrency limit and a sliding-window rate limit,
enforced in Redis across every worker. The Redis side is ``lua/includes/groups.lua``;
the guide is docs/guide/groups.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .options import validate_group

if TYPE_CHECKING:
    from .queue import Queue

MAX_GROUPS_PAGE = 10_000


class GroupLimiter(msgspec.Struct, frozen=True):
    """At most ``max`` starts in any window of ``duration`` seconds."""

    max: int
    duration: float


class GroupInfo(msgspec.Struct, frozen=True):
    """One group as ``Queue.get_groups`` reports it.

    ``concurrency`` and ``limiter`` are the group's own settings (None: the queue's group
    defaults apply); ``rate_limited_until`` is a Unix time in seconds, or None.
    """

    id: str
    waiting: int
    active: int
    concurrency: int | None
    limiter: GroupLimiter | None
    paused: bool
    rate_limited_until: float | None


def _concurrency(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"group concurrency must be an integer >= 1 or None, got {value!r}")
    return str(value)


def _limiter(value: Any) -> tuple[str, str]:
    """``{"max": n, "duration": seconds}`` (or a GroupLimiter) -> (max, window ms)."""
    if value is None:
        return "", ""
    if isinstance(value, GroupLimiter):
        value = {"max": value.max, "duration": value.duration}
    if not isinstance(value, Mapping):
        raise TypeError(f"limiter must be {{'max': n, 'duration': seconds}} or None, got {value!r}")
    extra = set(value) - {"max", "duration"}
    if extra or "max" not in value or "duration" not in value:
        raise TypeError(f"limiter needs exactly the keys 'max' and 'duration', got {sorted(value)}")
    n, duration = value["max"], value["duration"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"limiter max must be an integer >= 1, got {n!r}")
    if (isinstance(duration, bool) or not isinstance(duration, int | float)
            or not math.isfinite(duration) or not 0.001 <= duration <= 86400):
        raise ValueError(f"limiter duration must be seconds from 0.001 to 86400, got {duration!r}")
    return str(n), str(round(duration * 1000))


async def set_group_options(queue: Queue, group: str, *, concurrency: int | None = None,
                            limiter: Mapping[str, Any] | GroupLimiter | None = None) -> None:
    """Sets the group's own limits; None for either falls back to the group defaults."""
    validate_group(group)
    conc = _concurrency(concurrency)
    lm, ld = _limiter(limiter)
    await queue._wait_out_holds(await queue._run("set_group", ["options", group, conc, lm, ld]))


async def set_group_defaults(queue: Queue, *, concurrency: int | None = None,
                             limiter: Mapping[str, Any] | GroupLimiter | None = None) -> None:
    """Limits of every group of the queue without settings of its own (None: no limit)."""
    conc = _concurrency(concurrency)
    lm, ld = _limiter(limiter)
    await queue._wait_out_holds(await queue._run("set_group", ["defaults", "", conc, lm, ld]))


async def pause_group(queue: Queue, group: str) -> None:
    """The group starts no job until resumed; its running jobs run on. When it returns, no
    worker starts another job of the group (held ones were handed back or ran out)."""
    await queue._wait_out_holds(
        await queue._run("set_group", ["pause", validate_group(group), "", "", ""]))


async def resume_group(queue: Queue, group: str) -> None:
    await queue._run("set_group", ["resume", validate_group(group), "", "", ""])


def _num(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


async def get_groups(queue: Queue, start: int = 0, end: int = 99) -> list[GroupInfo]:
    """Groups with waiting jobs, running jobs or settings, busiest (most waiting) first."""
    for label, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be an integer, got {value!r}")
    if start < 0 or end < start or end - start >= MAX_GROUPS_PAGE:
        raise ValueError(f"need 0 <= start <= end and at most {MAX_GROUPS_PAGE} groups per "
                         f"page, got start={start} end={end}")
    base = queue.keys.base
    ids = await queue.redis.zrevrange(f"{base}:groups", start, end)
    if not ids:
        return []
    async with queue.redis.pipeline(transaction=False) as pipe:
        for raw in ids:
            gid = raw.decode()
            pipe.hmget(f"{base}:g:{gid}", "a", "c", "lm", "ld", "p", "rl")
            pipe.zcard(f"{base}:gw:{gid}")
        replies = await pipe.execute()
    out: list[GroupInfo] = []
    now_ms = await _redis_ms(queue)
    for i, raw in enumerate(ids):
        a, c, lm, ld, p, rl = replies[2 * i]
        until = _num(rl)
        out.append(GroupInfo(
            id=raw.decode(), waiting=int(replies[2 * i + 1]), active=_num(a) or 0,
            concurrency=_num(c),
            limiter=None if lm is None else GroupLimiter(int(lm), int(ld or 0) / 1000.0),
            paused=p is not None,
            rate_limited_until=until / 1000.0 if until and until > now_ms else None))
    return out


async def _redis_ms(queue: Queue) -> int:
    secs, micros = await queue.redis.time()
    return int(secs) * 1000 + int(micros) // 1000
