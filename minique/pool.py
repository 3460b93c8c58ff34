"""Runs sync processors in child processes (``Worker(processes=N)``) that can be killed.

CPU-bound code there cannot hold the worker's GIL and starve the event loop (and with it
lease renewal). And unlike a thread, a child can be stopped: at a job's timeout, at a
cancel and past the shutdown grace, the child running the job is killed, and the attempt
is reported only once the child is dead and reaped, so a retry never runs beside it. A
fresh child takes the next job.

Hand-rolled on multiprocessing: ProcessPoolExecutor cannot stop one task, and pebble's pool
resolves a timed-out or cancelled task before its process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

import msgspec

from .errors import (
    Delayed,
    GroupRateLimited,
    ProcessorError,
    RateLimited,
    UnrecoverableError,
    UnrecoverableProcessorError,
    WaitingChildren,
    failure_summary,
)
from .job import Job

_STARTED = "started"
DIRECT_SEND = 16 * 1024  # bytes written to a child's pipe on the loop (well below its buffer)


class JobSnapshot(msgspec.Struct, frozen=True):
    """What a processor running in another process sees of its job (no Redis handle:
    progress and logs are not available there)."""

    id: str
    name: str
    data: Any
    attempts_made: int
    token: str | None
    group: str | None = None  # the job's group (docs/guide/groups.md); None: no group


class ProcessDied(RuntimeError):
    """The child process running a job exited without reporting (crash, OOM kill, os._exit)."""


class _RemoteTraceback(Exception):
    """Carries the child's traceback as the ``__cause__`` of the exception it raised."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _Child:
    __slots__ = ("conn", "process", "served")

    def __init__(self, context: SpawnContext) -> None:
        self.served = 0  # jobs it has run
        self.conn, theirs = context.Pipe()
        self.process: SpawnProcess = context.Process(target=_serve, args=(theirs,),
                                                     name="minique-cpu")
        self.process.start()
        theirs.close()


