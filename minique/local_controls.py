"""Control changes told to the workers of this process at once.

A queue operation that may put a job ahead of the jobs workers hold (a job with a priority
added, a delayed or finished job made waiting again) bumps the queue's control version in
Redis and publishes it; a worker elsewhere learns of it within a round trip. A worker in
*this* process may be the very one whose job made the call: a worker taking one job at a
time would take the new job at its next fetch, right after that job. The pub/sub message
reaches this process's worker only once the event loop reads it, after the runner may have
started held jobs. So the ``Queue`` also tells the workers of the same queue in this
process directly, before the call returns, and they hand back what they hold (a worker of
another Redis that serves a queue of the same name and prefix hands back for nothing).

A job with a priority added with a delay goes ahead when it falls due: ``delay`` (s)
tells the workers when, and they start no held job from then on until a call of theirs
has promoted it.

Shapes: ``listen(base, fn)`` and ``unlisten(base, fn)``, where ``base`` is the queue's
``QueueKeys.base`` and ``fn(what: str, delay: float) -> None`` is called synchronously
by ``notify(base, what, delay=0.0)``. Worker → this module ← queue: neither imports the
other.
"""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[str, float], None]
_listeners: dict[str, list[Listener]] = {}


def listen(base: str, fn: Listener) -> None:
    _listeners.setdefault(base, []).append(fn)


def unlisten(base: str, fn: Listener) -> None:
    fns = _listeners.get(base)
    if fns and fn in fns:
        fns.remove(fn)
        if not fns:
            del _listeners[base]


def notify(base: str, what: str, delay: float = 0.0) -> None:
    for fn in tuple(_listeners.get(base, ())):
        fn(what, delay)
