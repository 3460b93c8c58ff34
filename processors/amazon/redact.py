"""Keeping presigned URLs' signatures out of logs.

Report documents are downloaded from presigned S3 URLs whose ``X-Amz-Signature`` (with
``X-Amz-Credential`` and, for temporary credentials, ``X-Amz-Security-Token``) works as a
credential until the URL expires. httpx logs every request's URL at INFO, so the client
installs ``RedactPresignedUrls`` on the ``httpx`` logger (and on its own), which masks those
query values in every record.
"""

from __future__ import annotations

import logging
import re

_SECRET_QUERY = re.compile(
    r"((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)=)[^&\s\"'<>]+",
    re.IGNORECASE,
)
REDACTED = "REDACTED"
LOGGERS = ("httpx", "httpcore", "processors.amazon")


def redact_url(text: str) -> str:
    """``text`` with the secret query values of any presigned URL in it replaced."""
    return _SECRET_QUERY.sub(r"\1" + REDACTED, text)


class RedactPresignedUrls(logging.Filter):
    """Rewrites a record's message so that no presigned URL keeps its signature."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = RedactPresignedUrls()


def install_log_redaction() -> None:
    """Adds the filter to the loggers that can see request URLs (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
