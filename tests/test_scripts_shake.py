"""Scripts are loaded without the included functions they never reach (scripts._shake)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from minique import scripts

SOURCE = """
local K = {meta = KEYS[1]}
local function helper(x) return x .. 'end' end  -- "end" in a string: not a block end
local function used(x)
  if x then
    for i = 1, 2 do x = helper(x) end
  end
  return x
end
local function unused() return used('x') end
-- ping_pong and pong_ping call each other and nothing else calls them.
local function ping_pong(n) if n > 0 then return pong_ping(n - 1) end return 0 end
local function pong_ping(n) repeat n = n - 1 until n < 0 return ping_pong(n) end
local later  -- defined below, called by an earlier function
local function early() return later() end
later = function() return [[a long string with end and function in it]] end
local gone_late
later_unused = nil
gone_late = function() return 1 end
-- A comment that names unused() and gone_late() does not keep them.
return {used(K.meta), early(), 'unused'}
"""


def _functions(source: str) -> set[str]:
    return {a or b for a, b in re.findall(r"^local function (\w+)|^(\w+) = function", source,
                                          re.MULTILINE)}


def test_unreachable_functions_are_dropped_reachable_ones_kept() -> None:
    shaken = scripts._shake(SOURCE)
    assert _functions(shaken) == {"helper", "used", "early", "later"}
    # What is left is the source minus whole definitions.
    assert "local K = {meta = KEYS[1]}" in shaken
    assert "return {used(K.meta), early(), 'unused'}" in shaken
    assert "pong_ping" not in shaken.replace("-- ping_pong and pong_ping", "")


def test_every_script_keeps_every_function_it_calls() -> None:
    for name in scripts.all_script_names():
        full = scripts._expand((scripts.LUA_DIR / f"{name}.lua").read_text())
        shaken = scripts.script(name).source
        dropped = _functions(full) - _functions(shaken)
        # Comments and bare declarations ("local f", for "f = function" later) may stay.
        code = re.sub(r"^local \w+\s*$", "", re.sub(r"--[^\n]*", "", shaken), flags=re.MULTILINE)
        for fn in dropped:
            assert not re.search(rf"\b{fn}\b", code), f"{name}: {fn} dropped but still named"
        assert len(shaken) <= len(full)


@pytest.mark.parametrize("name", scripts.all_script_names())
async def test_every_shaken_script_compiles(client: Any, name: str) -> None:
    sha = await client.script_load(scripts.script(name).source)
    assert (sha.decode() if isinstance(sha, bytes) else sha) == scripts.script(name).sha
