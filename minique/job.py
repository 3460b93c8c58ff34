"""A job as seen from Python: its fields, and the actions that take it from state to state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import codec, waiter
from .errors import JobCorrupted, JobNotFound
from .options import StoredOptions, decode_stored

if TYPE_CHECKING:
    from .queue import Queue

_UNSET: Any = object()


def _ms_to_s(raw: Any) -> float | None:
    if raw in (None, b"", ""):
        return None
    return int(raw) / 1000.0


def public_state(stored: str) -> str:
    """The state users see: a job a worker holds ahead (stored "held") is waiting; one
    removed while held (stored "removed", deleted when handed back) is gone."""
    if stored == "held":
        return "waiting"
    return "unknown" if stored == "removed" else stored


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


class Job:
    """A job of a queue. ``data`` and ``return_value`` are decoded on first access."""

    __slots__ = (
        "_counts",
        "_data",
        "_data_raw",
        "_progress_raw",
        "_queue",
        "_rv",
        "_rv_raw",
        "attempts_made",
        "attempts_started",
        "ctx",
        "delay_until",
        "failed_reason",
        "finished_on",
        "group",
        "id",
        "lifo",
        "name",
        "opts",
        "payload",
        "priority",
        "processed_on",
        "stacktrace",
        "stalled_count",
        "state",
        "timestamp",
        "token",
    )

    def __init__(
        self,
        queue: Queue | None,
        job_id: str,
        name: str,
        data_raw: bytes | None,
        opts: StoredOptions,
        *,
        data: Any = _UNSET,
        priority: int = 0,
        timestamp: float = 0.0,
        attempts_made: int = 0,
        attempts_started: int = 0,
        stalled_count: int = 0,
        state: str | None = None,
        token: str | None = None,
    ) -> None:
        self._fill(queue, job_id, name, data_raw, data, opts, priority, timestamp,
                   attempts_made, attempts_started, stalled_count, state, token, None, None,
                   "")

    def _fill(self, queue: Queue | None, job_id: str, name: str, data_raw: bytes | None,
              data: Any, opts: StoredOptions, priority: int, timestamp: float,
              attempts_made: int, attempts_started: int, stalled_count: int,
              state: str | None, token: str | None, processed_on: float | None,
              group: str | None, counts: str) -> None:
        """Sets every slot (one place for __init__, added and taken)."""
        self._queue = queue
        self.id = job_id
        self.name = name
        self._data_raw = data_raw
        self._data = data
        self.opts = opts
        # The scripts store a LIFO job's priority as -1 (options.ResolvedOptions.wire_priority).
        self.priority, self.lifo = (0, True) if priority < 0 else (priority, False)
        self.timestamp = timestamp
        self.attempts_made = attempts_made
        self.attempts_started = attempts_started
        self.stalled_count = stalled_count
        self.state = state
        self.token = token
        self.payload: Any = None  # the typed payload, when the registry declares one
        self.processed_on = processed_on
        self.finished_on: float | None = None
        self.failed_reason: str | None = None
        self.stacktrace: str | None = None
        self.delay_until: float | None = None
        self.group = group  # its group (docs/guide/groups.md); None: no group
        # The running worker's ctx (Worker(ctx=...), arq's ctx) while a worker runs it.
        self.ctx: dict[str, Any] | None = None
        self._rv_raw: bytes | None = None
        self._rv: Any = _UNSET
        self._progress_raw: bytes | None = None
        # ":<attempts made>:<attempts started>" as the take that gave it to a worker replied
        # them: its results carry them back (lua/finish.lua), '' for a job not taken.
        self._counts = counts

    @classmethod
    def added(cls, queue: Queue, job_id: str, name: str, data_raw: bytes, opts: StoredOptions,
              data: Any, priority: int, timestamp: float, state: str, group: str | None) -> Job:
        """A job just added (``Queue.add``/``add_bulk``): what ``__init__`` builds, without
        its keyword parsing (which add_bulk would pay 500 times a call);
        tests/test_add_fields.py compares it with ``__init__``."""
        job = cls.__new__(cls)
        job._fill(queue, job_id, name, data_raw, data, opts, priority, timestamp, 0, 0, 0, state,
                  None, None, group, "")
        return job

    @classmethod
    def taken(cls, queue: Queue, job_id: str, name: str, data_raw: bytes | None,
              opts: StoredOptions, priority: int, timestamp: float, attempts_made: int,
              attempts_started: int, stalled_count: int, token: str, processed_on: float,
              group: str | None) -> Job:
        """A job a worker took (its fetch reply, minique/worker.py ``fetched_job``): active,
        with its token and attempt counts, without ``__init__``'s keyword parsing (a worker
        makes one per job it runs); tests/test_add_fields.py compares the two."""
        job = cls.__new__(cls)
        job._fill(queue, job_id, name, data_raw, _UNSET, opts, priority, timestamp,
                  attempts_made, attempts_started, stalled_count, "active", token,
                  processed_on, group, f":{attempts_made}:{attempts_started}")
        return job

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name!r} state={self.state}>"

    @property
    def data(self) -> Any:
        if self._data is _UNSET:
            self._data = None if not self._data_raw else codec.decode(self._data_raw, self.id, "data")
        return self._data

    @property
    def return_value(self) -> Any:
        if self._rv is _UNSET:
            self._rv = None if not self._rv_raw else codec.decode(self._rv_raw, self.id, "return value")
        return self._rv

    @property
    def progress(self) -> Any:
        if not self._progress_raw:
            return 0
        return codec.decode(self._progress_raw, self.id, "progress")

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            raise RuntimeError("this Job is not bound to a Queue")
        return self._queue

    @classmethod
    def from_hash(cls, queue: Queue | None, job_id: str, h: dict[bytes, bytes]) -> Job:
        """Builds a job from its stored hash; a hash that does not decode raises JobCorrupted."""
        try:
            opts = decode_stored(h.get(b"o", b""))
        except Exception as exc:
            raise JobCorrupted(f"job {job_id}: stored options cannot be decoded: {exc}") from exc
        stored = _text(h.get(b"st")) or ""
        try:
            job = cls(
                queue, job_id, _text(h.get(b"n")) or "", h.get(b"d"), opts,
                priority=int(h.get(b"p", 0)),
                timestamp=_ms_to_s(h.get(b"ts")) or 0.0,
                attempts_made=int(h.get(b"atm", 0)),
                attempts_started=int(h.get(b"ats", 0)),
                stalled_count=int(h.get(b"stc", 0)),
                state=public_state(stored) or None,
                # A job a worker holds ahead is waiting, to the user: no worker's token.
                token=None if stored in ("held", "removed") else _text(h.get(b"tok")) or None,
            )
        except ValueError as exc:
            raise JobCorrupted(f"job {job_id}: stored counters are not numbers: {exc}") from exc
        job.processed_on = _ms_to_s(h.get(b"pon"))
        job.finished_on = _ms_to_s(h.get(b"fon"))
        job.failed_reason = _text(h.get(b"fr"))
        job.stacktrace = _text(h.get(b"stk")) or None
        job.delay_until = _ms_to_s(h.get(b"due")) if job.state == "delayed" else None
        job._rv_raw = h.get(b"rv")
        job._progress_raw = h.get(b"pg")
        job.group = _text(h.get(b"g"))
        return job

    # ----- actions -----------------------------------------------------------------------

    async def get_children_values(self) -> dict[str, Any]:
        """``{child job key "{p:q}:j:<id>": return value}`` of this flow parent's completed
        children (minique/flows.py); empty for a job without children."""
        from .flows import children_values

        return (await children_values(self.queue, self.id))[0]

    async def get_children_failures(self) -> dict[str, str]:
        """``{child job key: failure reason}`` of children that failed (or were removed)
        under the "ignore" policy."""
        from .flows import children_values

        return (await children_values(self.queue, self.id))[1]

    async def get_dependencies(self) -> dict[str, Any]:
        """A flow parent's children (BullMQ's ``getDependencies``): ``{"processed": {child
        job key: return value}, "failed": {child job key: reason}, "unprocessed": [child
        job keys]}``; all empty for a job without children."""
        from .flows import children_outcomes

        values, failures, pending = await children_outcomes(self.queue, self.id)
        return {"processed": values, "failed": failures, "unprocessed": pending}

    async def get_dependencies_count(self) -> dict[str, int]:
        """``{"processed": n, "failed": n, "unprocessed": n}`` of get_dependencies."""
        deps = await self.get_dependencies()
        return {k: len(v) for k, v in deps.items()}

    async def get_state(self) -> str:
        """"waiting", "paused", "delayed", "active", "completed", "failed",
        "waiting-children" (a flow parent waiting for its children), or "unknown"."""
        state = await self.queue.get_state(self.id)
        self.state = state
        return state

    async def update_progress(self, value: int | float | dict[str, Any]) -> None:
        await self.queue.update_progress(self.id, value)
        self._progress_raw = codec.encode(value, "progress")

    async def update_data(self, data: Any) -> None:
        """Replaces the job's data (Queue.update_job_data) and this object's ``data``; a
        typed ``payload`` the worker decoded stays as it was."""
        await self.queue.update_job_data(self.id, data)
        self._data = data
        self._data_raw = None

    async def change_priority(self, priority: int, *, lifo: bool = False) -> None:
        """Queue.change_priority for this job; this object's ``priority`` and ``lifo``
        follow."""
        await self.queue.change_priority(self.id, priority, lifo=lifo)
        self.priority, self.lifo = priority, lifo

    async def change_delay(self, delay: float) -> None:
        """Queue.change_delay for this (delayed) job; this object's ``delay_until`` follows."""
        self.delay_until = await self.queue.change_delay(self.id, delay)

    async def log(self, line: str) -> int:
        """Appends ``line`` to the job's log; the log's length after it. The job's
        ``keep_logs`` option caps how many lines are kept (the oldest go first)."""
        return await self.queue.add_log(self.id, line, keep=self.opts.keep_logs)

    async def clear_logs(self, keep: int = 0) -> None:
        """Queue.clear_job_logs for this job: its log lines but the last ``keep`` go."""
        await self.queue.clear_job_logs(self.id, keep)

    async def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        """The job's log lines ``start`` to ``end`` (both included, Redis list indexes: -1
        is the last line); empty when the job logged nothing or is gone."""
        return await self.queue.get_job_logs(self.id, start, end)

    async def retry(self) -> None:
        await self.queue.retry_job(self.id)

    async def promote(self) -> None:
        await self.queue.promote_job(self.id)

    async def remove(self) -> bool:
        return await self.queue.remove_job(self.id)

    async def abort(self, timeout: float | None = None) -> bool:
        """Queue.abort for this job: removed if it has not started, cancelled if it runs."""
        return await self.queue.abort(self.id, timeout)

    async def refresh(self) -> Job:
        """A new ``Job`` with the job as stored now (state, progress, attempts, result):
        ``job = await job.refresh()``; this object is left as it was. Raises JobNotFound
        if the job was removed."""
        fresh = await self.queue.get_job(self.id)
        if fresh is None:
            raise JobNotFound(f"job {self.id} no longer exists")
        return fresh

    async def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Returns the return value, or raises JobFailed with the reason; JobNotFound if
        the job was removed (by hand) or never existed; TimeoutError after ``timeout`` s.

        A job that retention removes (at once, by count or by age) still answers while it
        is waited for, and shortly after: see minique/waiter.py.
        """
        return await waiter.wait_until_finished(self.queue, self.id, self.timestamp, timeout)
