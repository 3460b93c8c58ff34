"""The Lua transitions in ``lua/``: loaded once into Redis as one function library, each
called by name with ``FCALL``.

``--@include name`` lines are replaced by ``lua/includes/name.lua``, so shared pieces (the
key vector, events, enqueueing) are written once. The library holds every include once,
then one function per transition file (``lua/finish.lua`` is the function ``finish``),
whose body starts with ``begin_call(KEYS, ARGV)`` (``includes/call.lua``).

Why functions rather than ``EVALSHA``: an ``EVAL`` script runs its whole text on every
call, so every ``local function`` of the includes (about 150 of them) was created again on
each call, and collected later: about 75 µs of server time per call, more than a whole
one-job call needs otherwise. A library's code runs once, at ``FUNCTION LOAD``.

The library's name and its functions' names carry a hash of its text
(``minique_<hash>``, ``mq<hash>_finish``), so processes of two versions of minique can share
one Redis. After ``Function not found`` (a restarted or flushed Redis) the library is
loaded again and the call repeated. A server without functions (Redis before 7) gets each
transition as an ``EVAL`` script of the same code instead (``MINIQUE_SCRIPT_MODE=eval``
forces that mode).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from .errors import InvalidJobState, JobNotFound

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.MULTILINE)
# Every include, in an order where each comes after what it uses; call.lua comes last,
# since begin_call resets the state of all of them.
_LIBRARY_INCLUDES = ("base", "dedup", "job_fields", "retention", "scheduler", "take", "attempts",
                     "producers", "call")
# A transition whose file has this line gets a call id as its last argument (see run) and
# replays its first reply to a re-send of the same call (lua/wrappers/once.lua).
_ONCE = re.compile(r"^--@once\s*$", re.MULTILINE)
# A transition whose file has this line runs while Redis is out of memory (the function
# flag allow-oom): what it writes does not grow the data set, and refusing it does harm
# (a lease renewal refused for memory lets the lease run out while its job runs on).
_ALLOW_OOM = re.compile(r"^--@allow-oom\s*$", re.MULTILINE)
_BODY = "--@body\n"

Arg = str | bytes | int | float


class Library:
    """The library's text, its hash-tagged name, and each transition's function name."""

    __slots__ = ("allow_oom_names", "call_id_names", "eval_sources", "functions", "name",
                 "prelude", "source", "tag")

    def __init__(self, prelude: str, bodies: dict[str, str],
                 once: frozenset[str] = frozenset(),
                 allow_oom: frozenset[str] = frozenset()) -> None:
        self.prelude = prelude
        # Transitions that take a call id as their last argument.
        self.call_id_names = once
        bodies = {name: _replayed(body) if name in once else body
                  for name, body in bodies.items()}
        digest = hashlib.sha1(prelude.encode())
        for name in sorted(bodies):
            digest.update(name.encode() + b"\0" + bodies[name].encode())
        self.tag = digest.hexdigest()[:12]
        self.name = f"minique_{self.tag}"
        # Each transition's function name, made once rather than per call.
        self.functions = {name: f"mq{self.tag}_{name}" for name in bodies}
        self.allow_oom_names = allow_oom
        registrations = "".join(
            f"redis.register_function{{function_name='{self.function(name)}', "
            f"callback=function(KEYS, ARGV)\n{_start(name in self.call_id_names)}\n{body}\n"
            f"end{_flags(name in allow_oom)}}}\n"
            for name, body in sorted(bodies.items()))
        self.source = f"#!lua name={self.name}\n{prelude}\n{registrations}"
        # The same code as plain scripts, for servers without functions.
        self.eval_sources = {name: f"{prelude}\n{_start(name in self.call_id_names)}\n{body}\n"
                             for name, body in bodies.items()}

    def function(self, name: str) -> str:
        return self.functions.get(name) or f"mq{self.tag}_{name}"


def _flags(allow_oom: bool) -> str:
    """A registration's flags: none (Redis's default for a function that writes), or
    allow-oom. (EVAL mode, for servers without functions, has no flags: there a renewal is
    refused under OOM as any write.)"""
    return ", flags={'allow-oom'}" if allow_oom else ""


def _start(takes_call_id: bool) -> str:
    """A transition's first line: begin_call, unless its wrapper makes that call."""
    return "" if takes_call_id else "begin_call(KEYS, ARGV)"


def _replayed(body: str) -> str:
    """``body`` of a transition that takes a call id, in lua/wrappers/once.lua."""
    wrapper = (LUA_DIR / "wrappers" / "once.lua").read_text()
    return wrapper.replace(_BODY, body.rstrip("\n") + "\n", 1)


class Script:
    """One transition as an ``EVAL`` script (the fallback mode)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _expand(source: str, done: list[str]) -> str:
    """Replaces each include line by the include's text, each include once."""
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in done:
            return ""
        done.append(name)
        return _expand((LUA_DIR / "includes" / f"{name}.lua").read_text(), done)

    return _INCLUDE.sub(include, source)


