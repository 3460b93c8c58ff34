"""Job schedulers: cron and every-N recurring jobs that fire once per fire time, however many
processes upsert them and however many workers run.

    await queue.upsert_job_scheduler("hourly-sync", cron="0 * * * *", tz="UTC",
                                     job_name="sync-all-accounts", data={...}, job_options={...})
    await queue.upsert_job_scheduler("heartbeat", every=30.0, job_name="ping")
    await queue.get_job_schedulers()      # [JobScheduler(...)], soonest first
    await queue.remove_job_scheduler("hourly-sync")

**Model.** A scheduler keeps exactly one *pending firing*: an ordinary delayed job with the
deterministic id ``sched:<scheduler id>:<generation>:<fire time ms>`` whose hash carries
``sch`` (the scheduler id) and ``sft`` (the fire time). When a worker's fetch script moves
that job to active, the same script records the run and creates the next firing
(``lua/includes/scheduler.lua``), so no separate scheduler process exists and every worker
and web process may upsert the same schedulers at boot. The next fire time comes from the
schedule, never from "now", so a slow queue does not make the schedule drift.

**Why a fire time yields at most one job.** Only taking the job named by the scheduler's
``nid`` field advances the schedule, and each advance moves strictly forward in time; the
job id is unique to (generation, fire time) and is never created twice. The generation comes
from a per-queue counter and changes whenever the timing changes or the scheduler is created
again, so a new firing never collides with a retained old job (BullMQ #3063). Upserts,
removals, refills and repairs are each one Lua script, so concurrent callers serialise.

**Cron** is parsed with croniter on the *wall clock* of ``tz`` (a zoneinfo name), then mapped
to instants, because croniter's own time-zone handling runs some jobs twice when clocks go
back. Daylight-saving rules, like Vixie cron's:

- a wall time that does not exist (clocks jump forward) runs once, shifted forward by the
  gap (``30 2 * * *`` runs at 03:30 on that day, PEP 495 semantics); if the hour field is
  ``*`` the job simply has no runs in the skipped hour (real time is continuous);
- a wall time that happens twice (clocks go back) runs once, at its first occurrence, unless
  the hour field is ``*``: then the job keeps running through the repeated hour.

Lua cannot parse cron, so the upsert stores the next ``CRON_BATCH`` fire times; the fetch
script pops them, and when fewer than 16 remain a worker's maintenance loop tops the list up
(:func:`refill_due`). A refill is idempotent, so concurrent ones are harmless.

**Missed fire times (``catch_up``).** A firing is *late* when it is taken only after the next
fire time has passed as well (workers were down, or the queue is behind by more than one
period). Then every fire time up to now is skipped and the schedule resumes at the first fire
time after now; the policy decides the late firing itself:

- ``"once"`` (default): it runs, as one catch-up run for everything missed;
- ``"skip"``: it is dropped as well, if the fetch script lets the scheduler hook drop jobs
  (otherwise it runs, exactly as with ``"once"``). With ``"skip"`` a queue that stays behind
  by more than one period runs none of that scheduler's firings.

A firing taken late by less than a period is simply late: it runs and the next one follows
the schedule. ``every`` schedules start at ``start_date`` (else at the upsert: the first run is
immediate) and fire every ``every`` seconds from there. ``start_date``, ``end_date`` (seconds
since the epoch, or aware datetimes) and ``limit`` (number of runs) stop the firings; an ended
scheduler stays listed (``ended=True``) until removed.

**Upserting again** with the same timing keeps the schedule and its pending firing (the
template and settings are updated in place); different timing (cron, every, tz, start_date)
starts a new generation and replaces the pending firing if it has not started. A new
template reaches the pending firing while it is delayed or waiting (not yet taken); a later
end date, no end date or a higher limit lets an ended scheduler go on. Removing a
scheduler deletes its keys and its pending firing if that has not started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from . import codec, scripts
from .holders import holders_answer
from .keys import validate_name
from .options import check_option_names, check_utf8, encode_stored, resolve

if TYPE_CHECKING:
    from .queue import Queue

CRON_BATCH = 64  # fire times stored per cron scheduler; refilled below 16 (lua SCH_LOW)
CATCH_UP = ("once", "skip")
UPSERT_OPTIONS = frozenset({"cron", "every", "tz", "job_name", "data", "job_options",
                            "start_date", "end_date", "limit", "catch_up"})
# The scheduler decides when and under which id each firing is added.
_SCHEDULER_CONTROLLED = frozenset({"delay", "job_id"})
# Not part of a firing's template: a firing never claims a dedup id (as in BullMQ, whose
# scheduler templates leave deduplication out); accepting it would ignore it silently.
_NOT_FOR_FIRINGS = frozenset({"dedup"})
# A firing is added ahead of its time, and expires counts from the add: none for firings
# (one in the queue's default options is left out of them).
_NO_EXPIRY = frozenset({"expires"})
_MAX_ID = 256
_MAX_MS = 2**41  # the delayed set's score (due_ms * 4096 + seq) must stay exact


class JobScheduler(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduler as stored. Times are seconds since the epoch; ``every`` is seconds."""

    id: str
    job_name: str
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    start_date: float | None = None
    end_date: float | None = None
    limit: int | None = None
    catch_up: str = "once"
    next_run: float | None = None
    last_run: float | None = None
    iterations: int = 0
    skipped: int = 0
    generation: int = 0
    ended: bool = False
    pending_job_id: str | None = None
    data: Any = None
    job_options: dict[str, Any] = {}


