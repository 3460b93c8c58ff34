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
``QueueKeys.base`` and ``fn(what: str, delay: float) -> None`` is called by
``notify(base, what, delay=0.0)``: synchronously when notify runs on the loop that
registered ``fn``, otherwise on that loop at its next turn (``call_soon_threadsafe``).
Worker → this module ← queue: neither imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

Listener = Callable[[str, float], None]
# base -> (listener, the event loop it was registered from: the worker's)
_listeners: dict[str, list[tuple[Listener, asyncio.AbstractEventLoop | None]]] = {}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def listen(base: str, fn: Listener) -> None:
    _listeners.setdefault(base, []).append((fn, _running_loop()))


def unlisten(base: str, fn: Listener) -> None:
    fns = _listeners.get(base)
    if not fns:
        return
    for entry in fns:
        if entry[0] == fn:
            fns.remove(entry)
            break
    if not fns:
        del _listeners[base]


def notify(base: str, what: str, delay: float = 0.0) -> None:
    """Calls the listeners of ``base``: at once on their own event loop, and on another
    thread's (a ``SyncQueue``, or a sync processor's thread that adds a job) through that
    loop, at its next turn: a worker's state is its loop's alone."""
    here = _running_loop()
    for fn, loop in tuple(_listeners.get(base, ())):
        if loop is None or loop is here:
            fn(what, delay)
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: that worker is gone
                loop.call_soon_threadsafe(fn, what, delay)
