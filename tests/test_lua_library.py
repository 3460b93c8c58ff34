"""The function library keeps its upvalues between calls: every piece of per-call state an
include declares must be reset by begin_call (lua/includes/call.lua), or one call's state
leaks into the next call, of any queue."""

from __future__ import annotations

import re

from minique import scripts

# Lower-case top-level locals are per-call state; UPPER_CASE ones are constants, or keys
# and prefixes that begin_call sets.
_STATE = re.compile(r"^local ((?:[a-z_][a-z_0-9]*)(?:\s*,\s*[a-z_][a-z_0-9]*)*)\s*(?:=|$)", re.M)


def test_every_per_call_local_of_the_includes_is_reset_by_begin_call() -> None:
    call = (scripts.LUA_DIR / "includes" / "call.lua").read_text()
    begin = call[call.index("function begin_call("):]
    assigned = set(re.findall(r"\b([A-Za-z_][A-Za-z_0-9]*)\b(?=[^\n]*=)", begin))
    missing = []
    for path in sorted((scripts.LUA_DIR / "includes").glob("*.lua")):
        if path.name == "call.lua":
            continue
        text = path.read_text()
        for names in _STATE.findall(text):
            for name in (n.strip() for n in names.split(",")):
                if re.search(rf"^\s*function {name}\(", text, re.M):
                    continue  # a function declared ahead of its definition
                if name not in assigned:
                    missing.append(f"{path.name}: {name}")
    assert not missing, f"per-call state that begin_call does not reset: {missing}"


def test_upper_case_state_set_per_call_is_set_by_begin_call() -> None:
    """Keys and prefixes declared without a value at the top of an include are set per
    call: each must be assigned in begin_call."""
    call = (scripts.LUA_DIR / "includes" / "call.lua").read_text()
    begin = call[call.index("function begin_call("):]
    missing = []
    for path in sorted((scripts.LUA_DIR / "includes").glob("*.lua")):
        for names in re.findall(r"^local ([A-Z_][A-Z_0-9]*(?:\s*,\s*[A-Z_][A-Z_0-9]*)*)\s*(?:--.*)?$",
                                path.read_text(), re.M):
            for name in (n.strip() for n in names.split(",")):
                if not re.search(rf"\b{name}\b[^\n]*=", begin):
                    missing.append(f"{path.name}: {name}")
    assert not missing, f"declared per call but never set by begin_call: {missing}"


def test_the_key_suffixes_begin_call_derives_are_those_of_the_key_vector() -> None:
    """add sends the meta key alone; begin_call derives the rest from it."""
    from minique.keys import QueueKeys

    base = (scripts.LUA_DIR / "includes" / "base.lua").read_text()
    block = re.search(r"local KEY_SUFFIX = \{(.*?)\}", base, re.S)
    assert block is not None
    suffixes = re.findall(r"'([^']*)'", block.group(1))
    keys = QueueKeys("q", "p")
    assert [keys.base + s for s in suffixes] == list(keys.vector)


async def test_every_transition_compiles_as_an_eval_script(client: object) -> None:
    """The EVAL fallback (a server without functions, or MINIQUE_SCRIPT_MODE=eval) runs each
    transition as one chunk: the includes and the body together, where Lua allows 200
    locals and 60 upvalues per function. The function library compiles the bodies apart,
    so a local added to an include could break only this mode."""
    for name in scripts.all_script_names():
        source = scripts.script(name).source
        sha = await client.script_load(source)  # type: ignore[attr-defined]
        assert sha == scripts.script(name).sha, name
