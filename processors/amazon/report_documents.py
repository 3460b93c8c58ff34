"""Parsing flat-file report documents (TSV, usually Cp1252)."""

from __future__ import annotations

import csv
import io

from processors.amazon.errors import AmazonDecodeError

_EXTRA = "\0extra"


def parse_tsv(document: bytes, encoding: str = "cp1252") -> list[dict[str, str]]:
    """Rows keyed by header name: column counts differ between marketplaces, names do not.

    A UTF-8 byte order mark is dropped; a row shorter than the header (Amazon leaves trailing
    empty columns out) gets "" for the missing columns; a row longer than the header is an
    ``AmazonDecodeError``, since its values cannot be matched to columns.
    """
    try:
        text = document.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Amazon's flat files are Cp1252 unless the response says otherwise.
        text = document.decode(encoding, errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE,
                            restval="", restkey=_EXTRA)
    rows = []
    for row in reader:
        if _EXTRA in row:
            width = len(reader.fieldnames or ())
            raise AmazonDecodeError(
                "reportDocument", 200,
                f"row {reader.line_num} has {width + len(row[_EXTRA])} fields, the header {width}")
        rows.append(dict(row))
    return rows
