"""Which queues exist: for commands that take a queue name from a person, who may misspell
it, and for listing every queue under a prefix.

A queue exists once one of its lasting keys does (``QUEUE_KEYS``): a job in any state, the
id counter, the queue's settings, a live worker's heartbeat set or a job scheduler. Both
functions only read.
"""

from __future__ import annotations

import re
from typing import Any

from .keys import QueueKeys, validate_prefix

# Suffixes of the keys that make a queue exist (see minique/keys.py); job hashes (":j:"),
# events, wake-ups and metrics do not count on their own.
QUEUE_KEYS = ("meta", "id", "ready", "prioritized", "delayed", "active", "completed", "failed",
              "workers", "schedulers")
SCAN_COUNT = 1000  # keys the server looks at per SCAN call
_SUFFIX = "|".join(QUEUE_KEYS)


def _escape_glob(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def queue_exists(redis: Any, keys: QueueKeys) -> bool:
    """True if the queue has any of its lasting keys (one EXISTS call, one slot)."""
    lasting = [keys.meta, keys.idc, keys.ready, keys.pri, keys.delayed, keys.active,
               keys.completed, keys.failed, keys.workers, keys.schedulers]
    return int(await redis.exists(*lasting)) > 0


async def known_queues(redis: Any, prefix: str | None) -> dict[str, list[str]]:
    """Queue names by prefix, sorted: those of ``prefix``, or of every prefix when it is None.

    It walks the whole keyspace with SCAN (``SCAN_COUNT`` keys a call, so the server is never
    blocked for long; on a big database it takes a while): meant for a command run by hand.
    Job hashes are skipped server-side by the MATCH pattern. A key ``{a:b:c}:meta`` reads
    as prefix ``a``, queue ``b:c`` when no prefix is given."""
    if prefix is None:
        match = "{*:*}:[^j]*"
        key_re = re.compile(r"^\{([^{}:\s]+):([^{}\s]+)\}:(?:" + _SUFFIX + r")$")
    else:
        validate_prefix(prefix)
        match = "{" + _escape_glob(prefix) + ":*}:[^j]*"
        key_re = re.compile(r"^\{(" + re.escape(prefix) + r"):([^{}\s]+)\}:(?:" + _SUFFIX + r")$")
    found: dict[str, set[str]] = {}
    async for raw in redis.scan_iter(match=match, count=SCAN_COUNT):
        key = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        m = key_re.match(key)
        if m:
            found.setdefault(m.group(1), set()).add(m.group(2))
    return {p: sorted(names) for p, names in sorted(found.items())}
