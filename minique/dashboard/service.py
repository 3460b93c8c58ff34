"""What the dashboard knows and does: one place that both the JSON API and the pages call.

Every function returns plain JSON-ready values (dicts, lists, str, numbers). Bad input raises
``ApiError`` (a 4xx with a stable ``code``); minique's own errors are mapped in ``api.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import InvalidJobState, JobCorrupted, JobNotFound
from ..flows import flow_links
from ..groups import GroupInfo, GroupLimiter
from ..job import Job
from ..keys import DEFAULT_PREFIX, validate_name, validate_prefix
from ..queue import STATES, Queue
from ..scheduler import get_job_scheduler
from .fingerprint import fingerprint

MAX_STRING = 2000  # characters of one string field shown before it is cut
MAX_ITEMS = 100  # items of one list or dict shown before it is cut
MAX_DEPTH = 8
SEARCH_SCAN = 2000  # jobs of one state scanned by a name search
DEAD_SCAN = 2000  # newest failed jobs that the dead-letter view groups
DISCOVERY_COUNT = 1000  # SCAN COUNT per call when discovering queues
DISCOVERY_CALLS = 200  # at most this many SCAN calls (so at most ~200k keys looked at)
DISCOVERY_TTL = 5.0  # seconds a discovery result is reused
MAX_QUEUES = 500
MAX_IDS = 1000  # ids per bulk action request
MAX_WAITING_OFFSET = 100_000
MAX_LOG_LINES = 1000  # log lines per logs request
MAX_LOG_INDEX = 10**12  # a log index beyond any list (LRANGE refuses numbers past int64)
CLEAN_STATES = ("completed", "failed", "waiting", "delayed")
GROUP_ORDERS = ("waiting", "active", "paused", "throttled")
GROUP_ACTIVE_SCAN = 1000  # running jobs looked at to find one group's (bounded)


class ApiError(Exception):
    """A client error: ``status`` (4xx), a short machine-readable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ----- making values JSON-ready, with large fields cut ---------------------------------------


def jsonable(value: Any, *, cut: bool = True, depth: int = 0) -> Any:
    """A JSON-ready copy of a decoded payload; long strings, lists and dicts are cut when
    ``cut`` (the cut is said in the value itself, e.g. ``"… (12,000 more characters)"``)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if cut and len(value) > MAX_STRING:
            return value[:MAX_STRING] + f"… ({len(value) - MAX_STRING:,} more characters)"
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        shown = raw[:64].hex()
        return f"<{len(raw):,} bytes: {shown}{'…' if len(raw) > 64 else ''}>"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if cut and depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if cut and i >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS:,} more keys"
                break
            out[str(k)] = jsonable(v, cut=cut, depth=depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        shown_items = items[:MAX_ITEMS] if cut else items
        result = [jsonable(v, cut=cut, depth=depth + 1) for v in shown_items]
        if cut and len(items) > MAX_ITEMS:
            result.append(f"… {len(items) - MAX_ITEMS:,} more items")
        return result
    return jsonable(repr(value), cut=cut, depth=depth)


def _decoded(getter: Any, *, cut: bool) -> Any:
    try:
        return jsonable(getter(), cut=cut)
    except JobCorrupted as exc:
        return f"<cannot be decoded: {exc}>"


def shown_reason(reason: str | None, hidden: bool) -> str | None:
    """The failure reason as shown: in a queue whose data is hidden, only the exception type
    (a reason's message often quotes the payload: an address, an amount, a URL)."""
    if not reason:
        return None
    if hidden:
        kind = fingerprint(reason).type
        return f"{kind}: (message hidden)" if kind else "(message hidden)"
    return str(jsonable(reason))


def shown_progress(job: Job, hidden: bool) -> Any:
    progress = _decoded(lambda: job.progress, cut=True)
    if hidden and not isinstance(progress, int | float):
        return "(hidden)"  # a dict of progress may carry content; a number carries none
    return progress


def job_summary(job: Job, hidden: bool = False) -> dict[str, Any]:
    """The fields a job list shows (no payload; no error message when ``hidden``)."""
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "priority": job.priority,
        "lifo": job.lifo,
        "attempts_made": job.attempts_made,
        "attempts": job.opts.attempts,
        "timestamp": job.timestamp,
        "processed_on": job.processed_on,
        "finished_on": job.finished_on,
        "delay_until": job.delay_until,
        "failed_reason": shown_reason(job.failed_reason, hidden),
        "progress": shown_progress(job, hidden),
        "actions": allowed_actions(job.state or ""),
    }


