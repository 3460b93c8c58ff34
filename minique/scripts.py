"""Loads the Lua scripts in ``lua/`` once and calls them by SHA.

``--@include name`` lines are replaced by ``lua/includes/name.lua``, so shared pieces
(the key vector, events, enqueueing) are written once. After ``NOSCRIPT`` (a restarted or
flushed Redis) the script is loaded again and the call repeated.

A script's whole body runs on every EVALSHA, so each ``local function`` of every include
is created again per call: a closure with its upvalues, about 0.3-0.5 µs of server time
each here, and add.lua alone pulled in 51 of them (~60 µs of a ~100 µs add). Top-level
functions that the expanded script never uses are dropped before the script is loaded
(``_shake``), so each script pays only for what it calls.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from .errors import InvalidJobState, JobNotFound

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.MULTILINE)

Arg = str | bytes | int | float


class Script:
    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _expand(source: str, seen: tuple[str, ...] = ()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ValueError(f"circular Lua include: {' -> '.join((*seen, name))}")
        return _expand((LUA_DIR / "includes" / f"{name}.lua").read_text(), (*seen, name))

    return _INCLUDE.sub(include, source)


# Lua tokens that matter for finding where a function ends and which names are used:
# long strings/comments, line comments, quoted strings, names, anything else.
_TOKEN = re.compile(r"""
    --\[(?P<lc>=*)\[.*?\](?P=lc)\]      # long comment
  | --[^\n]*                            # line comment
  | \[(?P<ls>=*)\[.*?\](?P=ls)\]        # long string
  | "(?:\\.|[^"\\\n])*"                   # double-quoted string
  | '(?:\\.|[^'\\\n])*'                   # single-quoted string
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | \S
""", re.VERBOSE | re.DOTALL)
_OPENS = frozenset({"function", "if", "do", "repeat"})
_CLOSES = frozenset({"end", "until"})
# A top-level function definition: "local function f(" or "f = function(" (for a name
# declared earlier with "local f", so that functions defined later can call it).
_TOP_DEF = re.compile(r"^(?:local function (\w+)\s*\(|(\w+) = function\s*\()", re.MULTILINE)


def _definitions(source: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of every top-level function definition in ``source``."""
    found = []
    for m in _TOP_DEF.finditer(source):
        depth = 0
        for tok in _TOKEN.finditer(source, m.start()):
            word = tok.group("name")
            if word in _OPENS:
                depth += 1
            elif word in _CLOSES:
                depth -= 1
                if depth == 0:
                    found.append((m.group(1) or m.group(2), m.start(), tok.end()))
                    break
        else:  # pragma: no cover - Redis would refuse the script anyway
            raise ValueError(f"no end found for Lua function {m.group(1) or m.group(2)}")
    return found


def _shake(source: str) -> str:
    """``source`` without the top-level functions that its main body cannot reach: those
    named nowhere outside function definitions, and whatever only they refer to. Names in
    comments and strings do not count; a name used as a field (``t.name``) counts, which
    only ever keeps a function that could have gone."""
    defs = _definitions(source)
    names = {name for name, _, _ in defs}
    # "local f" that declares a function defined later with "f = function" is no use.
    declared = {m.start(1) for m in re.finditer(r"^local (\w+)\s*(?:--[^\n]*)?$", source,
                                                 re.MULTILINE)}
    refs: dict[str, set[str]] = {name: set() for name in names}
    roots: set[str] = set()
    spans = sorted((start, end, name) for name, start, end in defs)
    i = 0
    for tok in _TOKEN.finditer(source):
        word = tok.group("name")
        if word not in names or tok.start() in declared:
            continue
        while i < len(spans) and spans[i][1] <= tok.start():
            i += 1
        if i < len(spans) and spans[i][0] <= tok.start():
            if spans[i][2] != word:
                refs[spans[i][2]].add(word)
        else:
            roots.add(word)
    live, todo = set(roots), list(roots)
    while todo:
        for word in refs[todo.pop()] - live:
            live.add(word)
            todo.append(word)
    for start, end, name in reversed(spans):
        if name not in live:
            source = source[:start] + source[end:]
    return source


@cache
def script(name: str) -> Script:
    return Script(name, _shake(_expand((LUA_DIR / f"{name}.lua").read_text())))


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


async def run(client: Any, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    s = script(name)
    try:
        try:
            return await client.evalsha(s.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(s.source)
            return await client.evalsha(s.sha, len(keys), *keys, *args)
    except NoScriptError:
        raise
    except ResponseError as exc:
        raise translate_error(exc) from exc


async def load_all(client: Any) -> None:
    """Loads every script; pipelines fail on NOSCRIPT as a whole, so they call this first."""
    for name in all_script_names():
        await client.script_load(script(name).source)
