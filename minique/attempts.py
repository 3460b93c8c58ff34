"""A job's attempts, one by one: who ran each, when, how long, and how it ended.

Attempts that end in failure, a retry or a stall are recorded by the Lua scripts
(``lua/includes/attempts.lua``) in a ring of the job hash's fields ``h0``..``h9``: the
latest ten of them are kept. The attempt that is running, or that completed, is read from
the job's own fields (``pon``, ``fon``, ``w``), so completing a job writes nothing extra.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .worker_info import worker_label

ATTEMPT_RING = 10  # entries kept per job; the same number as in includes/attempts.lua


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a job. Times are seconds since the epoch; ``duration`` is seconds.

    ``number`` counts attempts started (1 = the first). ``outcome`` is ``"failed"``,
    ``"retried"`` (failed, then retried), ``"stalled"`` (its worker lost the lease),
    ``"completed"`` or ``"running"``. ``worker`` is the worker's name (``host:pid:...``).
    ``error`` is the failure reason (cut at 500 bytes), None for completed and running ones.
    """

    number: int
    outcome: str
    worker: str
    started_at: float | None
    ended_at: float | None
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


def _ms(raw: bytes | str | None) -> float | None:
    if raw in (None, b"", ""):
        return None
    try:
        return int(raw) / 1000.0
    except ValueError:
        return None


def parse_entry(raw: bytes) -> Attempt | None:
    """Decodes one ring entry; None for an entry that is not one (never raises)."""
    parts = raw.split(b"|", 5)
    if len(parts) != 6:
        return None
    ats, outcome, start, end, wlen, rest = parts
    try:
        number, worker_len = int(ats), int(wlen)
    except ValueError:
        return None
    return Attempt(number=number, outcome=outcome.decode(errors="replace"),
                   worker=worker_label(rest[:worker_len].decode(errors="replace")),
                   started_at=_ms(start),
                   ended_at=_ms(end), error=rest[worker_len:].decode(errors="replace"))


def attempts_from_hash(h: Mapping[bytes, bytes]) -> list[Attempt]:
    """Every attempt the job hash tells of, oldest first (at most ``ATTEMPT_RING`` + 1)."""
    found = [a for i in range(ATTEMPT_RING) if (raw := h.get(b"h%d" % i)) and (a := parse_entry(raw))]
    found.sort(key=lambda a: (a.number, a.ended_at or 0.0))
    state = h.get(b"st", b"").decode(errors="replace")
    started = int(h.get(b"ats", b"0") or 0)
    worker = worker_label(h.get(b"w", b"").decode(errors="replace"))
    recorded = {a.number for a in found}
    if state == "active" and started not in recorded:
        found.append(Attempt(number=started, outcome="running", worker=worker,
                             started_at=_ms(h.get(b"pon")), ended_at=None))
    elif state == "completed" and started not in recorded:
        found.append(Attempt(number=started, outcome="completed", worker=worker,
                             started_at=_ms(h.get(b"pon")), ended_at=_ms(h.get(b"fon"))))
    return found
