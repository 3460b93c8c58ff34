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
    from .job import Job
    from .queue import Queue

MAX_GROUPS_PAGE = 10_000
MAX_GROUP_JOBS_PAGE = 100_000
GROUP_PAGE = 1000  # groups read per call while paging grouped jobs across groups
CLEAN_GROUPS = 200  # groups named per clean call (each call looks at a bounded number of jobs)
# get_groups(by=...): the index each ordering pages (lua/includes/groups.lua).
ORDERS = {"waiting": "groups", "active": "gactive", "paused": "gpaused", "throttled": "gsleep"}


class GroupLimiter(msgspec.Struct, frozen=True):
    """At most ``max`` starts in any window of ``duration`` seconds."""

    max: int
    duration: float


class GroupInfo(msgspec.Struct, frozen=True):
    """One group as ``Queue.get_groups`` and ``Queue.get_group`` report it.

    ``waiting`` and ``active``: its waiting and running jobs. ``concurrency`` and
    ``limiter`` are the group's own settings (None: the queue's group defaults apply).
    ``rate_limited_until``: Unix time (s) until which a processor throttled it, or None.
    ``sleeping_until``: Unix time (s) before which it starts none of its waiting jobs
    (throttled, or its limiter window is full), or None. ``window_starts``: its starts in
    the current limiter window (its own limiter or the default; 0 without one).
    """

    id: str
    waiting: int
    active: int
    concurrency: int | None
    limiter: GroupLimiter | None
    paused: bool
    rate_limited_until: float | None
    # Defaults, so that code building a GroupInfo of the seven first fields keeps working.
    sleeping_until: float | None = None
    window_starts: int = 0


class GroupDefaults(msgspec.Struct, frozen=True):
    """The limits of every group without settings of its own (None: no limit)."""

    concurrency: int | None
    limiter: GroupLimiter | None


class GroupCounts(msgspec.Struct, frozen=True):
    """How many groups each ``get_groups(by=...)`` ordering lists: ``groups`` (every known
    group: with waiting or running jobs, settings, a pause or a throttle), ``active`` (with
    jobs running), ``paused``, ``throttled`` (with waiting jobs, but asleep until a time:
    throttled or at their rate limit) and ``ready`` (in the round-robin now)."""

    groups: int
    active: int
    paused: int
    throttled: int
    ready: int


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


def _page(start: int, end: int, most: int) -> None:
    for label, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be an integer, got {value!r}")
    if start < 0 or end < start or end - start >= most:
        raise ValueError(f"need 0 <= start <= end and at most {most} per page, got "
                         f"start={start} end={end}")


async def get_groups(queue: Queue, start: int = 0, end: int = 99, *,
                     by: str = "waiting") -> list[GroupInfo]:
    """A page (ranks ``start`` to ``end``, at most 10,000) of the queue's groups, read from
    one index each: ``by="waiting"`` every group, most waiting jobs first; ``"active"``
    groups with running jobs, most first; ``"paused"`` paused groups, latest paused first;
    ``"throttled"`` groups with waiting jobs asleep until a time (a throttle or their rate
    limit), the latest to wake first. Work: O(log groups + page) Redis reads. An idle group
    (nothing waiting or running, no settings) that the round-robin has not forgotten yet is
    left out, so a page can hold fewer groups than asked."""
    _page(start, end, MAX_GROUPS_PAGE)
    if by not in ORDERS:
        raise ValueError(f"by must be one of {', '.join(ORDERS)}, got {by!r}")
    raw = await queue.redis.zrevrange(f"{queue.keys.base}:{ORDERS[by]}", start, end)
    return await _infos(queue, [r.decode() for r in raw])


async def get_group(queue: Queue, group: str) -> GroupInfo | None:
    """One group's GroupInfo; None for a group the queue does not know (no waiting or
    running job, no settings, not paused or throttled)."""
    validate_group(group)
    info = await _infos(queue, [group])
    return info[0] if info else None


async def _infos(queue: Queue, ids: list[str]) -> list[GroupInfo]:
    if not ids:
        return []
    base = queue.keys.base
    async with queue.redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hmget(queue.keys.meta, "gdm", "gdd")
        for gid in ids:
            pipe.hmget(f"{base}:g:{gid}", "c", "lm", "ld", "p", "rl")
            pipe.zscore(f"{base}:gactive", gid)
            pipe.zcard(f"{base}:gw:{gid}")
            pipe.zscore(f"{base}:gsleep", gid)
        replies = await pipe.execute()
    secs, micros = replies[0]
    now_ms = int(secs) * 1000 + int(micros) // 1000
    default_max, default_window = replies[1]
    # Groups with a limiter (their own or the default): (index in out, group, max, window ms)
    out: list[GroupInfo] = []
    windows: list[tuple[int, str, int, int]] = []
    for i, gid in enumerate(ids):
        (c, lm, ld, p, rl), a, waiting, sleep = replies[2 + 4 * i:6 + 4 * i]
        until = _num(rl)
        throttled = until / 1000.0 if until and until > now_ms else None
        if (not waiting and not _num(a) and c is None and lm is None and p is None
                and throttled is None):
            # Idle: the round-robin forgets it at its next turn (it may still be listed
            # in the index until then); nothing to show.
            continue
        asleep = float(sleep) / 1000.0 if sleep is not None and sleep > now_ms else None
        sleeping = max((t for t in (throttled, asleep) if t is not None), default=None)
        limit, window = (lm, ld) if lm is not None else (default_max, default_window)
        if limit is not None:
            windows.append((len(out), gid, int(limit), int(window or 0)))
        out.append(GroupInfo(
            id=gid, waiting=int(waiting), active=_num(a) or 0, concurrency=_num(c),
            limiter=None if lm is None else GroupLimiter(int(lm), int(ld or 0) / 1000.0),
            paused=p is not None, rate_limited_until=throttled,
            sleeping_until=sleeping if waiting else None))
    if windows:
        async with queue.redis.pipeline(transaction=False) as pipe:
            for _, gid, _, window in windows:
                # Starts older than the window no longer count (lua/includes/groups.lua).
                pipe.zrangebyscore(f"{base}:gl:{gid}", now_ms - window + 1, "+inf", start=0,
                                   num=1, withscores=True)
                pipe.zcount(f"{base}:gl:{gid}", now_ms - window + 1, "+inf")
            replies = await pipe.execute()
        for k, (index, _, limit, window) in enumerate(windows):
            oldest, n = replies[2 * k], int(replies[2 * k + 1])
            info = out[index]
            sleeping = info.sleeping_until
            if n >= limit and oldest and info.waiting:
                # The window is full: no start before its oldest start leaves it.
                frees = (oldest[0][1] + window) / 1000.0
                sleeping = max(sleeping or 0.0, frees)
            out[index] = msgspec.structs.replace(info, window_starts=n, sleeping_until=sleeping)
    return out