# ----- cron fire times (pure: no clock, no Redis) ----------------------------------------


def _zone(tz: Any) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"tz must be an IANA time zone name such as 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def _parse_cron(expr: Any) -> croniter:
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise ValueError(f"cron must be a 5-field expression such as '0 * * * *' "
                         f"(minute hour day month weekday), got {expr!r}")
    try:
        return croniter(expr, datetime(2000, 1, 1))
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from exc


def _every_hour(it: croniter) -> bool:
    hours = it.expanded[1]
    return hours == ["*"] or len(hours) == 24


def _instants(wall: datetime, zone: ZoneInfo, every_hour: bool) -> list[float]:
    """The instants (epoch s) at which the naive local time ``wall`` fires; see the DST rules."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    t0, t1 = first.timestamp(), second.timestamp()
    if t0 == t1:
        return [t0]
    # PEP 495: in a gap fold=0 maps *later* than fold=1; in a repeat it maps earlier.
    exists = datetime.fromtimestamp(t0, zone).replace(tzinfo=None) == wall
    if not exists:  # skipped wall time: run once after the gap, unless the hour is "*"
        return [] if every_hour else [t0]
    return [t0, t1] if every_hour else [t0]


def cron_fire_times(expr: str, tz: str, after: float, count: int, *,
                    end: float | None = None) -> list[float]:
    """The first ``count`` fire times strictly after ``after`` (epoch seconds), ascending,
    none later than ``end``. Pure: the caller supplies the clock, so tests can inject it.

    Fewer than ``count`` times means there are no more (the end date, or a cron that can
    never match again).
    """
    zone = _zone(tz)
    every_hour = _every_hour(_parse_cron(expr))
    # Wall times are walked in local order; their instants can come out of order around a
    # DST change (a repeated hour, a shifted gap time), so start a few hours early, collect,
    # and stop only once no later wall time can map before the count-th time found.
    margin = timedelta(hours=3)
    start_wall = datetime.fromtimestamp(after, zone).replace(tzinfo=None) - margin
    it = croniter(expr, start_wall)
    found: set[float] = set()
    for _ in range(100_000):  # a bound, whatever the expression
        try:
            wall = it.get_next(datetime)
        except CroniterBadDateError:
            break
        naive_utc = wall.replace(tzinfo=UTC).timestamp()
        for t in _instants(wall, zone, every_hour):
            if t > after and (end is None or t <= end):
                found.add(t)
        # No later wall time maps before this bound: UTC offsets move by less than 3 h
        # around any one date.
        offset = (wall.replace(tzinfo=zone, fold=0).utcoffset() or timedelta()).total_seconds()
        bound = naive_utc - offset - margin.total_seconds()
        if end is not None and bound > end:
            break
        if len(found) >= count and bound > sorted(found)[count - 1]:
            break
    return sorted(found)[:count]


def next_fire_time(expr: str, tz: str, now: float) -> float | None:
    """The first fire time after ``now``: a convenience over :func:`cron_fire_times`."""
    times = cron_fire_times(expr, tz, now, 1)
    return times[0] if times else None


# ----- validation ------------------------------------------------------------------------


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be an aware datetime (with tzinfo) or epoch seconds")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be epoch seconds or an aware datetime, got {value!r}")
    if not 0 <= value * 1000 < _MAX_MS:
        raise ValueError(f"{name} is out of range: {value!r}")
    return float(value)


def _ms(value: float | None) -> int:
    return -1 if value is None else round(value * 1000)


class _Upsert(msgspec.Struct):
    sig: str
    kind: str
    cron: str
    tz: str
    every_ms: int
    start_ms: int
    end_ms: int
    limit: int
    catch_up: str
    name: str
    data: bytes
    opts: bytes
    priority: int
    job_options: bytes


def _validate(queue: Queue, scheduler_id: Any, options: Mapping[str, Any]) -> _Upsert:
    unknown = set(options) - UPSERT_OPTIONS
    if unknown:
        raise TypeError(f"upsert_job_scheduler: unknown option(s) {', '.join(sorted(unknown))}; "
                        f"valid options are {', '.join(sorted(UPSERT_OPTIONS))}")
    validate_name("scheduler id", scheduler_id)
    if len(scheduler_id) > _MAX_ID:
        raise ValueError(f"scheduler id must be at most {_MAX_ID} characters")
    check_utf8("scheduler id", scheduler_id)
    cron, every = options.get("cron"), options.get("every")
    if (cron is None) == (every is None):
        raise ValueError("give exactly one of cron= (a cron expression) or every= (seconds)")
    tz = options.get("tz", "UTC")
    _zone(tz)
    start = _seconds("start_date", options.get("start_date"))
    end = _seconds("end_date", options.get("end_date"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end_date ({end}) must be after start_date ({start})")
    limit = options.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 (number of runs), got {limit!r}")
    catch_up = options.get("catch_up", "once")
    if catch_up not in CATCH_UP:
        raise ValueError(f"catch_up must be 'once' or 'skip', got {catch_up!r}")
    every_ms = 0
    if cron is not None:
        _parse_cron(cron)
        if not cron_fire_times(cron, tz, 946684800.0, 1):  # 2000-01-01: does it ever match?
            raise ValueError(f"cron expression {cron!r} never fires")
    else:
        if (isinstance(every, bool) or not isinstance(every, int | float)
                or not math.isfinite(every) or not 0.001 <= every <= 10 * 366 * 86400):
            raise ValueError(f"every must be seconds between 0.001 and 10 years, got {every!r}")
        every_ms = round(every * 1000)
    job_name = options.get("job_name", scheduler_id)
    if not isinstance(job_name, str) or not job_name:
        raise ValueError(f"job_name must be a non-empty string, got {job_name!r}")
    check_utf8("job_name", job_name)
    job_options = dict(options.get("job_options") or {})
    check_option_names(job_options, "job_options")
    controlled = _SCHEDULER_CONTROLLED & set(job_options)
    if controlled:
        raise TypeError(f"job_options: {', '.join(sorted(controlled))} cannot be set on a "
                        "scheduler (it decides when and under which id each firing is added)")
    if _NOT_FOR_FIRINGS & set(job_options):
        raise TypeError("job_options: dedup cannot be set on a scheduler: a scheduler keeps "
                        "one pending firing already, and its firings claim no dedup id")
    if _NO_EXPIRY & set(job_options):
        raise TypeError("job_options: expires cannot be set on a scheduler: it counts from a "
                        "job's add, and a firing is added ahead of its time")
    defaults = {k: v for k, v in queue.default_job_options.items() if k not in _NO_EXPIRY}
    resolved = resolve(defaults, job_options)
    data = codec.encode(options.get("data"), f"data of job scheduler {scheduler_id!r}")
    kind = "cron" if cron is not None else "every"
    start_ms = _ms(start)
    sig = f"{kind}|{cron or ''}|{tz}|{every_ms}|{start_ms}"
    return _Upsert(sig=sig, kind=kind, cron=cron or "", tz=tz, every_ms=every_ms,
                   start_ms=start_ms, end_ms=_ms(end), limit=limit or 0, catch_up=catch_up,
                   name=job_name, data=data, opts=encode_stored(resolved.stored),
                   priority=resolved.wire_priority,
                   job_options=codec.encode(job_options, "job_options"))


# ----- keys ------------------------------------------------------------------------------


def _keys(queue: Queue, scheduler_id: str) -> tuple[str, str, str, str]:
    base = queue.keys.base
    return (base + ":sch:h:" + scheduler_id, base + ":sch:t:" + scheduler_id,
            queue.keys.schedulers, base + ":schedulers:refill")


def _cron_batch(cron: str, tz: str, after_ms: int, now_s: float, start_ms: int,
                end_ms: int) -> tuple[list[int], bool]:
    """Times to store: the first after ``after_ms`` (a possible catch-up), then the batch
    after now, so a scheduler that was starved for days does not replay them batch by batch.
    Returns (times in ms, exhausted)."""
    end = None if end_ms < 0 else end_ms / 1000.0
    after = max(after_ms, start_ms - 1) / 1000.0
    times = cron_fire_times(cron, tz, after, CRON_BATCH, end=end)
    if times and times[0] < now_s:
        rest = cron_fire_times(cron, tz, max(now_s, times[0]), CRON_BATCH - 1, end=end)
        exhausted = len(rest) < CRON_BATCH - 1
        times = times[:1] + rest
    else:
        exhausted = len(times) < CRON_BATCH
    return [round(t * 1000) for t in times], exhausted


# ----- the API ---------------------------------------------------------------------------


async def upsert_job_scheduler(queue: Queue, scheduler_id: str, **options: Any) -> JobScheduler:
    """Creates or updates a job scheduler; see the module docstring for the semantics.

    Options: ``cron`` (5-field expression) or ``every`` (seconds), ``tz`` (IANA name, default
    "UTC", for cron), ``job_name`` (default: the scheduler id), ``data``, ``job_options``
    (those of ``Queue.add`` except ``delay``, ``job_id`` and ``dedup``), ``start_date``,
    ``end_date``, ``limit`` (number of runs) and ``catch_up`` ("once" or "skip"). Bad input raises
    ValueError or TypeError before anything is written. Idempotent: the same call from any
    number of processes leaves one scheduler and one pending firing.
    """
    u = _validate(queue, scheduler_id, options)
    times: list[int] = []
    exhausted = False
    if u.kind == "cron":
        # The server's clock decides every firing (the scripts' now), so the times start
        # from it, not from this machine's: a client clock running fast made the first
        # firings late. From a minute back: the script keeps only times after the server's
        # clock as it runs, a moment later.
        secs, micros = await queue.redis.time()
        now = secs + micros / 1e6
        times, exhausted = _cron_batch(u.cron, u.tz, round((now - 60) * 1000), now - 60,
                                       u.start_ms, u.end_ms)
    args: list[scripts.Arg] = [
        scheduler_id, u.sig, u.kind, u.cron, u.tz, u.every_ms, u.start_ms, u.end_ms, u.limit,
        u.catch_up, u.name, u.data, u.opts, u.priority, u.job_options,
        "1" if exhausted else "0", len(times), *times,
    ]
    reply = await queue._run("upsert_scheduler", args, _keys(queue, scheduler_id))
    if len(reply) > 2:  # firings workers hold were withdrawn or given the new template
        for firing, token in zip(_words(reply[2]), _words(reply[3]), strict=True):
            await holders_answer(queue, firing, token, int(reply[4]))
    found = await get_job_scheduler(queue, scheduler_id)
    if found is None:  # removed by someone else in between
        raise LookupError(f"job scheduler {scheduler_id!r} was removed right after the upsert")
    return found


def _decode(scheduler_id: str, h: Mapping[bytes, bytes]) -> JobScheduler:
    def text(field: bytes) -> str:
        return h.get(field, b"").decode()

    def num(field: bytes) -> int | None:
        raw = h.get(field, b"")
        return None if raw in (b"", b"-1") else int(raw)

    def sec(field: bytes) -> float | None:
        v = num(field)
        return None if v is None else v / 1000.0

    kind = text(b"kind")
    every_ms = num(b"every")
    jo = h.get(b"jo")
    return JobScheduler(
        id=scheduler_id, job_name=text(b"n"),
        cron=text(b"cron") if kind == "cron" else None,
        every=every_ms / 1000.0 if kind == "every" and every_ms else None,
        tz=text(b"tz") or "UTC", start_date=sec(b"start"), end_date=sec(b"end"),
        limit=num(b"limit") or None, catch_up=text(b"catch") or "once",
        next_run=sec(b"nxt"), last_run=sec(b"last"), iterations=num(b"ic") or 0,
        skipped=num(b"skipped") or 0, generation=num(b"gen") or 0,
        ended=text(b"ended") == "1", pending_job_id=text(b"nid") or None,
        data=codec.decode(h[b"d"], scheduler_id, "data") if h.get(b"d") else None,
        job_options=codec.decode(jo, scheduler_id, "job options") if jo else {},
    )


async def get_job_scheduler(queue: Queue, scheduler_id: str) -> JobScheduler | None:
    h = await queue.redis.hgetall(_keys(queue, scheduler_id)[0])
    return _decode(scheduler_id, h) if h else None


async def get_job_schedulers(queue: Queue, start: int = 0, end: int = -1) -> list[JobScheduler]:
    """The queue's schedulers, soonest next run first (ended ones last)."""
    ids = [x.decode() for x in await queue.redis.zrange(queue.keys.schedulers, start, end)]
    async with queue.redis.pipeline(transaction=False) as pipe:
        for sid in ids:
            pipe.hgetall(_keys(queue, sid)[0])
        hashes = await pipe.execute()
    return [_decode(sid, h) for sid, h in zip(ids, hashes, strict=True) if h]


