"""Loads the Lua scripts in ``lua/`` once and calls them by SHA.

``--@include name`` lines are replaced by ``lua/includes/name.lua``, so shared pieces
(the key vector, events, enqueueing) are written once. After ``NOSCRIPT`` (a restarted or
flushed Redis) the script is loaded again and the call repeated.
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


@cache
def script(name: str) -> Script:
    return Script(name, _expand((LUA_DIR / f"{name}.lua").read_text()))


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
