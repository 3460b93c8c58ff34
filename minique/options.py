"""Job options: what ``Queue.add`` accepts, validated once, stored compactly with the job."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from .keys import FIRING_ID_PREFIX

# A job's score is priority * 2^32 + sequence (lua/includes/base.lua), exact in a double
# only below 2^53: priority 2^21 would round the sequence off (FIFO lost).
MAX_PRIORITY = 2**21 - 1
DAY = 86400.0
MAX_SECONDS = 10 * 365 * DAY
MAX_COUNT = 2**53  # counts travel through Lua, whose numbers are doubles


class Backoff(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """``type`` is "fixed", "exponential", or the name of a strategy registered on the worker."""

    type: str = "fixed"
    delay: float = 0.0
    jitter: float = 0.0
    max_delay: float | None = None


class Keep(msgspec.Struct, frozen=True, array_like=True):
    """Retention of finished jobs: at most ``count`` of them, none older than ``age`` s.

    -1 means no limit, so ``Keep()`` keeps everything and ``Keep(count=0)`` keeps nothing.
    """

    count: int = -1
    age: float = -1.0


class StoredOptions(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """The options a worker needs when it runs the job; stored in the job hash as msgpack."""

    attempts: int = 1
    backoff: Backoff | None = None
    timeout: float | None = None
    keep_completed: Keep = Keep(count=1000, age=DAY)
    keep_failed: Keep = Keep(count=10000, age=7 * DAY)
    keep_logs: int = 1000
    trace: dict[str, str] | None = None  # the adder's OpenTelemetry context (minique.telemetry)
    # A flow child whose parent is in the same queue and may have a priority: once it is
    # done, the parent may go ahead of what its worker holds (minique/flows.py).
    parent_ahead: bool = False
    # Seconds from its add within which an attempt must start, or the job fails as
    # expired (arq's _expires, Celery's expires); None: no bound.
    expires: float | None = None


class ResolvedOptions(msgspec.Struct, frozen=True):
    stored: StoredOptions
    delay: float = 0.0
    priority: int = 0
    job_id: str | None = None
    group: str | None = None
    # BullMQ's lifo: the job goes to the head of the plain line (after every priority).
    lifo: bool = False
    # "ttl_ms|flags|dedup id" for add.lua (flags: r = replace, e = extend), or "".
    dedup: str = ""

    @property
    def wire_priority(self) -> int:
        """The priority as the scripts store it (job field 'p'): -1 for a LIFO job
        (lua/includes/base.lua LIFO band), else the priority."""
        return -1 if self.lifo else self.priority


OPTION_NAMES = frozenset(
    {"attempts", "backoff", "delay", "priority", "job_id", "remove_on_complete",
     "remove_on_fail", "timeout", "keep_logs", "group", "dedup", "expires", "lifo"}
)

_stored_encoder = msgspec.msgpack.Encoder()
_stored_decoder = msgspec.msgpack.Decoder(StoredOptions)
_decoded_cache: dict[bytes, StoredOptions] = {}


_DEFAULT_STORED = StoredOptions()


def encode_stored(stored: StoredOptions) -> bytes:
    """The options as stored with a job; b"" for the defaults, which are then not stored
    at all (lua/includes/job_fields.lua): 37 bytes less per job, and a smaller hash."""
    if stored == _DEFAULT_STORED:
        return b""
    return _stored_encoder.encode(stored)


def decode_stored(raw: bytes) -> StoredOptions:
    """Decodes stored options; most jobs share a few distinct blobs, so they are cached."""
    hit = _decoded_cache.get(raw)
    if hit is None:
        hit = _stored_decoder.decode(raw) if raw else StoredOptions()
        if len(_decoded_cache) > 1024:
            _decoded_cache.clear()
        _decoded_cache[raw] = hit
    return hit


def check_option_names(options: Mapping[str, Any], where: str) -> None:
    unknown = set(options) - OPTION_NAMES
    if unknown:
        # add() also takes a flow parent (minique/flows.py), which is no stored option.
        links = "; add() also takes parent and on_failure" if where == "add" else ""
        raise TypeError(
            f"{where}: unknown job option(s) {', '.join(sorted(unknown))}; "
            f"valid options are {', '.join(sorted(OPTION_NAMES))}{links}"
        )


def _number(name: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if value > MAX_SECONDS:
        # Times become milliseconds in scores that must stay exact integers in a double.
        raise ValueError(f"{name} must be at most {MAX_SECONDS:.0f} s (10 years), got {value!r}")
    return float(value)


def _keep(name: str, value: Any) -> Keep:
    if value is True:
        return Keep(count=0)
    if value is False or value is None:
        return Keep()
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_COUNT:
            raise ValueError(f"{name} count must be from 0 to 2**53, got {value}")
        return Keep(count=value)
    if isinstance(value, Keep):
        return value
    if isinstance(value, Mapping):
        extra = set(value) - {"age", "count"}
        if extra:
            raise TypeError(f"{name}: unknown key(s) {sorted(extra)}; use 'age' and 'count'")
        count = value.get("count", -1)
        if isinstance(count, bool) or not isinstance(count, int) or not -1 <= count <= MAX_COUNT:
            raise ValueError(f"{name}.count must be an integer from 0 to 2**53, got {count!r}")
        age = value.get("age")
        return Keep(count=count, age=-1.0 if age is None else _number(f"{name}.age", age))
    raise TypeError(f"{name} must be a bool, an int or {{'age': s, 'count': n}}, got {value!r}")


def _backoff(value: Any) -> Backoff | None:
    if value is None:
        return None
    if isinstance(value, Backoff):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Backoff("fixed", _number("backoff", value))
    if not isinstance(value, Mapping):
        raise TypeError(f"backoff must be seconds or a dict with 'type' and 'delay', got {value!r}")
    extra = set(value) - {"type", "delay", "jitter", "max_delay"}
    if extra:
        raise TypeError(f"backoff: unknown key(s) {sorted(extra)}")
    kind = value.get("type", "fixed")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"backoff.type must be a name, got {kind!r}")
    jitter = _number("backoff.jitter", value.get("jitter", 0.0))
    if jitter > 1:
        raise ValueError(f"backoff.jitter must be between 0 and 1, got {jitter}")
    cap = value.get("max_delay")
    return Backoff(
        kind,
        _number("backoff.delay", value.get("delay", 0.0)),
        jitter,
        None if cap is None else _number("backoff.max_delay", cap),
    )


def _job_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 512:
        raise ValueError(f"job_id must be a non-empty string of at most 512 chars, got {value!r}")
    if value.isdigit():
        # Plain integers are the auto-generated ids; a custom one could collide with them.
        raise ValueError(f"job_id {value!r} must not be a plain integer")
    if value.startswith(FIRING_ID_PREFIX):
        raise ValueError(f"job_id {value!r} must not start with {FIRING_ID_PREFIX!r}: "
                         "that prefix is reserved for the ids of job scheduler firings")
    return check_utf8("job_id", value)


MAX_GROUP_LEN = 512


def check_utf8(label: str, value: str) -> str:
    """``value`` if it encodes as UTF-8; ValueError naming ``label`` otherwise (a lone
    surrogate, as os.fsdecode gives for a file name that is not UTF-8). Checked when an
    add is prepared: packed later, it would fail the adds that go with it in one call."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{label} must be text that encodes as UTF-8, got {value!r}") from None
    return value


