"""The queue's events stream: what happened to which job, in order, resumable by id."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import msgspec

from . import codec
from .connection import check_client, connect
from .keys import DEFAULT_PREFIX, QueueKeys

EVENT_NAMES = frozenset(
    {"added", "waiting", "delayed", "active", "progress", "completed", "failed", "retrying",
     "stalled", "removed", "duplicated", "deduplicated", "debounced",
     "waiting-children", "paused", "resumed",
     "drained", "cancel", "error", "group-paused", "group-resumed", "scheduler-removed",
     "scheduler-repaired"}
)  # every name the Lua scripts emit (tests/test_docs_examples.py checks it, and the guide)


class Event(msgspec.Struct, frozen=True):
    """One event of one job. ``fields`` holds the small extras (reason, delay, ...).

    ``event_id`` names the event, for ``QueueEvents(last_id=...)`` to resume after it: the
    id of the stream entry that carries it. The ``added``, ``waiting``, ``active`` and
    ``completed`` events that one script call emits for several jobs share one entry;
    each of them but the last is named ``<entry id>/<index>`` (``index`` is its place in
    the entry), so a consumer that stores the id of each event it handled resumes at the
    very next event, as it would with one entry per event. ``value`` is the MessagePack
    return value that a ``completed`` event carries (see ``return_value``), or the
    MessagePack progress value that a ``progress`` event carries (see ``progress``); None
    on other events, on a completed event whose value was over 16 KiB and stayed with the
    job instead, and on a progress event whose value was over 256 bytes (read it with
    ``Queue.get_job(...).progress``).
    """

    event_id: str
    name: str
    job_id: str | None
    fields: dict[str, str]
    value: bytes | None = None
    index: int = 0

    @property
    def return_value(self) -> Any:
        """The decoded return value of a ``completed`` event that carries it, else None.
        Raises JobCorrupted if it cannot be decoded."""
        return None if not self.value else codec.decode(self.value, self.job_id or "?",
                                                        "return value")

    @property
    def progress(self) -> Any:
        """The decoded value of a ``progress`` event (a number from 0 to 100, or the dict
        given to ``update_progress``); None on other events, and on a progress event whose
        value was over 256 bytes. Raises JobCorrupted if it cannot be decoded."""
        if self.name != "progress" or not self.value:
            return None
        return codec.decode(self.value, self.job_id or "?", "progress")

    @property
    def time(self) -> float:
        """When the event happened: seconds since the epoch, by the Redis server's clock."""
        return int(self.event_id.split("-", 1)[0]) / 1000.0

    @property
    def entry_id(self) -> str:
        """The id of the stream entry that carries the event."""
        return self.event_id.partition("/")[0]


def parse_event(event_id: bytes | str, raw: dict[bytes, bytes]) -> Event:
    """The first event of a stream entry (the only one, but for entries that carry several
    jobs: see ``parse_entry``)."""
    return parse_entry(event_id, raw)[0]


def split_length_prefixed(blob: bytes) -> list[bytes]:
    """``b"3:abc2:de"`` -> ``[b"abc", b"de"]``: the list form of a many-jobs entry (written
    by lua/includes/base.lua). Raises ValueError on a malformed list."""
    items: list[bytes] = []
    pos, end = 0, len(blob)
    while pos < end:
        colon = blob.index(b":", pos)
        start = colon + 1
        stop = start + int(blob[pos:colon])
        if stop > end:
            raise ValueError("length-prefixed list cut short")
        items.append(blob[start:stop])
        pos = stop
    return items


