"""scripts/setup: the demo installs only what it runs, and Python is probed silently."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from helpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Imports guarded by ImportError in minique, each behind an extra the demo does not need.
# Imported only when used: uvloop and OpenTelemetry when installed; pytest by the test
# plugin minique.testing, which a test run loads (it is a test tool, not a demo need).
OPTIONAL = {"uvloop", "opentelemetry", "pytest", "pytest_asyncio"}  # the pytest plugin's
TEST_AND_DEV_TOOLS = {"pytest", "playwright", "mypy", "hypothesis", "ruff", "fakeredis",
                      "python-amazon-sp-api", "pytest-asyncio", "build"}


def _pyproject(path: Path) -> dict:  # type: ignore[type-arg]
    return tomllib.loads(path.read_text())["project"]  # type: ignore[no-any-return]


def demo_requirements() -> list[Requirement]:
    """What `scripts/setup demo` asks pip for: the library with the extras the script names
    (embedded included, as on a machine without Redis), and the application."""
    script = (ROOT / "scripts" / "setup").read_text()
    extras = set(re.findall(r"extras=([\w,]+)", script)[-1].split(","))
    assert 'targets=(-e ".[$extras]" -e ./processors)' in script
    library, app = _pyproject(ROOT / "pyproject.toml"), _pyproject(ROOT / "processors" / "pyproject.toml")
    found = [Requirement(r) for r in library["dependencies"]]
    for extra in sorted(extras):
        found += [Requirement(r) for r in library["optional-dependencies"][extra]]
    return found + [Requirement(r) for r in app["dependencies"] if not r.startswith("minique-queue")]


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """Every distribution those requirements install (as installed in this venv)."""
    todo = list(requirements)
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for raw in md.requires(req.name) or []:
            dep = Requirement(raw)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(dep)
    return seen


def third_party_imports(*folders: str) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "minique", "processors"}


def test_the_demo_installs_what_it_imports_and_no_test_or_dev_tool() -> None:
    installed = closure(demo_requirements())
    assert not installed & {canonicalize_name(t) for t in TEST_AND_DEV_TOOLS}, sorted(installed)
    by_module = md.packages_distributions()
    for module in sorted(third_party_imports("processors", "minique") - OPTIONAL):
        providers = {canonicalize_name(d) for d in by_module.get(module, [])}
        assert providers & installed, f"the demo imports {module!r} but does not install it"


def _shim(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


PYENV_NOISE = ("echo \"pyenv: $(basename $0): command not found\" >&2; "
               "echo 'The command exists in these Python versions:' >&2; exit 127")


def probe(folder: Path) -> subprocess.CompletedProcess[str]:
    os.symlink("/bin/bash", folder / "bash")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = str(folder)
    return subprocess.run([str(ROOT / "scripts" / "find-python")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_python_is_probed_silently(tmp_path: Path) -> None:
    _shim(tmp_path, "python3.13", PYENV_NOISE)
    _shim(tmp_path, "python3.12", PYENV_NOISE)
    os.symlink(sys.executable, tmp_path / "python3.11")
    done = probe(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "python3.11\n", "")


def test_no_suitable_python_is_one_line(tmp_path: Path) -> None:
    for name in ("python3.13", "python3.12", "python3.11"):
        _shim(tmp_path, name, PYENV_NOISE)
    _shim(tmp_path, "python3", "exit 1  # an old Python: sys.version_info < (3, 11)")
    done = probe(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "setup: Python 3.11+ is required\n")
