"""Live updates: a server-sent event stream that tells the pages when to refresh.

``GET /api/stream?queue=a&queue=b`` (every queue when none is given) sends:

* ``status`` with data ``ok`` when Redis answers, or ``redis-down`` when it does not (the
  page's live dot turns red; the stream keeps trying, once per poll interval);
* ``change`` when something the pages show changed: new entries in a queue's events stream
  (read with a blocking ``XREAD``, so a change arrives at once), or, checked once per poll
  interval, the queues' counts or their live workers. Never a payload or an error message:
  the event says only that the page should refresh, at most twice a second.

A page whose stream fails (server gone, a proxy that buffers) goes back to polling.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlencode

from redis.exceptions import RedisError, ResponseError
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from ..events import last_event_id
from .api import error_response, map_error
from .service import ApiError, Dashboard

log = logging.getLogger("minique.dashboard")
MIN_GAP = 0.5  # seconds between two "change" events
DOWN = (RedisError, ConnectionError, TimeoutError, OSError)


async def _digest(d: Dashboard, names: Sequence[str]) -> str:
    queues = [await d.queue(n) for n in names]
    stats = await asyncio.gather(*(q.get_stats() for q in queues), *(q.is_paused() for q in queues))
    workers = [(w["id"], w["jobs_done"], w["jobs_failed"], tuple(w["running"]))
               for w in await d.workers(names)]
    return hashlib.sha1(repr((list(names), stats, workers)).encode()).hexdigest()


async def changes(d: Dashboard, only: Sequence[str] | None, interval: float) -> AsyncIterator[dict[str, str]]:
    """The events of one client's stream; runs until the client goes away."""
    cursors: dict[str, str] = {}
    blocking_read = True  # off on Redis Cluster: one XREAD cannot span slots
    digest = ""
    redis_ok: bool | None = None
    while True:
        try:
            names = list(only) if only else await d.queue_names()
            queues = [await d.queue(n) for n in names]
            for q in queues:
                if q.keys.events not in cursors:
                    cursors[q.keys.events] = await last_event_id(d.redis, q.keys)
            if redis_ok is not True:
                redis_ok = True
                yield {"event": "status", "data": "ok"}
            woke = False
            if blocking_read and cursors:
                try:
                    streams = {k: cursors[k] for k in (q.keys.events for q in queues)}
                    got = await d.redis.xread(streams, count=100, block=max(1, int(interval * 1000)))
                except ResponseError:
                    blocking_read = False
                    got = []
                for key, entries in got or []:
                    name = key.decode() if isinstance(key, bytes) else str(key)
                    last = entries[-1][0]
                    cursors[name] = last.decode() if isinstance(last, bytes) else str(last)
                    woke = True
            else:
                await asyncio.sleep(interval)
            new_digest = await _digest(d, names)
            if woke or new_digest != digest:
                digest = new_digest
                yield {"event": "change", "data": ""}
                await asyncio.sleep(MIN_GAP)
        except ApiError:
            # A queue went away (obliterated) between two reads: the pages must show it.
            cursors.clear()
            yield {"event": "change", "data": ""}
            await asyncio.sleep(interval)
        except DOWN as exc:
            if redis_ok is not False:
                log.warning("live stream: Redis is unavailable: %s", exc)
                redis_ok = False
                yield {"event": "status", "data": "redis-down"}
            cursors.clear()
            await asyncio.sleep(interval)


async def stream_endpoint(request: Request) -> Response:
    d: Dashboard = request.app.state.dashboard
    only = request.query_params.getlist("queue")
    try:
        for name in only:
            await d.queue(name)
    except Exception as exc:
        mapped = map_error(exc)
        if mapped is None:
            raise
        return error_response(*mapped)
    interval = float(getattr(request.app.state, "poll_interval", 3.0))
    return EventSourceResponse(changes(d, only or None, interval), ping=15,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def stream_url(base: str, queue: str | None) -> str:
    """The stream a page listens to: its queue's, or every queue's."""
    return f"{base}/api/stream" + (f"?{urlencode({'queue': queue})}" if queue else "")


__all__ = ["changes", "stream_endpoint", "stream_url"]
