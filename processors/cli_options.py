"""Options and helpers the app's commands share: the database, and the Redis of the queues."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click
import redis

from processors import queues
from processors.settings import ENV_QUEUE_PREFIX
from processors.storage import ENV_DATABASE_URL, Storage, database_url

T = TypeVar("T")

database_option = click.option(
    "--database-url", envvar=ENV_DATABASE_URL, default=None,
    help=f"SQLAlchemy URL (also ${ENV_DATABASE_URL}; default sqlite:///minique-amazon.db).")
redis_option = click.option(
    "--url", "redis_url", envvar="MINIQUE_REDIS_URL", default=None,
    help="Redis of the queues (also $MINIQUE_REDIS_URL; default redis://127.0.0.1:6379/0).")
prefix_option = click.option(
    "--prefix", envvar=ENV_QUEUE_PREFIX, default=None, help=f"Queue key prefix (also ${ENV_QUEUE_PREFIX}).")


@contextmanager
def opened_storage(url: str | None) -> Iterator[Storage]:
    storage = Storage.from_url(url or database_url())
    try:
        yield storage
    finally:
        storage.dispose()


def run_with_queues(redis_url: str | None, prefix: str | None, work: Callable[[], Awaitable[T]]) -> T:
    """Runs ``work`` with the app's queues on ``redis_url``/``prefix``; a Redis that cannot be
    reached is one line of error, not a traceback."""

    async def main() -> T:
        try:
            return await work()
        finally:
            await queues.close_queues()

    with queues.configured(url=redis_url, prefix=prefix):
        try:
            return asyncio.run(main())
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise click.ClickException(f"cannot reach Redis at {queues.redis_url()} ({exc})") from None


def not_found(exc: KeyError) -> click.ClickException:
    return click.ClickException(str(exc.args[0]) if exc.args else str(exc))


