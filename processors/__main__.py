"""``python -m processors``: see processors/cli.py."""

from processors.cli import main

main(prog_name="python -m processors")
