"""The release artefacts and the shape of the code: the library's wheel and sdist build
with the current hatchling and hold `minique` only; the Amazon application is a
distribution of its own; the producer side never imports the worker.

The builds run offline (``--no-isolation``, with the hatchling of this venv);
scripts/check-dist, which CI runs, does the same in an isolated build environment and
installs the wheel with its dependencies."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT


def _build(project: Path, out: Path) -> tuple[Path, Path]:
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(project)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # `build` makes the sdist, then the wheel *from the sdist*: so the sdist is complete.
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _build(ROOT, tmp_path_factory.mktemp("dist"))


def _top_levels(names: list[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names if name.strip("/")}


def test_library_wheel_ships_minique_only_with_its_lua_and_templates(library: tuple[Path, Path]) -> None:
    wheel, _ = library
    names = zipfile.ZipFile(wheel).namelist()
    assert _top_levels(names) == {"minique", "minique_queue-0.1.0.dist-info"}
    for lua in (ROOT / "minique" / "lua").rglob("*.lua"):
        assert lua.relative_to(ROOT).as_posix() in names
    assert any(n.startswith("minique/dashboard/") and n.endswith(".html") for n in names)
    entry_points = zipfile.ZipFile(wheel).read("minique_queue-0.1.0.dist-info/entry_points.txt")
    assert b"minique = minique.cli:main" in entry_points


def test_library_sdist_holds_the_library_not_the_application(library: tuple[Path, Path]) -> None:
    _, sdist = library
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert "minique/lua/finish.lua" in names and "pyproject.toml" in names
    assert not [n for n in names if n.startswith(("processors", "tests", "benchmarks"))]


def test_installed_wheel_has_no_processors_package(library: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, _ = library
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    zipfile.ZipFile(wheel).extractall(site)  # a wheel is installed by unpacking it
    probe = ("import importlib.util as u, pathlib; "
             "print(u.find_spec('processors') is None, "
             "(pathlib.Path(u.find_spec('minique').origin).parent / 'lua' / 'add.lua').is_file())")
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=clean_env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True"], done.stderr


def test_application_is_its_own_distribution(tmp_path: Path) -> None:
    wheel, _ = _build(ROOT / "processors", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert _top_levels(names) == {"processors", "minique_amazon-0.1.0.dist-info"}
    assert "processors/amazon/quota.lua" in names and "processors/demo.py" in names
    metadata = zipfile.ZipFile(wheel).read("minique_amazon-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: minique-queue" in metadata


def _framework_imports(module: str) -> set[str]:
    """The minique modules that ``module`` imports, at run time or for type checking."""
    path = ROOT / (module.replace(".", "/") + ".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(f"minique.{node.module}")
            else:
                found.update(f"minique.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minique."):
            found.add(node.module or "")
    return {m for m in found if (ROOT / (m.replace(".", "/") + ".py")).is_file()}


def test_producer_side_never_imports_the_worker() -> None:
    seen: set[str] = set()
    todo = ["minique.queue"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_framework_imports(module))
    assert "minique.worker_info" in seen
    assert "minique.worker" not in seen, sorted(seen)