def validate_group(value: Any) -> str:
    """A group id: a non-empty string of at most 512 characters (any characters that
    encode as UTF-8); ValueError otherwise."""
    if not isinstance(value, str) or not value or len(value) > MAX_GROUP_LEN:
        raise ValueError(f"group must be a non-empty string of at most {MAX_GROUP_LEN} "
                         f"chars, got {value!r}")
    return check_utf8("group", value)


def _dedup(value: Any) -> str:
    """``{"id": str, "ttl": s > 0, "replace": bool, "extend": bool,
    "keep_last_if_active": bool}`` -> add.lua's spec "ttl_ms|flags|id" (flags: r replace,
    e extend, k keep_last_if_active)."""
    if value is None:
        return ""
    if not isinstance(value, Mapping):
        raise TypeError(f"dedup must be a dict like {{'id': 'acct-42:orders'}}, got {value!r}")
    extra = set(value) - {"id", "ttl", "replace", "extend", "keep_last_if_active"}
    if extra:
        raise TypeError(f"dedup: unknown key(s) {sorted(extra)}; use id, ttl, replace, extend, "
                        "keep_last_if_active")
    dedup_id = value.get("id")
    if not isinstance(dedup_id, str) or not dedup_id or len(dedup_id) > 512:
        raise ValueError(f"dedup id must be a non-empty string of at most 512 chars, "
                         f"got {dedup_id!r}")
    check_utf8("dedup id", dedup_id)
    ttl = value.get("ttl")
    ttl_ms = 0
    if ttl is not None:
        ttl_ms = round(_number("dedup ttl", ttl, minimum=-math.inf) * 1000)
        if ttl_ms <= 0:
            raise ValueError(f"dedup ttl must be > 0 seconds (at least 1 ms), got {ttl!r}")
    flags = ""
    for key, flag in (("replace", "r"), ("extend", "e"), ("keep_last_if_active", "k")):
        on = value.get(key, False)
        if not isinstance(on, bool):
            raise TypeError(f"dedup {key} must be a bool, got {on!r}")
        flags += flag if on else ""
    if "e" in flags and not ttl_ms:
        raise ValueError("dedup extend needs a ttl: it restarts the ttl on each duplicate")
    if "k" in flags and ttl_ms:
        raise ValueError("dedup keep_last_if_active takes no ttl: the id is held for the "
                         "job's whole life, and the last add made while it runs is added "
                         "when it finishes")
    return f"{ttl_ms}|{flags}|{dedup_id}"


