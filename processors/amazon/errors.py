"""How Amazon failures surface to jobs.

Classification happens on the HTTP status before any body is decoded:

* ``AmazonRateLimited``: 429, or our shared quota bucket is empty. ``delay`` (seconds)
  honours Retry-After (Ads) or the operation's refill time (SP-API sends none), and
  ``resume_token`` is the page token of the request that was refused, so a caller
  can resume exactly there.
* ``AmazonTransientError`` and subclasses: 5xx, timeouts, broken connections. Worth
  retrying with backoff. ``AmazonReportNotReady`` (a report still being generated) is one.
* ``AccountDisconnected``: 401/403 after one token refresh, or LWA ``invalid_grant``.
  Retrying cannot help.
* ``AmazonClientError``: any other 4xx, e.g. InvalidInput. Retrying cannot help either.
* ``AmazonDecodeError``: a 2xx body that does not match the documented shape. Never an empty result.

The client knows nothing of queues: ``processors.outcomes`` maps these to the job outcomes
(delayed, failed at once, retried). No message here ever contains a token or a client secret.
"""

from __future__ import annotations


class AmazonError(Exception):
    """Base class of every error this client raises on purpose."""


class AmazonTransientError(AmazonError):
    """Worth retrying later: the request may succeed unchanged."""


class AmazonServerError(AmazonTransientError):
    def __init__(self, operation: str, status: int, detail: str | None = None) -> None:
        super().__init__(f"{operation}: Amazon answered HTTP {status}" + (f" ({detail})" if detail else ""))
        self.operation = operation
        self.status = status


class AmazonTimeoutError(AmazonTransientError):
    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: timed out ({detail})")
        self.operation = operation


class AmazonConnectionError(AmazonTransientError):
    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: connection failed ({detail})")
        self.operation = operation


class AmazonReportNotReady(AmazonTransientError):
    """A report is still being generated; the caller keeps ``report_id`` and polls again
    in ``poll_after`` seconds."""

    def __init__(self, report_id: str, status: str, poll_after: float = 30.0) -> None:
        super().__init__(f"report {report_id} is {status}")
        self.report_id = report_id
        self.status = status
        self.poll_after = poll_after


class AmazonDecodeError(AmazonError):
    def __init__(self, operation: str, status: int, reason: str) -> None:
        super().__init__(f"{operation}: HTTP {status} body does not match the expected shape: {reason}")
        self.operation = operation
        self.status = status


class AmazonReportFailed(AmazonError):
    def __init__(self, report_id: str, status: str, reason: str | None) -> None:
        super().__init__(f"report {report_id} ended {status}: {reason or 'no reason given'}")
        self.report_id = report_id


class AmazonClientError(AmazonError):
    """A 4xx other than 401/403/429: the request itself is wrong."""

    def __init__(self, operation: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{operation}: HTTP {status} {code}: {message}")
        self.operation = operation
        self.status = status
        self.code = code
        self.amazon_message = message


class AccountDisconnected(AmazonError):
    def __init__(self, account_id: str, reason: str) -> None:
        super().__init__(f"account disconnected ({account_id}): {reason}")
        self.account_id = account_id


class AmazonRateLimited(AmazonError):
    """429 from Amazon, or the shared quota bucket is empty for longer than we wait inline.

    ``delay``: seconds until the operation's quota allows one more call.
    """

    def __init__(
        self, delay: float, *, operation: str, account_id: str, resume_token: str | None = None
    ) -> None:
        super().__init__(f"{operation} throttled for account {account_id} (again in {delay:.3f}s)")
        self.delay = delay
        self.operation = operation
        self.account_id = account_id
        self.resume_token = resume_token


class AmazonPaginationLoop(AmazonError):
    """Amazon answered a page with a ``nextToken`` this pass had already followed: following
    it would fetch the same pages for ever. Retried (a fresh pass starts the window over)."""

    def __init__(self, operation: str, pages: int) -> None:
        super().__init__(
            f"{operation}: Amazon sent a nextToken already followed after {pages} page(s) "
            "(a pagination loop); the pass was stopped and starts over on the retry"
        )
        self.operation = operation

