"""``python -m processors``: see processors/accounts_cli.py."""

from processors.accounts_cli import main

main(prog_name="python -m processors")