class ProcessRunner:
    """At most ``processes`` child processes for sync processors, started on demand.
    ``max_tasks_per_child`` (Celery's ``worker_max_tasks_per_child``; None: no limit): a
    child that has run that many jobs exits, and the next job starts a fresh one, so that
    what a processor leaks (memory, handles) is given back."""

    def __init__(self, processes: int, max_tasks_per_child: int | None = None) -> None:
        # "spawn" keeps the children free of the parent's event loop and sockets.
        self._context = multiprocessing.get_context("spawn")
        self._size = processes
        self._max_tasks = max_tasks_per_child
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._retiring: set[asyncio.Task[None]] = set()

    async def run(self, fn: Callable[..., Any], job: Job, timeout: float | None) -> Any:
        """Returns ``fn(JobSnapshot)``'s value or raises its exception, run in a child.

        ``timeout`` (seconds, or None for none) counts from the moment the child starts the
        call, never the wait for a free child or for one to start up. Past it the child is
        killed and ``TimeoutError("job timed out after {timeout}s")`` is raised; when the
        awaiting task is cancelled, the child is killed and ``asyncio.CancelledError``
        raised; either only once the child is dead. ``ProcessDied`` if the child exits on
        its own; ``ProcessorError`` for an exception that cannot be pickled back.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        async with self._slots:
            child = self._take()
            snapshot = JobSnapshot(job.id, job.name, job.data, job.attempts_made, job.token,
                                   job.group)
            try:
                raw = ForkingPickler.dumps((fn, snapshot))
            except BaseException:
                self._idle.append(child)  # nothing was written: the child is still fine
                raise
            deadline: asyncio.Timeout | None = None
            try:
                await _send(child.conn, raw)
                await _receive(child.conn)  # _STARTED: not timed, the child may be starting up
                async with asyncio.timeout(timeout) as deadline:
                    ok, value = await _receive(child.conn)
            except BaseException as exc:
                code = child.process.exitcode  # None while it runs: we are about to kill it
                await self._kill(child)
                if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                    raise TimeoutError(f"job timed out after {timeout}s") from None
                if isinstance(exc, EOFError | OSError):  # the pipe closed: the child exited
                    raise ProcessDied(f"the process running the job died (exit code "
                                      f"{child.process.exitcode if code is None else code})"
                                      ) from None
                raise
            child.served += 1
            if self._max_tasks is not None and child.served >= self._max_tasks:
                # In a task of its own: the job's result is back, and nothing that happens
                # to the job's task now (a cancel, close()) may touch it; a child slow to
                # exit (the leak this is for) holds up no one.
                retiring = asyncio.create_task(self._retire(child), name="minique-cpu-retire")
                self._retiring.add(retiring)
                retiring.add_done_callback(self._retiring.discard)
            else:
                self._idle.append(child)
        if ok:
            return value
        raise _rebuild(*value)

    def _take(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.process.is_alive():
                return child
            self._forget(child)  # died while idle (e.g. the OOM killer)
        child = _Child(self._context)
        self._children.add(child)
        return child

    async def _kill(self, child: _Child) -> None:
        """Kills the child and returns once it is dead and reaped, whatever cancels meanwhile
        (a cancel that arrives then is raised afterwards)."""
        child.process.kill()
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()
        sentinel = child.process.sentinel  # readable once the process has exited
        loop.add_reader(sentinel, _settle, gone)
        cancelled = False
        try:
            while not gone.done():
                try:
                    await asyncio.shield(gone)
                except asyncio.CancelledError:
                    cancelled = True
        finally:
            loop.remove_reader(sentinel)
        self._forget(child)
        if cancelled:
            raise asyncio.CancelledError

    async def _retire(self, child: _Child) -> None:
        """Tells an idle child to exit and returns once it has (without blocking the loop on
        its exit); one that does not within 5 s is killed, as is one whose retirement is
        cancelled (shutdown)."""
        with contextlib.suppress(OSError):  # a pipe already closed: it has exited
            child.conn.send(None)
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()
        loop.add_reader(child.process.sentinel, _settle, gone)
        try:
            await asyncio.wait_for(asyncio.shield(gone), 5.0)
        except TimeoutError:
            child.process.kill()  # then _forget's join is short
        except asyncio.CancelledError:
            child.process.kill()
            raise
        finally:
            loop.remove_reader(child.process.sentinel)
            self._forget(child)

    def _forget(self, child: _Child) -> None:
        child.process.join()
        child.conn.close()
        self._children.discard(child)

    def shutdown(self) -> None:
        """Stops every child: an idle one exits when told, a busy or retiring one (busy only
        when the worker stopped abnormally) is killed."""
        for retiring in self._retiring:
            retiring.cancel()
        for child in self._children:
            with contextlib.suppress(OSError):  # a pipe already closed: it has exited
                if child in self._idle:
                    child.conn.send(None)
                else:
                    child.process.kill()
        for child in list(self._children):
            child.process.join(2.0)
            if child.process.is_alive():
                child.process.kill()
            self._forget(child)
        self._idle.clear()


async def _send(conn: Connection, raw: bytes | memoryview) -> None:
    """Writes one message to a child without blocking the event loop: a message larger
    than the pipe's buffer waits until the child reads it, and a child may still be
    starting up (importing a heavy main module). Such a message is written from a thread
    (a cancel meanwhile kills the child, which ends the write)."""
    if len(raw) <= DIRECT_SEND:
        conn.send_bytes(raw)  # fits in the pipe's buffer: returns at once
    else:
        await asyncio.to_thread(conn.send_bytes, raw)


async def _receive(conn: Connection) -> Any:
    """The next message from a child (EOFError once it has exited). A message is read
    whole once its first bytes arrive: a child writes each one in a single send."""
    if not conn.poll():
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _settle, ready)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
    return conn.recv()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# ----- in the child ---------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """A child's loop: runs one (fn, snapshot) at a time until told None or orphaned."""
    # The worker decides when a job's code stops (it kills the child): a Ctrl-C or SIGTERM
    # sent to the whole process group must not end a job the shutdown grace lets finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        # A worker killed with -9 cannot kill its children: they go too, or a job's code
        # would run on beside the attempt another worker starts when the lease expires.
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    while True:
        try:
            raw = conn.recv_bytes()
        except EOFError:
            return
        try:
            # Before _STARTED: importing the processor's module is not the job's own time.
            message = pickle.loads(raw)
        except BaseException as exc:
            conn.send(_STARTED)
            conn.send((False, _portable(exc)))
            continue
        if message is None:
            return
        conn.send(_STARTED)
        fn, snapshot = message
        try:
            outcome: tuple[bool, Any] = (True, fn(snapshot))
        except BaseException as exc:
            outcome = (False, _portable(exc))
        try:
            conn.send(outcome)
        except Exception as exc:  # a return value that cannot be pickled
            conn.send((False, _portable(exc)))


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _portable(exc: BaseException) -> tuple[bytes | None, str, str]:
    """The exception pickled (if it survives the trip), its summary and its traceback.
    One that does not (a class of one's own whose constructor takes other arguments) but
    is one of minique's controls is sent as that control, so that it acts the same: an
    UnrecoverableError is not retried, a Delayed or a RateLimited keeps its delay."""
    text = "".join(traceback.format_exception(exc))
    summary = failure_summary(exc)
    raw: bytes | None
    try:
        raw = pickle.dumps(exc)
        pickle.loads(raw)
    except Exception:
        stand_in = _stand_in(exc, summary)
        raw = pickle.dumps(stand_in) if stand_in is not None else None
    return raw, summary, text


def _stand_in(exc: BaseException, summary: str) -> BaseException | None:
    if isinstance(exc, UnrecoverableError):
        return UnrecoverableProcessorError(summary)
    if isinstance(exc, GroupRateLimited) or (isinstance(exc, RateLimited) and exc.group):
        return GroupRateLimited(exc.delay, exc.message)
    if isinstance(exc, RateLimited):
        return RateLimited(exc.delay, exc.message)
    if isinstance(exc, Delayed):
        return Delayed(exc.delay, exc.message)
    if isinstance(exc, WaitingChildren):
        return WaitingChildren(exc.message)
    return None


def _rebuild(raw: bytes | None, summary: str, text: str) -> BaseException:
    exc: BaseException = ProcessorError(summary)
    if raw is not None:
        with contextlib.suppress(Exception):  # its class may not unpickle here
            exc = pickle.loads(raw)
    exc.__cause__ = _RemoteTraceback(text)
    return exc