async def remove_job_scheduler(queue: Queue, scheduler_id: str) -> bool:
    """Removes the scheduler and its pending firing (if not started); False if absent.

    A firing that a worker holds ahead of its start (waiting, to everyone else) is pending
    too: it is handed back and deleted, and this waits for that answer (about a round trip),
    as ``Queue.remove_job`` does; one its worker had started already runs on."""
    validate_name("scheduler id", scheduler_id)
    reply = await queue._run("remove_scheduler", [scheduler_id], _keys(queue, scheduler_id))
    if not isinstance(reply, list):
        return bool(reply)
    for firing in _words(reply[2]):
        await holders_answer(queue, firing, "", int(reply[1]))
    return bool(int(reply[0]))


def _words(raw: bytes | str) -> list[str]:
    """A script's space-separated list (firing ids hold no whitespace)."""
    return (raw.decode() if isinstance(raw, bytes) else str(raw)).split()


async def remove_all_job_schedulers(queue: Queue, batch: int = 100) -> int:
    """Removes every scheduler of the queue (each one with its own bounded script call), e.g.
    as part of ``Queue.obliterate``. Returns how many were removed."""
    total = 0
    while True:
        ids = [x.decode() for x in await queue.redis.zrange(queue.keys.schedulers, 0, batch - 1)]
        if not ids:
            return total
        for sid in ids:  # the script drops the index entry even if the hash is gone
            total += await remove_job_scheduler(queue, sid)


