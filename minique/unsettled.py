"""A producer's calls whose outcome is unknown, and their fencing.

An add (add.lua) or add_flow call that Redis never answered may have run, or may not have,
or may still run: a copy of it held in the network (a retransmission queued behind a stalled
link, a proxy that kept it) can reach Redis minutes later. Its sequence number stays a gap
in the producer's record, and a gap runs when its call comes (lua/includes/producers.lua).
So ``get_job()`` answering "no such job" did not settle anything, and a caller who added
the job again on that answer could get it twice (break round 37).

A call is settled by fencing its number (lua/fence_add.lua): the fence tells whether the
call ran, and, if it had not, marks the number as run, so that any late copy is answered
as a re-send and adds nothing. The producer fences every unsettled call before its next
call goes (the record knows a number exactly only up to 48 below its top, and the next
calls raise the top), and ``Queue.settle`` / ``FlowProducer.settle`` fence on demand and
say which jobs were added.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from . import scripts
from .errors import SettleError

# Outcomes kept for settle() after the producer fenced them itself: a caller settles the
# error it just caught, so a few hundred cover every real use and bound the memory.
OUTCOMES_KEPT = 256

# A call that ran, where the fence could not give its reply (add_flow's, replaced by a
# later call's).
RAN = object()


@dataclass(frozen=True, slots=True)
class UnsettledCall:
    """One call of a producer whose outcome is unknown: the producer's record lives in the
    hash of ``meta_key``'s queue; ``kind`` is 'add' (add.lua) or 'flow' (add_flow.lua);
    ``job_ids`` are the ids sent, in the call's order (automatic flow ids are not known
    before the call runs, and are not among them). ``seq`` 0: the call was never sent."""

    meta_key: str
    job_prefix: str
    producer: str
    seq: int
    kind: str
    job_ids: tuple[str, ...]


class Fences:
    """The unsettled calls of one producer, and the outcomes of those fenced."""

    def __init__(self) -> None:
        self._pending: list[UnsettledCall] = []
        self._outcomes: collections.OrderedDict[UnsettledCall, Any] = collections.OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._pending)

    @property
    def pending(self) -> list[UnsettledCall]:
        return list(self._pending)

    def add(self, calls: list[UnsettledCall]) -> None:
        self._pending.extend(call for call in calls if call.seq)

    async def fence(self, client: Any) -> None:
        """Fences every pending call (one script call each). Raises what Redis raised when
        it did not answer (redis ConnectionError/TimeoutError, OSError); the calls not
        fenced stay pending."""
        while self._pending:
            call = self._pending[0]
            try:
                answer = await scripts.run(client, "fence_add", (call.meta_key,),
                                           (call.job_prefix, call.producer, call.seq, call.kind))
            except ResponseError as exc:
                text = str(exc)
                if text.startswith("INVALIDSTATE"):
                    answer = RAN  # an add_flow call that ran, its reply gone
                elif text.startswith("FENCEUNKNOWN"):
                    answer = SettleError(text)
                else:
                    raise
            self._outcomes[call] = answer
            while len(self._outcomes) > OUTCOMES_KEPT:
                self._outcomes.popitem(last=False)
            self._pending.pop(0)

    def outcome(self, call: UnsettledCall) -> Any:
        """The fence's answer for ``call``: None (it had not run, and never will), RAN, or
        the reply of the send that ran. SettleError when it is not known."""
        if not call.seq:
            return None
        if call not in self._outcomes:
            raise SettleError(f"call {call.seq} of producer {call.producer} is no longer "
                              "known: settle an error soon after it was raised")
        answer = self._outcomes[call]
        if isinstance(answer, SettleError):
            raise answer
        return answer


def settled_ids(call: UnsettledCall, answer: Any) -> dict[str, str | None]:
    """Per id sent in ``call``: the id of the job it added or found (a duplicate: the job
    that has its id or dedup id; an automatic id taken by then: the fresh one it got), or
    None when the call did not run and never will. ``answer``: ``Fences.outcome``'s."""
    if answer is None:
        return dict.fromkeys(call.job_ids)
    out: dict[str, str | None] = {job_id: job_id for job_id in call.job_ids}
    if call.kind == "add" and isinstance(answer, list):
        notes = answer[1:-1]  # (place in the call, id, duplicate) per job noted
        for k in range(0, len(notes) - 2, 3):
            place, found = int(notes[k]), notes[k + 1]
            if 0 <= place < len(call.job_ids):
                out[call.job_ids[place]] = (found.decode() if isinstance(found, bytes)
                                            else str(found))
    return out


__all__ = ["RAN", "Fences", "UnsettledCall", "settled_ids"]
