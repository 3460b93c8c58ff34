"""``minique dashboard``: serve the dashboard with uvicorn.

Register it on the main command group with ``main.add_command(dashboard_command)``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import click

from ..cli_common import CliError, prefix_option, url_option
from .security import Auth, ConfigError, check_bind


@click.command("dashboard")
@url_option  # checked as every command checks it: a bad URL is one line, before serving
@prefix_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback requires credentials: "
                   "$MINIQUE_DASHBOARD_TOKEN, or $MINIQUE_DASHBOARD_USERNAME and "
                   "$MINIQUE_DASHBOARD_PASSWORD.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to bind (0: any free port).")
@click.option("--queue", "queues", multiple=True,
              help="Queue to show (repeatable). Default: discover every queue.")
@click.option("--hide-data", "hidden", multiple=True, envvar="MINIQUE_DASHBOARD_HIDE_DATA",
              help="Queue whose job data and return values are never shown (repeatable).")
@click.option("--root-path", default="", help="Path prefix, when served behind a proxy under one.")
def dashboard_command(url: str, prefix: str, host: str, port: int, queues: tuple[str, ...],
                      hidden: tuple[str, ...], root_path: str) -> None:
    """Serve the web dashboard, its JSON API (/api) and Prometheus /metrics."""
    try:
        auth = Auth.from_env(os.environ)
        check_bind(host, auth)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'minique-queue[dashboard]' ({exc})") from exc

    try:
        app = create_app(url, queues=list(queues) or None, prefix=prefix, auth=auth,
                         hidden_data_queues=hidden)
    except ValueError as exc:  # a --queue name no queue can have
        raise CliError(str(exc)) from None
    if port == 0:  # any free port: pick it here, so the address printed is the real one
        from ..server import free_port

        port = free_port()
    where = "" if auth is None else (" (token auth)" if auth.token else " (basic auth)")
    click.echo(f"minique dashboard on http://{host}:{port}{root_path}/{where}")
    uvicorn.run(app, host=host, port=port, root_path=root_path, log_level="info",
                proxy_headers=False, log_config=redacting_log_config())


def redacting_log_config() -> dict[str, Any]:
    """uvicorn's logging set-up with ``RedactCredentials`` on every handler, so no access or
    error line ever shows a ``?token=`` (or password, api_key...) value."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": "minique.dashboard.security.RedactCredentials"}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "redact"]
    return config
