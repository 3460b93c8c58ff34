"""Base URLs and timeouts. Every URL can be overridden from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

ENV_SPAPI_ENDPOINT = "AMAZON_SPAPI_ENDPOINT"
ENV_LWA_TOKEN_URL = "AMAZON_LWA_TOKEN_URL"
ENV_ADS_ENDPOINT = "AMAZON_ADS_ENDPOINT"
ENV_ADS_TOKEN_URL = "AMAZON_ADS_TOKEN_URL"

# SP-API uses one LWA host everywhere; the Ads API documents a host per region.
_REGIONS: dict[str, tuple[str, str, str, str]] = {
    "NA": (
        "https://sellingpartnerapi-na.amazon.com",
        "https://api.amazon.com/auth/o2/token",
        "https://advertising-api.amazon.com",
        "https://api.amazon.com/auth/o2/token",
    ),
    "EU": (
        "https://sellingpartnerapi-eu.amazon.com",
        "https://api.amazon.com/auth/o2/token",
        "https://advertising-api-eu.amazon.com",
        "https://api.amazon.co.uk/auth/o2/token",
    ),
    "FE": (
        "https://sellingpartnerapi-fe.amazon.com",
        "https://api.amazon.com/auth/o2/token",
        "https://advertising-api-fe.amazon.com",
        "https://api.amazon.co.jp/auth/o2/token",
    ),
}


@dataclass(frozen=True)
class AmazonEndpoints:
    spapi: str
    lwa_token_url: str
    ads: str
    ads_token_url: str

    @classmethod
    def for_region(cls, region: str, env: Mapping[str, str] | None = None) -> AmazonEndpoints:
        environ = os.environ if env is None else env
        try:
            spapi, lwa, ads, ads_lwa = _REGIONS[region.upper()]
        except KeyError:
            raise ValueError(
                f"unknown Amazon region {region!r}; expected one of {sorted(_REGIONS)}"
            ) from None
        return cls(
            spapi=environ.get(ENV_SPAPI_ENDPOINT, spapi).rstrip("/"),
            lwa_token_url=environ.get(ENV_LWA_TOKEN_URL, lwa),
            ads=environ.get(ENV_ADS_ENDPOINT, ads).rstrip("/"),
            ads_token_url=environ.get(ENV_ADS_TOKEN_URL, ads_lwa),
        )

    @classmethod
    def single_host(cls, base_url: str) -> AmazonEndpoints:
        """Every service on one host, as the fake serves them."""
        base = base_url.rstrip("/")
        return cls(base, base + "/auth/o2/token", base, base + "/auth/o2/token")


@dataclass(frozen=True)
class ClientSettings:
    """``endpoints`` None means: per account region, with env overrides."""

    endpoints: AmazonEndpoints | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=5.0, pool=5.0))
    download_timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(120.0, connect=5.0))
    # Whole-exchange deadlines (seconds): httpx's read timeout is per read, so a body that
    # trickles in never trips it.
    request_deadline: float = 90.0
    download_deadline: float = 600.0
    # The most a report document may come to, gunzipped (bytes).
    document_max_bytes: int = 512 * 1024 * 1024
    token_refresh_margin: float = 60.0
    # Waiting this long for the shared bucket is cheaper than a re-enqueue; beyond it we raise.
    max_inline_quota_wait: float = 2.0
    user_agent: str = "minique-processors/0.1 (Language=Python)"
    # Multiplies every usage plan's rate (e.g. a seller whose x-amzn-RateLimit-Limit is higher,
    # or a test against a fake whose quotas are scaled the same way).
    quota_scale: float = 1.0

    def endpoints_for(self, region: str) -> AmazonEndpoints:
        return self.endpoints or AmazonEndpoints.for_region(region)