class Corrupted:
    """A listed job whose stored hash does not decode: listed with its error, so one bad job
    neither hides the others of its page nor escapes being removed."""

    def __init__(self, job_id: str, state: str, error: str) -> None:
        self.id = job_id
        self.name = ""
        self.state = state
        self.error = error


def corrupted_summary(job: Corrupted) -> dict[str, Any]:
    """The list row of a job that cannot be decoded: the fields of ``job_summary``, empty."""
    return {"id": job.id, "name": "(cannot be decoded)", "state": job.state, "priority": 0,
            "attempts_made": 0, "attempts": 0, "timestamp": None, "processed_on": None,
            "finished_on": None, "delay_until": None, "failed_reason": job.error,
            "progress": None, "corrupted": job.error, "actions": ["remove"]}


def summary(job: Job | Corrupted, hidden: bool) -> dict[str, Any]:
    return corrupted_summary(job) if isinstance(job, Corrupted) else job_summary(job, hidden)


def job_options(job: Job) -> dict[str, Any]:
    o = job.opts
    return {
        "attempts": o.attempts,
        "backoff": None if o.backoff is None else {
            "type": o.backoff.type, "delay": o.backoff.delay, "jitter": o.backoff.jitter,
            "max_delay": o.backoff.max_delay},
        "timeout": o.timeout,
        "priority": job.priority,
        "lifo": job.lifo,
        "remove_on_complete": {"count": o.keep_completed.count, "age": o.keep_completed.age},
        "remove_on_fail": {"count": o.keep_failed.count, "age": o.keep_failed.age},
        "keep_logs": o.keep_logs,
    }


# ----- the service -------------------------------------------------------------------------