async def refill_due(queue: Queue, batch: int = 50, grace: float = 5.0) -> int:
    """Scheduler upkeep for a worker's maintenance loop: tops up cron time lists that ran
    low and repairs schedulers whose pending firing was deleted by hand. One script call when
    there is nothing to do. Safe to run from every worker at once. Returns the number of
    schedulers refilled or repaired.
    """
    base = queue.keys.base
    reply = await queue._run("scheduler_maint", [round(grace * 1000), batch],
                             (queue.keys.schedulers, base + ":schedulers:refill"))
    done = int(reply[0])
    server_now = int(reply[1]) / 1000.0
    items = reply[2:]
    for i in range(0, len(items), 7):
        sid, gen, cron, tz = (x.decode() for x in items[i:i + 4])
        after_ms, start_ms, end_ms = (int(x or b"-1") for x in items[i + 4:i + 7])
        try:
            # The server's clock, as every firing is decided on it: this machine's clock
            # running fast made the list skip the times between the two.
            times, exhausted = _cron_batch(cron, tz, after_ms, server_now, start_ms, end_ms)
        except ValueError:
            continue  # e.g. a time zone this machine does not know; another worker may
        await queue._run("refill_scheduler", [sid, gen, end_ms, "1" if exhausted else "0",
                                              len(times), *times], _keys(queue, sid))
        done += 1
    return done


__all__ = [
    "CATCH_UP",
    "JobScheduler",
    "cron_fire_times",
    "get_job_scheduler",
    "get_job_schedulers",
    "next_fire_time",
    "refill_due",
    "remove_all_job_schedulers",
    "remove_job_scheduler",
    "upsert_job_scheduler",
]
