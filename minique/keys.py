"""Redis key names of one queue.

Every key carries the hash tag ``{prefix:queue}``, so a whole queue lives in one Redis
Cluster slot and every Lua script may touch any of its keys.
"""

from __future__ import annotations

from typing import NoReturn

DEFAULT_PREFIX = "minique"
_FORBIDDEN = set("{}")
# Job ids the queue makes itself: plain integers (automatic ids) and scheduler firings,
# "sched:<scheduler id>:<generation>:<fire time ms>" (minique/scheduler.py). A custom id
# may take neither form (options.py refuses them at add).
FIRING_ID_PREFIX = "sched:"


def validate_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    if _FORBIDDEN & set(value) or any(c.isspace() for c in value):
        raise ValueError(f"{kind} {value!r} must not contain braces or whitespace")
    return value


def validate_prefix(value: str) -> str:
    """A prefix is a name without ":", or such a name in braces: ``"{flows}"`` makes every
    key of every queue with that prefix hash to one Redis Cluster slot (their hash tag is
    then ``{flows``), as flows across queues need there (minique/flows.py). A queue's keys
    start with "{prefix:name}", and queue names may hold ":": prefix "a:b" with queue "c"
    would be the very keys of prefix "a" with queue "b:c", so a prefix may not."""
    inner = value[1:-1] if (isinstance(value, str) and value.startswith("{")
                            and value.endswith("}")) else value
    validate_name("prefix", inner)
    if ":" in inner:
        raise ValueError(f"prefix {value!r} must not contain ':' (prefix 'a:b' with queue "
                         f"'c' would share the keys of prefix 'a' with queue 'b:c'); queue "
                         f"names may")
    return value


def refuse_job_id(job_id: object) -> NoReturn:
    """Raises the TypeError for a job id that is no string (an int among them: automatic
    ids print as digits, but they are strings, "1", and a job's events and waiters compare
    them as such)."""
    hint = f"; use {str(job_id)!r}" if isinstance(job_id, int) else ""
    raise TypeError(f"a job id is a string, not {type(job_id).__name__} ({job_id!r}){hint}")


class QueueKeys:
    """The queue's key vector, in the order every Lua script expects (includes/base.lua)."""

    __slots__ = (
        "active",
        "base",
        "completed",
        "completed_groups",
        "control",
        "delayed",
        "events",
        "failed",
        "failed_groups",
        "held",
        "held_removed",
        "idc",
        "job_prefix",
        "logs_prefix",
        "meta",
        "pause_until",
        "pri",
        "ready",
        "schedulers",
        "vector",
        "waiting_children",
        "wake",
        "window",
        "workers",
    )

    def __init__(self, name: str, prefix: str = DEFAULT_PREFIX) -> None:
        validate_name("queue name", name)
        validate_prefix(prefix)
        self.base = "{" + prefix + ":" + name + "}"
        b = self.base
        self.meta = b + ":meta"
        self.idc = b + ":id"
        self.ready = b + ":ready"
        self.pri = b + ":prioritized"
        self.delayed = b + ":delayed"
        self.active = b + ":active"
        # Jobs a worker holds ahead of a free slot (prefetch): waiting to everyone else,
        # leased like active ones, started only within the hold the worker was granted.
        self.held = b + ":held"
        # Pub/sub channel on which workers learn that a control changed (pause, drain,
        # rate limit, global concurrency, a higher priority): they hand held jobs back.
        self.control = b + ":control"
        # Held jobs that remove() or drain() reached before their worker handed them back:
        # no longer waiting; deleted when handed back (or run, if they had started).
        self.held_removed = b + ":held-removed"
        # Flow parents waiting for their children (lua/includes/flows.lua).
        self.waiting_children = b + ":waiting-children"
        self.completed = b + ":completed"
        self.failed = b + ":failed"
        # Finished jobs whose retention setting differs from the state's shared one live in
        # a set per setting, listed in these (lua/includes/retention.lua).
        self.completed_groups = self.completed + ":keeps"
        self.failed_groups = self.failed + ":keeps"
        self.events = b + ":events"
        self.wake = b + ":wake"
        self.window = b + ":limiter"
        self.pause_until = b + ":rate-limited"
        self.workers = b + ":workers"
        self.schedulers = b + ":schedulers"
        # Each key a job owns lives in a key space of its own, "{p:q}:<kind>:<job id>", so
        # any string is a safe job id: no id can name another job's keys or a queue key.
        self.job_prefix = b + ":j:"
        self.logs_prefix = b + ":logs:"
        self.vector: tuple[str, ...] = (
            self.meta, self.idc, self.ready, self.pri, self.delayed, self.active,
            self.completed, self.failed, self.events, self.wake, self.window, self.pause_until,
            self.held, self.held_removed,
        )

    def job(self, job_id: str) -> str:
        if type(job_id) is not str:
            refuse_job_id(job_id)
        return self.job_prefix + job_id

    def logs(self, job_id: str) -> str:
        if type(job_id) is not str:
            refuse_job_id(job_id)
        return self.logs_prefix + job_id