class Dashboard:
    """The dashboard's view of one Redis: its queues, their jobs, and the actions on them."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        queues: Sequence[str] | None = None,
        hidden_data_queues: Iterable[str] = (),
    ) -> None:
        self.redis = redis
        self.prefix = validate_prefix(prefix)
        self.fixed_queues = None if queues is None else [validate_name("queue name", q)
                                                          for q in queues]
        self.hidden = frozenset(hidden_data_queues)
        self._queues: dict[str, Queue] = {}
        self._discovered: list[str] = []
        self._discovered_at = -1e9
        self._discovery_lock = asyncio.Lock()
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix)
        self._match = "{" + escaped + ":*}:[mirsw]*"
        self._key_re = re.compile(r"^\{" + re.escape(self.prefix) +
                                  r":([^{}\s]+)\}:(meta|id|ready|workers|schedulers)$")

    # ----- queues --------------------------------------------------------------------------

    async def queue_names(self, *, fresh: bool = False) -> list[str]:
        """The configured queues, or those found by a bounded SCAN of the queues' keys."""
        if self.fixed_queues is not None:
            return list(self.fixed_queues)
        async with self._discovery_lock:
            if fresh or time.monotonic() - self._discovered_at > DISCOVERY_TTL:
                self._discovered = await self._discover()
                self._discovered_at = time.monotonic()
            return list(self._discovered)

    async def _discover(self) -> list[str]:
        # A queue has a ':meta' hash once anything but a plain add touched it, an ':id'
        # counter once a job got a generated id, a ':ready' stream while jobs wait, a
        # ':workers' set while workers serve it and a ':schedulers' index while it has
        # schedulers: one pattern catches all five (other keys it matches are skipped).
        found: set[str] = set()
        cursor: Any = 0
        for _ in range(DISCOVERY_CALLS):
            cursor, keys = await self.redis.scan(cursor, match=self._match, count=DISCOVERY_COUNT)
            for raw in keys:
                key = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                m = self._key_re.match(key)
                if m:
                    found.add(m.group(1))
            if int(cursor) == 0 or len(found) >= MAX_QUEUES:
                break
        return sorted(found)[:MAX_QUEUES]

    async def queue(self, name: str) -> Queue:
        """The queue named ``name``; ApiError 404 if the dashboard does not know it."""
        names = await self.queue_names()
        if name not in names and self.fixed_queues is None:
            names = await self.queue_names(fresh=True)
        if name not in names:
            raise ApiError(404, "queue_not_found", f"no queue named {name!r}")
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(name, connection=self.redis, prefix=self.prefix)
        return q

    def data_hidden(self, queue: str) -> bool:
        return queue in self.hidden

    async def queue_info(self, name: str, *, minutes: int = 0) -> dict[str, Any]:
        q = await self.queue(name)
        stats, paused, workers, metrics = await asyncio.gather(
            q.get_stats(), q.is_paused(), q.get_workers(), q.get_metrics(max(1, minutes)))
        info: dict[str, Any] = {
            "name": name,
            "paused": paused,
            "counts": stats,
            "workers": len(workers),
            "totals": metrics["totals"],
            "data_hidden": self.data_hidden(name),
        }
        if minutes:
            info["throughput"] = {k: metrics[k] for k in ("minutes", "completed", "failed")}
        return info

    async def queues(self) -> list[dict[str, Any]]:
        names = await self.queue_names()
        return list(await asyncio.gather(*(self.queue_info(n) for n in names)))

    async def throughput(self, names: Sequence[str], minutes: int) -> dict[str, Any]:
        check_int("minutes", minutes, 1, 120)
        first_minute = int(time.time() // 60) - minutes + 1
        out = {"minutes": [(first_minute + i) * 60 for i in range(minutes)],
               "completed": [0] * minutes, "failed": [0] * minutes}
        queues = [await self.queue(n) for n in names]
        for m in await asyncio.gather(*(q.get_metrics(minutes) for q in queues)):
            # Metrics of each queue may straddle a minute boundary; align on the minute.
            for i, minute in enumerate(m["minutes"]):
                j = minute // 60 - first_minute
                if 0 <= j < minutes:
                    out["completed"][j] += m["completed"][i]
                    out["failed"][j] += m["failed"][i]
        return out

    async def workers(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Live worker processes of the queues. A process that serves several queues (one
        ``Worker`` per queue, as ``minique worker --queue a --queue b`` runs them) is one
        entry with every queue, its counters summed; ``id`` is ``host:pid``."""
        if names is None:
            names = await self.queue_names()
        queues = [await self.queue(n) for n in names]
        merged: dict[str, dict[str, Any]] = {}
        for infos in await asyncio.gather(*(q.get_workers() for q in queues)):
            for w in infos:
                pid_key = f"{w.host}:{w.pid}"
                entry = merged.get(pid_key)
                if entry is None:
                    entry = merged[pid_key] = {
                        "id": pid_key, "name": w.name, "names": [], "host": w.host, "pid": w.pid,
                        "queues": [], "started_at": w.started_at, "last_seen": w.last_seen,
                        "jobs_done": 0, "jobs_failed": 0, "concurrency": 0, "running": [],
                        "running_jobs": [], "manual": False, "_seen": set(),
                    }
                # The same worker is listed by each queue it serves: count it once.
                if w.name not in entry["_seen"]:
                    entry["_seen"].add(w.name)
                    entry["names"].append(w.name)
                    entry["jobs_done"] += w.jobs_done
                    entry["jobs_failed"] += w.jobs_failed
                    entry["concurrency"] += w.concurrency
                    entry["manual"] = entry["manual"] or w.kind == "manual"
                    entry["started_at"] = min(entry["started_at"], w.started_at)
                    entry["queues"] = sorted({*entry["queues"], *w.queues})
                    entry["running"] = sorted({*entry["running"], *w.running})
                    entry["running_jobs"].extend(
                        {"queue": qn, "id": j} for qn in w.queues[:1] for j in w.running)
                entry["last_seen"] = max(entry["last_seen"], w.last_seen)
        for entry in merged.values():
            del entry["_seen"]
            entry["names"].sort()
            entry["name"] = entry["names"][0] if len(entry["names"]) == 1 else entry["id"]
        return sorted(merged.values(), key=lambda w: (w["host"], w["pid"]))

    async def worker(self, worker_id: str) -> dict[str, Any]:
        """One worker process (``host:pid``, or a worker's name) and the jobs it runs now."""
        for w in await self.workers():
            if worker_id == w["id"] or worker_id in w["names"]:
                running = []
                for ref in w["running_jobs"][:200]:
                    q = await self.queue(ref["queue"])
                    job = await q.get_job(ref["id"])
                    if job is not None:
                        running.append({**job_summary(job, self.data_hidden(ref["queue"])),
                                        "queue": ref["queue"]})
                return {**w, "running_detail": running}
        raise ApiError(404, "worker_not_found", f"no live worker {worker_id!r} (workers that "
                       "stopped sending heartbeats are forgotten)")

    async def overview(self, minutes: int = 60) -> dict[str, Any]:
        names = await self.queue_names()
        queues, throughput, workers = await asyncio.gather(
            asyncio.gather(*(self.queue_info(n) for n in names)),
            self.throughput(names, minutes),
            self.workers(names),
        )
        totals = {s: 0 for s in (*STATES, "total")}
        for q in queues:
            for s in totals:
                totals[s] += q["counts"][s]
        return {"queues": list(queues), "counts": totals, "throughput": throughput,
                "workers": workers, "generated_at": time.time()}

    # ----- jobs ----------------------------------------------------------------------------

    async def _load(self, q: Queue, state: str, start: int, end: int) -> list[Job | Corrupted]:
        """The jobs of ``state`` ranked ``start`` to ``end``; a job whose hash does not decode
        is a ``Corrupted`` entry instead of an error for the whole page."""
        return [Corrupted(job_id, state, str(job)) if isinstance(job, JobCorrupted) else job
                for job_id, job in await q.get_jobs_or_errors(state, start, end)]

    async def jobs(self, name: str, state: str, *, page: int = 1, page_size: int = 25,
                   search: str = "") -> dict[str, Any]:
        """One page of the jobs of ``state``; ``search`` matches an exact id or part of a name."""
        if state not in STATES:
            raise ApiError(400, "bad_state", f"state must be one of {', '.join(STATES)}, got {state!r}")
        check_int("page", page, 1, 1_000_000)
        check_int("page_size", page_size, 1, 200)
        q = await self.queue(name)
        counts = await q.get_stats()
        start = (page - 1) * page_size
        if state == "waiting" and start > MAX_WAITING_OFFSET:
            # Waiting jobs are read from the stream from its start: deep pages cost O(offset).
            raise ApiError(400, "bad_parameter", f"waiting jobs can be paged up to offset "
                           f"{MAX_WAITING_OFFSET:,}; search by id instead")
        search = search.strip()
        truncated = False
        jobs: list[Job | Corrupted]
        if not search:
            jobs = await self._load(q, state, start, start + page_size - 1) if start < counts[state] else []
            total = counts[state]
        else:
            matches: list[Job | Corrupted] = []
            seen: set[str] = set()
            try:
                exact = await q.get_job(search) if len(search) <= 512 else None
            except JobCorrupted as exc:
                exact = None
                if await q.get_state(search) == state:
                    matches.append(Corrupted(search, state, str(exc)))
                    seen.add(search)
            if exact is not None and exact.state == state:
                matches.append(exact)
                seen.add(exact.id)
            needle = search.lower()
            scanned = 0
            while scanned < min(counts[state], SEARCH_SCAN):
                batch = await self._load(q, state, scanned, scanned + 499)
                if not batch:
                    break
                scanned += 500
                matches.extend(j for j in batch if j.id not in seen and needle in j.name.lower())
            truncated = counts[state] > SEARCH_SCAN
            total = len(matches)
            jobs = matches[start:start + page_size]
        return {
            "queue": name, "state": state, "page": page, "page_size": page_size, "total": total,
            "pages": max(1, -(-total // page_size)), "search": search, "truncated": truncated,
            "counts": counts, "jobs": [summary(j, self.data_hidden(name)) for j in jobs],
        }

    async def _job(self, name: str, job_id: str) -> tuple[Queue, Job]:
        q = await self.queue(name)
        if not job_id or len(job_id) > 512:
            raise ApiError(400, "bad_job_id", "job ids are 1 to 512 characters")
        try:
            job = await q.get_job(job_id)
        except JobCorrupted as exc:
            raise ApiError(422, "job_corrupted", str(exc)) from exc
        if job is None:
            raise ApiError(404, "job_not_found", f"queue {name!r} has no job {job_id!r}")
        return q, job

    async def job(self, name: str, job_id: str, *, full: bool = False) -> dict[str, Any]:
        q, job = await self._job(name, job_id)
        state = await q.get_state(job_id)
        hidden = self.data_hidden(name)
        logs = [] if hidden else await q.get_job_logs(job_id, -200, -1)
        attempts = [
            {"number": a.number, "outcome": a.outcome, "worker": a.worker,
             "started_at": a.started_at, "ended_at": a.ended_at, "duration": a.duration,
             "error": shown_reason(a.error, hidden)}
            for a in await q.get_job_attempts(job_id)]
        return {
            **job_summary(job, hidden),
            "queue": name,
            "state": state,
            "attempts_started": job.attempts_started,
            "stalled_count": job.stalled_count,
            "options": job_options(job),
            "data_hidden": hidden,
            "data": None if hidden else _decoded(lambda: job.data, cut=not full),
            "return_value": None if hidden else _decoded(lambda: job.return_value, cut=not full),
            "failed_reason": (shown_reason(job.failed_reason, hidden) if hidden
                              else jsonable(job.failed_reason, cut=not full)),
            "stacktrace": None if hidden else job.stacktrace,
            "logs": [jsonable(line, cut=not full) for line in logs],
            "attempt_history": attempts,
            "actions": allowed_actions(state),
            "flow": await flow_links(q, job_id),
        }

    async def job_logs(self, name: str, job_id: str, start: int = 0, end: int = -1,
                       *, full: bool = False) -> dict[str, Any]:
        """Log lines ``start`` to ``end`` (inclusive; negative counts from the last line, as
        in LRANGE), at most MAX_LOG_LINES of them, each cut at MAX_STRING unless ``full``."""
        for label, value in (("start", start), ("end", end)):
            check_int(label, value, -MAX_LOG_INDEX, MAX_LOG_INDEX)
        q, _ = await self._job(name, job_id)
        if self.data_hidden(name):
            return {"queue": name, "id": job_id, "logs": [], "data_hidden": True}
        total = int(await self.redis.llen(q.keys.logs(job_id)))
        first = max(0, start + total if start < 0 else start)
        last = min(total - 1, end + total if end < 0 else end)
        truncated = last - first + 1 > MAX_LOG_LINES
        if truncated:
            last = first + MAX_LOG_LINES - 1
        lines = await q.get_job_logs(job_id, first, last) if first <= last else []
        return {"queue": name, "id": job_id, "total": total, "start": first,
                "end": first + len(lines) - 1, "truncated": truncated,
                "logs": [jsonable(line, cut=not full) for line in lines]}

    async def job_action(self, name: str, job_id: str, action: str) -> dict[str, Any]:
        if action == "remove":
            # Removing needs no decoded job: a job whose hash is corrupted can be removed.
            q = await self.queue(name)
            if not job_id or len(job_id) > 512:
                raise ApiError(400, "bad_job_id", "job ids are 1 to 512 characters")
            if not await q.remove_job(job_id):
                raise ApiError(404, "job_not_found", f"queue {name!r} has no job {job_id!r}")
            return {"ok": True, "queue": name, "id": job_id, "action": action,
                    "state": await q.get_state(job_id)}
        q, _ = await self._job(name, job_id)
        if action == "retry":
            await q.retry_job(job_id)
        elif action == "promote":
            await q.promote_job(job_id)
        elif action == "cancel":
            if not await q.cancel(job_id):
                raise ApiError(409, "invalid_state", f"job {job_id} is not active, so it cannot be "
                               "cancelled")
        else:
            raise ApiError(404, "unknown_action", f"no job action {action!r}")
        return {"ok": True, "queue": name, "id": job_id, "action": action,
                "state": await q.get_state(job_id)}

    # ----- queue actions -------------------------------------------------------------------

    async def pause(self, name: str, paused: bool) -> dict[str, Any]:
        q = await self.queue(name)
        await (q.pause() if paused else q.resume())
        return {"ok": True, "queue": name, "paused": await q.is_paused()}

    async def drain(self, name: str, delayed: bool) -> dict[str, Any]:
        q = await self.queue(name)
        return {"ok": True, "queue": name, "removed": await q.drain(delayed=delayed)}

    async def clean(self, name: str, state: str, grace: float, limit: int) -> dict[str, Any]:
        if state not in CLEAN_STATES:
            raise ApiError(400, "bad_state", f"clean takes state {', '.join(CLEAN_STATES)}, got {state!r}")
        if not 0 <= grace <= 10 * 365 * 86400:
            raise ApiError(400, "bad_parameter", f"grace must be seconds >= 0, got {grace}")
        check_int("limit", limit, 1, 100_000)
        q = await self.queue(name)
        removed = await q.clean(grace, state=state, limit=limit)
        return {"ok": True, "queue": name, "state": state, "removed": len(removed),
                "ids": removed[:100]}

    async def retry_all(self, name: str, state: str) -> dict[str, Any]:
        if state not in ("failed", "completed"):
            raise ApiError(400, "bad_state", f"retry takes state 'failed' or 'completed', got {state!r}")
        q = await self.queue(name)
        return {"ok": True, "queue": name, "retried": await q.retry_jobs(state=state)}

    async def promote_all(self, name: str) -> dict[str, Any]:
        q = await self.queue(name)
        return {"ok": True, "queue": name, "promoted": await q.promote_jobs()}

    # ----- groups --------------------------------------------------------------------------

    async def groups(self, name: str, *, by: str = "waiting", page: int = 1,
                     page_size: int = 50) -> dict[str, Any]:
        """One page of the queue's groups in one ordering (``GROUP_ORDERS``): the busiest by
        waiting or running jobs, the paused ones, the throttled ones; with the counts of
        each ordering and the group defaults."""
        if by not in GROUP_ORDERS:
            raise ApiError(400, "bad_parameter", f"by must be one of {', '.join(GROUP_ORDERS)}, "
                           f"got {by!r}")
        check_int("page", page, 1, 100_000)
        check_int("page_size", page_size, 1, 200)
        q = await self.queue(name)
        counts, defaults = await asyncio.gather(q.get_group_counts(), q.get_group_defaults())
        start = (page - 1) * page_size
        infos = await q.get_groups(start, start + page_size - 1, by=by)
        total = {"waiting": counts.groups, "active": counts.active, "paused": counts.paused,
                 "throttled": counts.throttled}[by]
        return {"queue": name, "by": by, "page": page, "page_size": page_size, "total": total,
                "pages": max(1, -(-total // page_size)),
                "counts": {"groups": counts.groups, "active": counts.active,
                           "paused": counts.paused, "throttled": counts.throttled,
                           "ready": counts.ready},
                "defaults": {"concurrency": defaults.concurrency,
                             "limiter": limiter_dict(defaults.limiter)},
                "groups": [group_dict(g) for g in infos]}

    async def group(self, name: str, group: str, *, page: int = 1,
                    page_size: int = 25) -> dict[str, Any]:
        """One group: its stats, a page of its waiting jobs in the order it starts them, and
        its running jobs (found among the queue's first GROUP_ACTIVE_SCAN running ones)."""
        check_int("page", page, 1, 100_000)
        check_int("page_size", page_size, 1, 200)
        q = await self.queue(name)
        info = await q.get_group(group)
        if info is None:
            raise ApiError(404, "group_not_found", f"queue {name!r} has no group {group!r} (a "
                           "group with nothing waiting or running and no settings is forgotten)")
        start = (page - 1) * page_size
        hidden = self.data_hidden(name)
        waiting = await q.get_group_jobs(group, start, start + page_size - 1)
        active_ids = await q.get_job_ids("active", 0, GROUP_ACTIVE_SCAN - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in active_ids:
                pipe.hget(q.keys.job(job_id), "g")
            owners = await pipe.execute()
        mine = [i for i, g in zip(active_ids, owners, strict=True) if g == group.encode()]
        found = [await q.get_job(job_id) for job_id in mine[:200]]
        running = [j for j in found if j is not None and j.state == "active"]
        return {"queue": name, "group": group_dict(info), "page": page, "page_size": page_size,
                "total": info.waiting, "pages": max(1, -(-info.waiting // page_size)),
                "jobs": [job_summary(j, hidden) for j in waiting],
                "running": [job_summary(j, hidden) for j in running],
                "running_scanned": len(active_ids),
                "paused_queue": await q.is_paused()}

    async def group_action(self, name: str, group: str, action: str) -> dict[str, Any]:
        """``pause`` or ``resume`` one group; other groups go on."""
        q = await self.queue(name)
        if action == "pause":
            await q.pause_group(group)
        elif action == "resume":
            await q.resume_group(group)
        else:
            raise ApiError(404, "unknown_action", f"no group action {action!r}")
        info = await q.get_group(group)
        return {"ok": True, "queue": name, "group": group, "action": action,
                "paused": bool(info and info.paused)}

    # ----- job schedulers ------------------------------------------------------------------

    async def schedulers(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The job schedulers of the queues (every queue by default), with each one's
        pending firing and its state."""
        if names is None:
            names = await self.queue_names()
        out: list[dict[str, Any]] = []
        for name in names:
            q = await self.queue(name)
            hidden = self.data_hidden(name)
            for s in await q.get_job_schedulers():
                pending = await q.get_state(s.pending_job_id) if s.pending_job_id else None
                out.append({
                    "queue": name, "id": s.id, "job_name": s.job_name, "cron": s.cron,
                    "every": s.every, "tz": s.tz, "next_run": s.next_run, "last_run": s.last_run,
                    "iterations": s.iterations, "skipped": s.skipped, "limit": s.limit,
                    "start_date": s.start_date, "end_date": s.end_date, "catch_up": s.catch_up,
                    "ended": s.ended, "pending_job_id": s.pending_job_id, "pending_state": pending,
                    "data_hidden": hidden,
                    "data": None if hidden else jsonable(s.data),
                    "job_options": None if hidden else jsonable(s.job_options),
                })
        return {"schedulers": out}

    async def scheduler_action(self, name: str, scheduler_id: str, action: str) -> dict[str, Any]:
        """``run`` adds one job now from the scheduler's template (its schedule is unchanged);
        ``remove`` deletes the scheduler and its pending firing."""
        q = await self.queue(name)
        s = await get_job_scheduler(q, scheduler_id)
        if s is None:
            raise ApiError(404, "scheduler_not_found", f"queue {name!r} has no scheduler {scheduler_id!r}")
        if action == "run":
            job = await q.add(s.job_name, s.data, **s.job_options)
            return {"ok": True, "queue": name, "id": scheduler_id, "action": action, "job_id": job.id}
        if action == "remove":
            await q.remove_job_scheduler(scheduler_id)
            return {"ok": True, "queue": name, "id": scheduler_id, "action": action}
        raise ApiError(404, "unknown_action", f"no scheduler action {action!r}")

    # ----- dead letters --------------------------------------------------------------------

    async def _dead_jobs(self, q: Queue, include_all: bool) -> tuple[list[Job], int, bool]:
        total = (await q.get_stats())["failed"]
        jobs: list[Job] = []
        for start in range(0, min(total, DEAD_SCAN), 500):
            batch = await self._load(q, "failed", start, min(start + 499, DEAD_SCAN - 1))
            # A job that cannot be decoded is listed (and removable) among the failed jobs.
            jobs.extend(j for j in batch if isinstance(j, Job)
                        and (include_all or j.attempts_made >= j.opts.attempts))
        return jobs, min(total, DEAD_SCAN), total > DEAD_SCAN

    async def dead_letters(self, name: str, *, include_all: bool = False,
                           per_group: int = 50) -> dict[str, Any]:
        """Failed jobs that used up their attempts (every failed job with ``include_all``),
        newest first, grouped by error."""
        check_int("per_group", per_group, 1, 1000)
        q = await self.queue(name)
        jobs, scanned, truncated = await self._dead_jobs(q, include_all)
        hidden = self.data_hidden(name)
        groups: dict[str, dict[str, Any]] = {}
        for job in jobs:  # newest first, so a group's first job is its latest failure
            fp = fingerprint(job.failed_reason)
            g = groups.get(fp.key)
            if g is None:
                g = groups[fp.key] = {
                    "key": fp.key, "type": fp.type,
                    "fingerprint": None if hidden else fp.template,
                    "reason": shown_reason(job.failed_reason or "(no reason)", hidden),
                    "count": 0, "names": {}, "latest": job.finished_on, "jobs": []}
            g["count"] += 1
            g["latest"] = max(g["latest"] or 0.0, job.finished_on or 0.0)
            g["names"][job.name] = g["names"].get(job.name, 0) + 1
            if len(g["jobs"]) < per_group:
                g["jobs"].append(job_summary(job, hidden))
        # The biggest group first; among equals, the one that failed most recently.
        ordered = sorted(groups.values(), key=lambda g: (-g["count"], -(g["latest"] or 0.0)))
        return {"queue": name, "include_all": include_all, "total": len(jobs), "scanned": scanned,
                "truncated": truncated, "data_hidden": hidden, "groups": ordered}

    async def _dead_ids(self, q: Queue, ids: Sequence[str] | None, group: str | None,
                        include_all: bool) -> list[str]:
        if bool(ids) == bool(group):
            raise ApiError(400, "bad_parameter", "give either 'ids' (a list of job ids) or 'group'")
        if ids:
            if len(ids) > MAX_IDS:
                raise ApiError(400, "bad_parameter", f"at most {MAX_IDS} ids per request")
            return list(dict.fromkeys(ids))
        jobs, _, _ = await self._dead_jobs(q, include_all)
        picked = [j.id for j in jobs if group_key(j.failed_reason) == group]
        if not picked:
            raise ApiError(404, "group_not_found", f"no dead-letter group {group!r}")
        return picked[:MAX_IDS]

    async def dead_letter_action(self, name: str, action: str, *, ids: Sequence[str] | None = None,
                                 group: str | None = None, include_all: bool = False) -> dict[str, Any]:
        if action not in ("requeue", "delete"):
            raise ApiError(404, "unknown_action", f"no dead-letter action {action!r}")
        q = await self.queue(name)
        targets = await self._dead_ids(q, ids, group, include_all)
        done: list[str] = []
        skipped: list[dict[str, str]] = []
        for job_id in targets:
            try:
                if action == "requeue":
                    state = await q.get_state(job_id)
                    if state != "failed":
                        raise InvalidJobState(f"job {job_id} is {state}, not failed")
                    await q.retry_job(job_id)
                else:
                    state = await q.get_state(job_id)
                    if state != "failed":
                        raise InvalidJobState(f"job {job_id} is {state}, not failed")
                    await q.remove_job(job_id)
                done.append(job_id)
            except (InvalidJobState, JobNotFound) as exc:
                skipped.append({"id": job_id, "error": str(exc)})
        key = "requeued" if action == "requeue" else "deleted"
        return {"ok": True, "queue": name, key: len(done), "ids": done, "skipped": skipped}


def limiter_dict(limiter: GroupLimiter | None) -> dict[str, Any] | None:
    return None if limiter is None else {"max": limiter.max, "duration": limiter.duration}


def group_dict(g: GroupInfo) -> dict[str, Any]:
    """A GroupInfo as JSON (times are Unix seconds or None)."""
    return {"id": g.id, "waiting": g.waiting, "active": g.active, "concurrency": g.concurrency,
            "limiter": limiter_dict(g.limiter), "paused": g.paused,
            "rate_limited_until": g.rate_limited_until, "sleeping_until": g.sleeping_until,
            "window_starts": g.window_starts}


def group_key(reason: str | None) -> str:
    """The dead-letter group of a failure reason: its fingerprint's key."""
    return fingerprint(reason).key


def allowed_actions(state: str) -> list[str]:
    return {
        "waiting": ["remove"],
        "paused": ["remove"],
        "delayed": ["promote", "remove"],
        "active": ["cancel"],
        "completed": ["retry", "remove"],
        "failed": ["retry", "remove"],
    }.get(state, [])


def check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value
