"""MessagePack encoding of payloads and return values (msgspec)."""

from __future__ import annotations

from typing import Any

import msgspec

from .errors import JobCorrupted, PayloadError

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
decode_any = _decoder.decode
# The bare encoder, for hot loops that call ``encode`` again only on failure (to name the
# field): ``encode``'s message argument is an f-string built per call otherwise.
encode_fast = _encoder.encode


# The most a payload, return value or scheduler template may take, encoded (bytes). Redis
# refuses a bulk string over proto-max-bulk-len (512 MB by default) and closes the link: a
# worker's result that size would be sent again and again, holding up every result after
# it; an add would fail with a connection error instead of a clear one.
MAX_VALUE_BYTES = 256 * 1024 * 1024


def check_size(raw: bytes, what: str) -> bytes:
    """``raw``, or PayloadError if it is over MAX_VALUE_BYTES."""
    if len(raw) > MAX_VALUE_BYTES:
        raise PayloadError(f"{what} is {len(raw):,} bytes encoded; at most {MAX_VALUE_BYTES:,} "
                           "(minique.codec.MAX_VALUE_BYTES): store large data elsewhere (a "
                           "file, an object store) and pass its key")
    return raw


# What msgspec raises for a value it cannot encode: a type it does not know, an integer
# out of range, a string with a lone surrogate (os.fsdecode of a name that is not UTF-8).
_REFUSED = (TypeError, msgspec.EncodeError, OverflowError, UnicodeEncodeError)


def encode(value: Any, what: str = "payload") -> bytes:
    """Encodes ``value``; on failure names the first field that cannot be encoded. Raises
    PayloadError if it cannot be encoded (nested too deeply included) or is over
    MAX_VALUE_BYTES."""
    try:
        raw = _encoder.encode(value)
    except RecursionError as exc:
        raise PayloadError(f"{what} cannot be encoded: it is nested too deeply "
                           f"({exc})") from exc
    except _REFUSED as exc:
        path = _find_bad_path(value, "$")
        where = f" at {path}" if path else ""
        raise PayloadError(f"{what} cannot be encoded{where}: {exc}") from exc
    return check_size(raw, what)


def _find_bad_path(value: Any, path: str) -> str | None:
    """Walks containers to find the innermost value msgspec refuses."""
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            try:
                _encoder.encode(k)
            except _REFUSED:
                return f"{path} (key {k!r})"
            children.append((f"{path}.{k}", v))
    elif isinstance(value, list | tuple | set | frozenset):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    elif isinstance(value, msgspec.Struct):
        children = [(f"{path}.{f}", getattr(value, f)) for f in value.__struct_fields__]
    for child_path, child in children:
        try:
            _encoder.encode(child)
        except _REFUSED:
            return _find_bad_path(child, child_path) or child_path
    return None


def check(value: Any, payload_type: type, what: str) -> None:
    """Raises PayloadError (naming the field) if ``value`` does not fit ``payload_type``."""
    try:
        msgspec.convert(value, payload_type, from_attributes=True)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"{what} does not match {payload_type.__name__}: {exc}") from exc


def decode(raw: bytes, job_id: str, field: str) -> Any:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise JobCorrupted(f"job {job_id}: stored {field} cannot be decoded: {exc}") from exc
