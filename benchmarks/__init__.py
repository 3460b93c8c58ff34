"""Comparison benchmarks: minique against BullMQ-Node and the Python peers (issue 5).

Run ``python -m benchmarks.compare --help``. Everything under ``benchmarks/systems`` that the
peer venvs import must stay stdlib-only apart from the system it drives.
"""