@cache
def library() -> Library:
    done: list[str] = []
    prelude = _expand("".join(f"--@include {name}\n" for name in _LIBRARY_INCLUDES), done)
    missing = sorted({p.stem for p in (LUA_DIR / "includes").glob("*.lua")} - set(done))
    if missing:
        raise RuntimeError(f"Lua includes not in the library: {missing}")
    texts = {name: (LUA_DIR / f"{name}.lua").read_text() for name in all_script_names()}
    bodies = {name: _INCLUDE.sub("", text) for name, text in texts.items()}
    return Library(prelude, bodies,
                   once=frozenset(n for n, t in texts.items() if _ONCE.search(t)),
                   allow_oom=frozenset(n for n, t in texts.items() if _ALLOW_OOM.search(t)))


def eval_source(body: str) -> str:
    """An ``EVAL`` script of ``body`` with the library's includes and begin_call before it
    (for tests and one-off tools)."""
    return f"{library().prelude}\nbegin_call(KEYS, ARGV)\n{body}\n"


@cache
def script(name: str) -> Script:
    return Script(name, library().eval_sources[name])


def all_script_names() -> list[str]:
    return sorted(p.stem for p in LUA_DIR.glob("*.lua"))


def translate_error(exc: ResponseError) -> Exception:
    """Turns the scripts' tagged error replies into minique exceptions."""
    text = str(exc)
    if text.startswith("INVALIDSTATE"):
        return InvalidJobState(text.removeprefix("INVALIDSTATE").strip())
    if text.startswith("NOTFOUND"):
        return JobNotFound(text.removeprefix("NOTFOUND").strip())
    return exc


# True: FCALL; False: EVALSHA (a server without functions, or MINIQUE_SCRIPT_MODE=eval).
_use_functions = os.environ.get("MINIQUE_SCRIPT_MODE", "function") != "eval"


def uses_functions() -> bool:
    """Whether transitions are called as functions (FCALL) rather than scripts (EVALSHA)."""
    return _use_functions


def _no_functions(exc: ResponseError) -> bool:
    text = str(exc).lower()
    return "unknown command" in text and ("fcall" in text or "function" in text)


def _function_missing(exc: ResponseError) -> bool:
    return "function not found" in str(exc).lower()


def new_call_id() -> str:
    """A call's id, 16 hex digits: sent with every re-send of the call, so that the
    transition can tell a re-send from a new call."""
    return os.urandom(8).hex()


async def run(client: Any, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Calls transition ``name``; loads the library (or the script) first if Redis lacks it.
    Errors the transition raises on purpose come back as minique exceptions."""
    global _use_functions
    lib = library()
    if name in lib.call_id_names:
        # The same id in every re-send redis-py makes of this call: it runs once.
        args = (*args, new_call_id())
    try:
        if _use_functions:
            try:
                try:
                    return await client.fcall(lib.function(name), len(keys), *keys, *args)
                except ResponseError as exc:
                    if not _function_missing(exc):
                        raise
                await load_library(client)
                return await client.fcall(lib.function(name), len(keys), *keys, *args)
            except ResponseError as exc:
                if not _no_functions(exc):
                    raise
                _use_functions = False  # Redis before 7: the same code as scripts
        s = script(name)
        try:
            return await client.evalsha(s.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(s.source)
            return await client.evalsha(s.sha, len(keys), *keys, *args)
    except NoScriptError:
        raise
    except ResponseError as exc:
        raise translate_error(exc) from exc


def queue_call(pipe: Any, name: str, keys: Sequence[str], args: Sequence[Arg]) -> None:
    """Queues a call of transition ``name`` on a pipeline (call ``load_all`` first: a
    pipeline cannot load what is missing halfway)."""
    if _use_functions:
        pipe.fcall(library().function(name), len(keys), *keys, *args)
    else:
        pipe.evalsha(script(name).sha, len(keys), *keys, *args)


def did_not_run(exc: BaseException) -> bool:
    """Whether a call failed before running any code: the library or script is missing, or
    the server has no functions (``run`` then loads, or switches to scripts, and calls
    again)."""
    return missing_code(exc) or (isinstance(exc, ResponseError) and _no_functions(exc))


def missing_code(exc: BaseException) -> bool:
    """Whether a pipeline failed because Redis lacks the library or a script."""
    return isinstance(exc, NoScriptError) or (
        isinstance(exc, ResponseError) and _function_missing(exc))


async def load_library(client: Any) -> None:
    """Loads the library unless Redis has it already (by its hash-tagged name)."""
    try:
        await client.function_load(library().source)
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise


async def load_all(client: Any) -> None:
    """Loads the library (or every script); pipelines fail as a whole on missing code, so
    they call this first."""
    global _use_functions
    if _use_functions:
        try:
            await load_library(client)
            return
        except ResponseError as exc:
            if not _no_functions(exc):
                raise
            _use_functions = False
    for name in all_script_names():
        await client.script_load(script(name).source)
