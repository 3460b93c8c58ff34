"""The queue's events stream: what happened to which job, in order, resumable by id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from . import codec
from .connection import connect
from .keys import DEFAULT_PREFIX, QueueKeys

EVENT_NAMES = frozenset(
    {"added", "waiting", "delayed", "active", "progress", "completed", "failed", "retrying",
     "stalled", "removed", "duplicated", "deduplicated", "debounced",
     "waiting-children", "paused", "resumed",
     "drained", "cancel", "error"}
)


class Event(msgspec.Struct, frozen=True):
    """One entry of the events stream. ``fields`` holds the small extras (reason, delay, ...).

    ``value`` is the MessagePack return value that a ``completed`` event carries (see
    ``return_value``); None on other events, and on a completed event whose value was over
    16 KiB and stayed with the job instead.
    """

    event_id: str
    name: str
    job_id: str | None
    fields: dict[str, str]
    value: bytes | None = None

    @property
    def return_value(self) -> Any:
        """The decoded return value of a ``completed`` event that carries it, else None.
        Raises JobCorrupted if it cannot be decoded."""
        return None if not self.value else codec.decode(self.value, self.job_id or "?",
                                                        "return value")

    @property
    def time(self) -> float:
        """When the event happened: seconds since the epoch, by the Redis server's clock."""
        return int(self.event_id.split("-", 1)[0]) / 1000.0


def parse_event(event_id: bytes | str, raw: dict[bytes, bytes]) -> Event:
    value = raw.pop(b"rv", None)
    fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
    name = fields.pop("ev", "")
    job_id = fields.pop("id", None)
    eid = event_id.decode() if isinstance(event_id, bytes) else event_id
    return Event(eid, name, job_id, fields, value)


async def last_event_id(client: Any, keys: QueueKeys) -> str:
    last = await client.xrevrange(keys.events, count=1)
    return last[0][0].decode() if last else "0-0"


async def read_events(
    client: Any, keys: QueueKeys, after: str, block: float, count: int = 500
) -> list[Event]:
    """Events after ``after``, waiting at most ``block`` seconds for the first one."""
    reply = await client.xread({keys.events: after}, count=count, block=max(1, int(block * 1000)))
    if not reply:
        return []
    return [parse_event(eid, raw) for eid, raw in reply[0][1]]


async def read_events_back(client: Any, keys: QueueKeys, before: str, count: int) -> list[Event]:
    """Up to ``count`` events older than ``before`` ("+" = from the newest), newest first."""
    start = before if before == "+" else "(" + before
    return [parse_event(eid, raw) for eid, raw in
            await client.xrevrange(keys.events, start, "-", count=count)]


class QueueEvents:
    """Async iterator over a queue's events.

    ``last_id`` resumes after an event id; the default "$" starts with new events only.
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
        self.keys = QueueKeys(queue_name, prefix)
        self._own = connection is None
        self._client = connection if connection is not None else connect(url)
        self.last_id = last_id
        self._block = block
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        if self.last_id == "$":
            self.last_id = await last_event_id(self._client, self.keys)
        while not self._closed:
            for event in await read_events(self._client, self.keys, self.last_id, self._block):
                self.last_id = event.event_id
                yield event

    async def next(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds."""
        if self.last_id == "$":
            self.last_id = await last_event_id(self._client, self.keys)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            events = await read_events(self._client, self.keys, self.last_id,
                                       min(remaining, self._block), count=1)
            if events:
                self.last_id = events[0].event_id
                return events[0]

    async def close(self) -> None:
        self._closed = True
        if self._own:
            await self._client.aclose()

    async def __aenter__(self) -> QueueEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
