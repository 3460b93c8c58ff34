"""Parsing flat-file report documents (TSV, usually Cp1252)."""

from __future__ import annotations

import csv
import io
import zlib

from processors.amazon.errors import AmazonDecodeError

_EXTRA = "\0extra"


def gunzip_bounded(raw: bytes, operation: str, limit: int) -> bytes:
    """``raw`` gunzipped (every member), or ``AmazonDecodeError`` if it is not gzip or comes
    to more than ``limit`` bytes: a document a thousand times its download (a gzip bomb, or
    a report far past what a seller's day holds) would take the worker's memory first."""
    out: list[bytes] = []
    size = 0
    data = raw
    try:
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while data:
                chunk = inflater.decompress(data, limit - size + 1)
                size += len(chunk)
                if size > limit:
                    raise AmazonDecodeError(operation, 200, f"document over {limit:,} bytes "
                                            "uncompressed (ClientSettings.document_max_bytes)")
                out.append(chunk)
                data = inflater.unconsumed_tail
            if not inflater.eof:
                raise AmazonDecodeError(operation, 200, "bad gzip: the document ends early")
            data = inflater.unused_data  # the next member, if any
    except zlib.error as exc:
        raise AmazonDecodeError(operation, 200, f"bad gzip: {exc}") from None
    return b"".join(out)


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