def parse_entry(event_id: bytes | str, raw: dict[bytes, bytes]) -> list[Event]:
    """The events of one stream entry, in order.

    Format (version 3): an entry is ``ev`` <name> and ``id`` <job id> plus the event's
    fields (``rv``, the return value of a completed job; ``pg``, the progress of a
    progress event, both MessagePack and given as ``Event.value``; ``name`` of an added one;
    ``reason``, ``delay``, ...), or, for the ``added``, ``waiting``, ``active`` and
    ``completed`` events of several jobs that one script call emitted, ``ev`` <name> ``ids``
    <list> [``names`` <list> | ``rvs`` <list>], where a list is length-prefixed
    (``<n>:<n bytes>`` per item) and an empty return value means the value stayed with the
    job. Either form may carry ``then`` <name>: the same jobs' events of that name follow,
    without fields (add writes ``added`` ... ``then`` ``waiting`` when every job it added
    went waiting: one entry rather than two), or (version 3) ``first`` <name>: the same
    jobs' events of that name come before, without fields (a worker's finish writes
    ``completed`` ... ``first`` ``active`` for the held jobs that started and completed
    since its last call). A version 2 reader ignores ``first``, and sees those jobs'
    completions without their ``active`` events. Version 1 streams (one entry per event)
    read the same way. Raises ValueError on a malformed entry."""
    eid = event_id.decode() if isinstance(event_id, bytes) else event_id
    packed_ids = raw.get(b"ids")
    then = raw.get(b"then")
    first = raw.get(b"first")
    if then is not None or first is not None:
        raw = dict(raw)
        raw.pop(b"then", None)
        raw.pop(b"first", None)
    if first is not None and then is not None:
        raise ValueError(f"event entry {eid}: both 'first' and 'then'")
    if packed_ids is None:
        raw = dict(raw)
        value = raw.pop(b"rv", None)
        if raw.get(b"ev") == b"progress":
            # MessagePack, like a return value: read as text it would be garbled.
            value = raw.pop(b"pg", None) or None
        fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        name = fields.pop("ev", "")
        job_id = fields.pop("id", None)
        if then is not None:
            return [Event(f"{eid}/0", name, job_id, fields, value),
                    Event(eid, then.decode(errors="replace"), job_id, {}, None, 1)]
        if first is not None:
            return [Event(f"{eid}/0", first.decode(errors="replace"), job_id, {}, None),
                    Event(eid, name, job_id, fields, value, 1)]
        return [Event(eid, name, job_id, fields, value)]
    name = raw.get(b"ev", b"").decode(errors="replace")
    ids = split_length_prefixed(packed_ids)
    packed_rvs = raw.get(b"rvs")
    values: list[bytes | None] = (
        [v or None for v in split_length_prefixed(packed_rvs)] if packed_rvs is not None
        else [None] * len(ids))
    packed_names = raw.get(b"names")
    names = (split_length_prefixed(packed_names) if packed_names is not None else [])
    if names and len(names) != len(ids):
        raise ValueError(f"event entry {eid}: {len(ids)} ids but {len(names)} names")
    twice = then is not None or first is not None
    last = len(ids) * (2 if twice else 1) - 1
    offset = len(ids) if first is not None else 0  # the index of the entry's own events
    events = [Event(eid if offset + index == last else f"{eid}/{offset + index}", name,
                    job_id.decode(errors="replace"),
                    {"name": names[index].decode(errors="replace")} if names else {}, value,
                    offset + index)
              for index, (job_id, value) in enumerate(zip(ids, values, strict=True))]
    if first is not None:
        first_name = first.decode(errors="replace")
        events = [Event(f"{eid}/{i}", first_name, job_id.decode(errors="replace"), {}, None, i)
                  for i, job_id in enumerate(ids)] + events
    if then is not None:
        then_name, start = then.decode(errors="replace"), len(ids)
        events += [Event(eid if start + i == last else f"{eid}/{start + i}", then_name,
                         job_id.decode(errors="replace"), {}, None, start + i)
                   for i, job_id in enumerate(ids)]
    return events


def split_event_id(event_id: str) -> tuple[str, int]:
    """``"<entry id>/<index>"`` -> (entry id, index); a plain entry id -> (it, -1): the
    whole entry is behind it."""
    entry, _, index = event_id.partition("/")
    return entry, int(index) if index else -1


def entry_order(event_id: bytes | str) -> tuple[int, int]:
    """The stream entry an event id names, as (milliseconds, sequence), for comparing ids:
    ``"1700000000000-3/2"`` -> (1700000000000, 3)."""
    eid = event_id.decode() if isinstance(event_id, bytes) else event_id
    ms, _, seq = eid.partition("/")[0].partition("-")
    return int(ms), int(seq or 0)


async def last_event_id(client: Any, keys: QueueKeys) -> str:
    last = await client.xrevrange(keys.events, count=1)
    return last[0][0].decode() if last else "0-0"


