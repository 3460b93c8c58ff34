"""``python -m processors``: the Amazon seller app's commands.

    python -m processors accounts add|list|disable|enable|rotate|remove ...
    python -m processors sync ACCOUNT [--type KIND] [--wait]
    python -m processors report ACCOUNT [--day YYYY-MM-DD] [--marketplace ID] [--wait]
    python -m processors backfill ACCOUNT --from YYYY-MM-DD --to YYYY-MM-DD

Run the workers with ``minique worker processors.jobs:registry``.
"""

from __future__ import annotations

import click

from processors.accounts_cli import accounts
from processors.jobs_cli import backfill, report, sync


@click.group()
def main() -> None:
    """The Amazon seller jobs (run workers with `minique worker processors.jobs:registry`)."""


main.add_command(accounts)
main.add_command(sync)
main.add_command(report)
main.add_command(backfill)