async def get_group_counts(queue: Queue) -> GroupCounts:
    """How many groups each ordering of ``get_groups`` lists (O(1) reads)."""
    base = queue.keys.base
    async with queue.redis.pipeline(transaction=False) as pipe:
        for key in ("groups", "gactive", "gpaused", "gsleep"):
            pipe.zcard(f"{base}:{key}")
        pipe.llen(f"{base}:gready")
        groups, active, paused, throttled, ready = await pipe.execute()
    return GroupCounts(groups=groups, active=active, paused=paused, throttled=throttled,
                       ready=ready)


async def get_group_defaults(queue: Queue) -> GroupDefaults:
    c, m, d = await queue.redis.hmget(queue.keys.meta, "gdc", "gdm", "gdd")
    return GroupDefaults(concurrency=_num(c),
                         limiter=None if m is None else GroupLimiter(int(m), int(d or 0) / 1000.0))


async def get_group_job_ids(queue: Queue, group: str, start: int = 0, end: int = 49) -> list[str]:
    """Ids of the group's waiting jobs in the order the group starts them (at most 100,000
    per page). Running jobs are in ``get_job_ids("active")``."""
    validate_group(group)
    _page(start, end, MAX_GROUP_JOBS_PAGE)
    raw = await queue.redis.zrange(f"{queue.keys.base}:gw:{group}", start, end)
    return [r.decode() for r in raw]


async def get_group_jobs(queue: Queue, group: str, start: int = 0, end: int = 49) -> list[Job]:
    """The group's waiting jobs (Job objects), in the order the group starts them."""
    return await queue._jobs_of(await get_group_job_ids(queue, group, start, end))


async def grouped_waiting_ids(queue: Queue, skip: int, want: int) -> list[str]:
    """``want`` ids of waiting grouped jobs after the first ``skip``: group by group, the
    busiest group first, each in its run order. Reads the group index in pages of
    GROUP_PAGE (its scores are the groups' waiting counts, so whole groups are skipped
    without reading them): O(skip / GROUP_PAGE + want) calls at most, each bounded."""
    base = queue.keys.base
    out: list[str] = []
    rank = 0
    while len(out) < want:
        page = await queue.redis.zrevrangebyscore(f"{base}:groups", "+inf", 1, start=rank,
                                                  num=GROUP_PAGE, withscores=True)
        for raw, score in page:
            n = int(score)
            if skip >= n:
                skip -= n
                continue
            got = await queue.redis.zrange(f"{base}:gw:{raw.decode()}", skip,
                                           skip + want - len(out) - 1)
            out.extend(r.decode() for r in got)
            skip = 0
            if len(out) >= want:
                break
        if len(page) < GROUP_PAGE:
            break
        rank += GROUP_PAGE
    return out


async def clean_grouped(queue: Queue, cutoff_ms: int | str, limit: int) -> list[str]:
    """Removes up to ``limit`` waiting grouped jobs created at or before ``cutoff_ms`` (or
    'g<ms>': that long before Redis' now, lua/clean.lua):
    groups come from a ZSCAN of the group index, CLEAN_GROUPS per script call, and each
    call looks at a bounded number of jobs (lua/clean.lua, state 'grouped')."""
    removed: list[str] = []
    cursor: Any = 0
    while len(removed) < limit:
        cursor, page = await queue.redis.zscan(f"{queue.keys.base}:groups", cursor,
                                               count=CLEAN_GROUPS)
        names = [raw.decode() for raw, score in page if score > 0]
        for i in range(0, len(names), CLEAN_GROUPS):
            chunk = names[i:i + CLEAN_GROUPS]
            at = "0:0"
            while len(removed) < limit:
                reply = await queue._run("clean", ["grouped", cutoff_ms,
                                                   min(1000, limit - len(removed)), at, *chunk])
                removed.extend(x.decode() for x in reply[2:])
                if int(reply[0]) >= len(chunk):
                    break
                at = f"{int(reply[0])}:{int(reply[1])}"
        if int(cursor) == 0:
            break
    return removed