def _block_limit(client: Any) -> float | None:
    """Half the client's socket timeout, if it has one: an XREAD that blocks longer fails
    with a read timeout (redis TimeoutError) on a quiet stream."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(
        getattr(client, "nodes_manager", None), "connection_kwargs", None) or {}
    timeout = kwargs.get("socket_timeout")
    return timeout / 2 if isinstance(timeout, (int, float)) and timeout > 0 else None


async def read_events(
    client: Any, keys: QueueKeys, after: str, block: float, count: int = 500
) -> list[Event]:
    """Events after ``after``, waiting at most ``block`` seconds for the first one (at
    most half the client's socket timeout: then none)."""
    after = after.partition("/")[0]
    limit = _block_limit(client)
    if limit is not None:
        block = min(block, limit)
    reply = await client.xread({keys.events: after}, count=count, block=max(1, int(block * 1000)))
    if not reply:
        return []
    return [event for eid, raw in reply[0][1] for event in parse_entry(eid, raw)]


async def read_events_back(client: Any, keys: QueueKeys, before: str, count: int) -> list[Event]:
    """The events of up to ``count`` entries older than ``before`` ("+" = from the newest),
    newest first."""
    start = before if before == "+" else "(" + before.partition("/")[0]
    return [event for eid, raw in await client.xrevrange(keys.events, start, "-", count=count)
            for event in reversed(parse_entry(eid, raw))]


_CLOSED: Any = object()  # what QueueEvents._io gives once closed
_EVENT_ID = re.compile(r"\$|[0-9]+(-[0-9]+)?(/[0-9]+)?")


class QueueEvents:
    """Async iterator over a queue's events.

    ``last_id`` resumes after an event id; the default "$" starts with new events only:
    those after the ``async with`` block starts, or without one, after the first read.
    Iterating again (or calling ``next``) after leaving a loop part way through an entry
    that carries several events goes on with the rest of that entry. ``close`` ends an
    iteration that another task runs. Raises ValueError on a malformed ``last_id``.
    """

    def __init__(
        self,
        queue_name: str,
        *,
        url: str | None = None,
        connection: Any = None,
        prefix: str = DEFAULT_PREFIX,
        last_id: str = "$",
        block: float = 1.0,
    ) -> None:
        if not isinstance(last_id, str) or not _EVENT_ID.fullmatch(last_id):
            raise ValueError(f"last_id {last_id!r} is not an event id: '$', '0', "
                             "'<ms>-<seq>' or '<ms>-<seq>/<index>'")
        self.keys = QueueKeys(queue_name, prefix)
        self._own = connection is None
        self._client = (check_client(connection, f"QueueEvents({queue_name!r})", url)
                        if connection is not None else connect(url))
        self.last_id = last_id
        self._block = block
        self._closed = False
        # Events of the entry last_id names that were not handed out yet (an entry may
        # carry several; last_id moves on when its first one is handed out).
        self._rest: deque[Event] = deque()
        # The read in flight, which close() cancels.
        self._reading: asyncio.Task[Any] | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _start(self) -> None:
        """Resolves "$", and a last_id that names an event inside a shared entry: the rest
        of that entry comes first."""
        if self.last_id == "$":
            last = await self._io(last_event_id(self._client, self.keys))
            if last is _CLOSED:
                return
            self.last_id = last
        entry, index = split_event_id(self.last_id)
        if index >= 0 and not self._rest:
            raw = await self._io(self._client.xrange(self.keys.events, entry, entry))
            if raw is _CLOSED:
                return
            rest = [e for eid, f in raw for e in parse_entry(eid, f)][index + 1:]
            if rest:
                self._rest.extend(rest)
            else:
                self.last_id = entry  # trimmed away meanwhile, or nothing left of it

    async def _io(self, call: Coroutine[Any, Any, Any]) -> Any:
        """The reply of ``call``, or _CLOSED once closed or when close() cut it short
        (redis-py would retry a command that the closing broke, on a new connection that
        nothing closed any more)."""
        if self._closed:
            call.close()
            return _CLOSED
        reading = asyncio.ensure_future(call)
        self._reading = reading
        try:
            return await reading
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if self._closed and reading.cancelled() and not (me and me.cancelling()):
                return _CLOSED
            raise
        finally:
            self._reading = None

    async def _read(self, block: float, count: int) -> list[Event]:
        """The events after last_id (none once closed)."""
        events = await self._io(read_events(self._client, self.keys, self.last_id, block,
                                            count))
        return [] if events is _CLOSED else list(events)

    async def _iterate(self) -> AsyncIterator[Event]:
        await self._start()
        while not self._closed:
            if not self._rest:
                self._rest.extend(await self._read(self._block, 500))
            while self._rest:
                event = self._rest.popleft()
                self.last_id = event.event_id
                yield event

    async def next(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds (at once once closed)."""
        if self._closed and not self._rest:
            return None
        await self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._rest:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                return None
            self._rest.extend(await self._read(min(remaining, self._block), 1))
        event = self._rest.popleft()
        self.last_id = event.event_id
        return event

    async def close(self) -> None:
        self._closed = True
        reading = self._reading
        if reading is not None and not reading.done():
            reading.cancel()
            await asyncio.wait([reading])
        if self._own:
            await self._client.aclose()

    async def __aenter__(self) -> QueueEvents:
        """Takes "$" now: the events of whatever the block does next are all read."""
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
