"""The application's settings, read from the environment once per process.

Every value has an environment variable so that ``minique worker processors.jobs:registry``
needs no code changes between machines; tests and the demo build ``AppSettings`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from minique.connection import resolve_url
from processors.storage import database_url
from processors.sync_logic.webhooks import webhook_url_problem

ENV_REPORT_DIR = "MINIQUE_AMAZON_REPORT_DIR"
ENV_WEBHOOK_URLS = "MINIQUE_WEBHOOK_URLS"
ENV_WEBHOOK_SECRET = "MINIQUE_WEBHOOK_SECRET"
ENV_WEBHOOK_ON_JOBS = "MINIQUE_WEBHOOK_ON_JOBS"
ENV_QUEUE_PREFIX = "MINIQUE_PREFIX"


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppSettings:
    redis_url: str
    database_url: str
    prefix: str = "minique"
    report_dir: Path = Path("reports")
    # Receivers of every webhook (alerts, and job outcomes when ``webhook_on_jobs``), besides
    # each account's own ``webhook_url``.
    webhook_urls: tuple[str, ...] = ()
    # Kept out of job payloads: the webhook worker signs with the secret it holds itself.
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_on_jobs: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        environ = os.environ if env is None else env
        urls = tuple(u.strip() for u in environ.get(ENV_WEBHOOK_URLS, "").split(",") if u.strip())
        for n, url in enumerate(urls, 1):
            problem = webhook_url_problem(url)
            if problem is not None:
                # Refused at the start: otherwise every webhook to it fails, one by one.
                raise ValueError(f"{ENV_WEBHOOK_URLS}: URL {n} of {len(urls)} is {problem}")
        return cls(
            redis_url=environ.get("MINIQUE_REDIS_URL") or resolve_url(None),
            database_url=database_url(dict(environ)),
            prefix=environ.get(ENV_QUEUE_PREFIX) or "minique",
            report_dir=Path(environ.get(ENV_REPORT_DIR) or "reports"),
            webhook_urls=urls,
            webhook_secret=environ.get(ENV_WEBHOOK_SECRET) or None,
            webhook_on_jobs=_flag(environ.get(ENV_WEBHOOK_ON_JOBS)),
        )
