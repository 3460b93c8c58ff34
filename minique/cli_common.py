"""What every ``minique`` command shares: the --url and --prefix options, one-line errors,
running a coroutine, and plain-text tables."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import click

from .connection import DEFAULT_URL
from .errors import MiniqueError
from .keys import DEFAULT_PREFIX, validate_prefix
from .redis_problems import PROBLEMS, BadRedisURL, check_url, describe

T = TypeVar("T")


class CliError(click.ClickException):
    """Printed as one line, ``error: <message>``, on stderr; exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class TargetError(CliError):
    """A worker's MODULE:ATTR that cannot be used (not importable, no such attribute, no
    processor for the queues asked): one line, as CliError, with exit status 2 (usage)."""

    exit_code = 2


def _url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_url(value)
    except BadRedisURL as exc:
        raise CliError(str(exc)) from None


def _prefix(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return validate_prefix(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None


url_option = click.option(
    "--url", envvar="MINIQUE_REDIS_URL", default=DEFAULT_URL, show_default=True, callback=_url,
    help="Redis URL: redis://, rediss://, unix:// or redis+cluster:// (also $MINIQUE_REDIS_URL).")
prefix_option = click.option("--prefix", default=DEFAULT_PREFIX, show_default=True,
                             callback=_prefix, help="Key prefix.")


def run(coro: Coroutine[Any, Any, T], url: str) -> T:
    """Runs ``coro`` (on uvloop when installed); a Redis problem becomes one CliError line."""
    # The runner is chosen before anything runs: run inside the `except ImportError`
    # block, every exception raised in the loop (a processor's, stored with its job's stack
    # trace) was chained to the missing uvloop, and an ImportError of the coroutine's own
    # would have run it a second time.
    runner: Callable[[Coroutine[Any, Any, T]], T]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(coro)
    except PROBLEMS as exc:
        raise CliError(describe(exc, url)) from None
    except MiniqueError as exc:
        raise CliError(str(exc)) from None


# C0/C1 control characters and the bidirectional overrides: in a job's name, id or reason
# they would drive the terminal (colours, cursor moves, a title) or reorder the line.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns as wide as their widest cell; the first column left-aligned, numbers right.
    Control characters in a cell are shown escaped (``printable``)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else printable(str(v)) for v in row]
                                           for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
               and bool(rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [cell.rjust(w) if num else cell.ljust(w)
                 for cell, w, num in zip(row, widths, numeric, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