def resolve(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> ResolvedOptions:
    """Merges queue defaults with per-job options and validates the result."""
    merged = {**defaults, **overrides}
    check_option_names(merged, "add")
    attempts = merged.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_COUNT:
        raise ValueError(f"attempts must be an integer >= 1, got {attempts!r}")
    priority = merged.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
        0 <= priority <= MAX_PRIORITY
    ):
        raise ValueError(f"priority must be an integer from 0 to {MAX_PRIORITY}, got {priority!r}")
    dedup = _dedup(merged.get("dedup"))
    if dedup and merged.get("job_id") is not None and "k" in dedup.split("|", 2)[1]:
        raise ValueError("dedup keep_last_if_active adds a kept job later, with an automatic "
                         "id: it takes no job_id")
    lifo = merged.get("lifo", False)
    if not isinstance(lifo, bool):
        raise TypeError(f"lifo must be a bool, got {lifo!r}")
    if lifo and priority:
        raise ValueError(f"lifo applies to jobs without a priority (got priority {priority}): "
                         "a LIFO job goes to the head of the plain line, behind every priority")
    timeout = merged.get("timeout")
    keep_logs = merged.get("keep_logs", 1000)
    if isinstance(keep_logs, bool) or not isinstance(keep_logs, int) or not (
        0 <= keep_logs <= MAX_COUNT
    ):
        raise ValueError(f"keep_logs must be an integer >= 0, got {keep_logs!r}")
    delay = _number("delay", merged.get("delay", 0.0))
    expires = merged.get("expires")
    if expires is not None:
        expires = _number("expires", expires, minimum=0.001)
        if expires <= delay:
            raise ValueError(f"expires ({expires} s from the add) must be longer than delay "
                             f"({delay} s): the job could never start in time")
    stored = StoredOptions(
        attempts=attempts,
        backoff=_backoff(merged.get("backoff")),
        timeout=None if timeout is None else _number("timeout", timeout, minimum=0.001),
        keep_completed=_keep("remove_on_complete", merged.get("remove_on_complete",
                                                               StoredOptions().keep_completed)),
        keep_failed=_keep("remove_on_fail", merged.get("remove_on_fail",
                                                       StoredOptions().keep_failed)),
        keep_logs=keep_logs,
        expires=expires,
    )
    return ResolvedOptions(
        stored=stored,
        delay=delay,
        priority=priority,
        lifo=lifo,
        job_id=_job_id(merged.get("job_id")),
        group=None if merged.get("group") is None else validate_group(merged["group"]),
        dedup=dedup,
    )
