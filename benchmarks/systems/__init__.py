"""One adapter module per benchmarked system; see ``_runner.py`` for the protocol."""
