"""Error fingerprints: which failures are "the same error", as error trackers group them.

A failure reason as the worker stores it is ``"ExceptionType: message"``. Its fingerprint is
the exception type plus the message with what varies from job to job masked: URLs, e-mail
addresses, quoted values, UUIDs and other ids, and numbers. So "bounce from a@x.org" and
"bounce from b@y.com" are one group of two, not two groups of one.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?:: |$)")
# Order matters: a URL holds numbers and may hold an e-mail address; a quoted value may hold
# anything. Each rule replaces what it found, so later rules never see it again.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Each pattern that starts with a run of characters starts only where such a run starts
    # (the lookbehinds): tried at every position of a long run, as "\b" or nothing would
    # let it, it cost time quadratic in the run's length (a 64 KiB reason of "a-a-a-..."
    # took a minute and froze the dashboard). Every start inside a run would fail anyway
    # when the run's start fails, so what is masked is the same.
    (re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE), "<url>"),
    (re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`"), "<value>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
     "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", re.IGNORECASE), "<id>"),
    # A word that mixes letters and digits (ord_8f3a2, u-7, A1B2C3) is an id.
    (re.compile(r"(?<![\w-])(-*)\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]+\b"), r"\1<id>"),
    (re.compile(r"[-+]?\b\d+(?:[.,:]\d+)*\b"), "<n>"),
)
MAX_TEMPLATE = 300
# Characters of a message that are masked: the template keeps 300 anyway, and a reason may
# be 64 KiB (the dead-letter view fingerprints up to 2,000 of them per request).
MAX_MESSAGE = 2000


class Fingerprint(msgspec.Struct, frozen=True):
    """``key``: 12 hex characters naming the group; ``type``: the exception type ("" when the
    reason names none); ``template``: the message with its variable parts masked."""

    key: str
    type: str
    template: str


def mask(message: str) -> str:
    """The message with URLs, e-mail addresses, quoted values, ids and numbers masked."""
    for pattern, placeholder in _MASKS:
        message = pattern.sub(placeholder, message)
    return message[:MAX_TEMPLATE]


def fingerprint(reason: str | None) -> Fingerprint:
    """The group of a failure reason (``"Type: message"``, or any text)."""
    text = (reason or "(no reason)").strip()
    m = _TYPE.match(text)
    exc_type, message = (m.group(1), text[m.end():]) if m else ("", text)
    template = mask(message[:MAX_MESSAGE])
    key = hashlib.sha1(f"{exc_type}\0{template}".encode(errors="replace")).hexdigest()[:12]
    return Fingerprint(key=key, type=exc_type, template=template)
