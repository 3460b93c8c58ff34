"""Which function processes which job: processors keyed by queue and job name."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec

from .backoff import check_strategies
from .batch import BatchOptions, parse_batch
from .keys import validate_name

F = TypeVar("F", bound=Callable[..., Any])


# async def hook(redis_url, prefix): see Registry.on_startup and Registry.on_shutdown
StartupHook = Callable[[str, str], Awaitable[None]]

class Handler:
    """A registered processor, with the payload type its data is decoded into (if any)."""

    __slots__ = ("batch", "decoder", "fn", "is_async", "name", "payload", "queue")

    def __init__(self, queue: str, name: str | None, fn: Callable[..., Any],
                 payload: type | None, batch: BatchOptions | None = None) -> None:
        self.queue = queue
        self.name = name
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.payload = payload
        self.batch = batch  # a batch processor (minique/batch.py): called with a Batch
        self.decoder: msgspec.msgpack.Decoder[Any] | None = (
            msgspec.msgpack.Decoder(payload) if payload is not None else None)


class Registry:
    """Processors by queue and job name; ``name=None`` handles every job of the queue.

    >>> registry = Registry()
    >>> @registry.processor("reports", name="daily-report", payload=ReportPayload)
    ... async def daily_report(job): ...
    """

    WORKER_OPTION_NAMES = frozenset({
        "concurrency", "limiter", "lock_duration", "stalled_interval", "max_stalled_count",
        "shutdown_timeout", "block_timeout", "default_job_options", "backoff_strategies"})

    def __init__(self, *, worker_options: Mapping[str, Any] | None = None) -> None:
        """``worker_options`` are the defaults ``minique worker`` uses for this registry's
        workers (e.g. ``{"concurrency": 5, "limiter": {"max": 10, "duration": 1.0}}``, or
        ``{"backoff_strategies": {"linear": fn}}``, the custom backoff types the jobs'
        ``backoff={"type": "linear"}`` name: see ``Worker``); flags given on the command
        line win."""
        self._handlers: dict[str, dict[str | None, Handler]] = {}
        self.worker_options = dict(worker_options or {})
        unknown = set(self.worker_options) - self.WORKER_OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown worker option(s) {sorted(unknown)}; valid: "
                            f"{sorted(self.WORKER_OPTION_NAMES)}")
        if "backoff_strategies" in self.worker_options:
            self.worker_options["backoff_strategies"] = check_strategies(
                self.worker_options["backoff_strategies"])
        self.startup_hooks: list[StartupHook] = []
        self.shutdown_hooks: list[StartupHook] = []

    def on_startup(self, fn: StartupHook) -> StartupHook:
        """Registers ``async def hook(redis_url, prefix)``, awaited by ``minique worker``
        before any worker starts with the command's ``--url`` and ``--prefix`` (e.g. to apply
        the app's job schedulers idempotently, in the same queues the workers serve)."""
        self.startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn: StartupHook) -> StartupHook:
        """Registers ``async def hook(redis_url, prefix)``, awaited by ``minique worker``
        once every worker has stopped (their last jobs ended and reported), also after a
        failure; an exception in one is logged and the others still run. (A ``Worker``
        used as a library has its own ``on_startup``/``on_shutdown``.)"""
        self.shutdown_hooks.append(fn)
        return fn

    def payload_types(self, queue: str) -> dict[str, type]:
        """Job name -> payload type, for ``Queue(..., payload_types=...)`` to check at add."""
        return {name: h.payload for name, h in self._handlers.get(queue, {}).items()
                if name is not None and h.payload is not None}

    def processor(self, queue: str, name: str | None = None, *,
                  payload: type | None = None,
                  batch: Mapping[str, Any] | None = None) -> Callable[[F], F]:
        """``batch={"size": n, "timeout": s, "group": "any" | "same"}`` makes it a batch
        processor (minique/batch.py, docs/guide/batches.md): an async function called with
        a ``Batch`` of up to ``size`` jobs; with ``"group": "same"`` each batch holds jobs
        of one group only. TypeError/ValueError at registration on bad options."""
        def register(fn: F) -> F:
            self.add(queue, fn, name=name, payload=payload, batch=batch)
            return fn

        return register

    def add(self, queue: str, fn: Callable[..., Any], *, name: str | None = None,
            payload: type | None = None, batch: Mapping[str, Any] | None = None) -> Handler:
        validate_name("queue name", queue)
        batch_options = parse_batch(batch)
        if batch_options is not None and not inspect.iscoroutinefunction(fn):
            raise TypeError(f"batch processor for {queue!r}/{name!r} must be an async function")
        if not callable(fn):
            raise TypeError(f"processor for {queue!r}/{name!r} is not callable: {fn!r}")
        if payload is not None and not (isinstance(payload, type) and
                                        issubclass(payload, msgspec.Struct)):
            raise TypeError(f"payload must be a msgspec.Struct subclass, got {payload!r}")
        by_name = self._handlers.setdefault(queue, {})
        if name in by_name:
            raise ValueError(f"a processor for queue {queue!r} and job {name!r} exists already")
        handler = Handler(queue, name, fn, payload, batch_options)
        by_name[name] = handler
        return handler

    def resolve(self, queue: str, job_name: str) -> Handler | None:
        by_name = self._handlers.get(queue)
        if not by_name:
            return None
        return by_name.get(job_name) or by_name.get(None)

    def queues(self) -> list[str]:
        return sorted(self._handlers)

    def batch_size(self, queue: str) -> int:
        """The largest batch size of the queue's batch processors (0: none)."""
        return max((h.batch.size for h in self._handlers.get(queue, {}).values()
                    if h.batch is not None), default=0)

    def names(self, queue: str) -> list[str | None]:
        return list(self._handlers.get(queue, {}))

    @classmethod
    def single(cls, queue: str, fn: Callable[..., Any]) -> Registry:
        """A registry with one processor for every job of ``queue``."""
        registry = cls()
        registry.add(queue, fn)
        return registry
