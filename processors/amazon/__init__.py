"""Async Amazon SP-API + Ads client (httpx + msgspec) for the seller jobs."""

from processors.amazon.account import AmazonAccount
from processors.amazon.client import AmazonClient
from processors.amazon.config import AmazonEndpoints, ClientSettings
from processors.amazon.errors import (
    AccountDisconnected,
    AmazonClientError,
    AmazonConnectionError,
    AmazonDecodeError,
    AmazonError,
    AmazonRateLimited,
    AmazonReportFailed,
    AmazonReportNotReady,
    AmazonServerError,
    AmazonTimeoutError,
    AmazonTransientError,
)
from processors.amazon.quota import RedisQuota
from processors.amazon.secret import Secret

__all__ = [
    "AccountDisconnected",
    "AmazonAccount",
    "AmazonClient",
    "AmazonClientError",
    "AmazonConnectionError",
    "AmazonDecodeError",
    "AmazonEndpoints",
    "AmazonError",
    "AmazonRateLimited",
    "AmazonReportFailed",
    "AmazonReportNotReady",
    "AmazonServerError",
    "AmazonTimeoutError",
    "AmazonTransientError",
    "ClientSettings",
    "RedisQuota",
    "Secret",
]
