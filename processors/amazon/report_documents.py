"""Parsing flat-file report documents (TSV, usually Cp1252)."""

from __future__ import annotations

import csv
import io


def parse_tsv(document: bytes, encoding: str = "cp1252") -> list[dict[str, str]]:
    """Rows keyed by header name: column counts differ between marketplaces, names do not."""
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError:
        # Amazon's flat files are Cp1252 unless the response says otherwise.
        text = document.decode(encoding, errors="replace")
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [dict(row) for row in reader]
