"""Endpoint configuration and secret hygiene."""

from __future__ import annotations

import pytest

from processors.amazon import AmazonAccount, AmazonClient, AmazonEndpoints, ClientSettings, Secret
from processors.amazon.models.lwa import LwaToken
from processors.fake_amazon import FakeAmazonServer


def test_region_defaults_are_amazon_hosts() -> None:
    eu = AmazonEndpoints.for_region("EU", env={})
    assert eu.spapi == "https://sellingpartnerapi-eu.amazon.com"
    assert eu.ads_token_url == "https://api.amazon.co.uk/auth/o2/token"
    with pytest.raises(ValueError):
        AmazonEndpoints.for_region("XX", env={})


def test_env_vars_override_every_url() -> None:
    env = {
        "AMAZON_SPAPI_ENDPOINT": "http://127.0.0.1:1/",
        "AMAZON_LWA_TOKEN_URL": "http://127.0.0.1:2/auth/o2/token",
        "AMAZON_ADS_ENDPOINT": "http://127.0.0.1:3",
        "AMAZON_ADS_TOKEN_URL": "http://127.0.0.1:4/auth/o2/token",
    }
    endpoints = AmazonEndpoints.for_region("NA", env=env)
    assert endpoints == AmazonEndpoints(
        "http://127.0.0.1:1", env["AMAZON_LWA_TOKEN_URL"], "http://127.0.0.1:3", env["AMAZON_ADS_TOKEN_URL"]
    )


async def test_client_follows_env_vars(
    fake_server: FakeAmazonServer, account: AmazonAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, suffix in (
        ("AMAZON_SPAPI_ENDPOINT", ""),
        ("AMAZON_LWA_TOKEN_URL", "/auth/o2/token"),
        ("AMAZON_ADS_ENDPOINT", ""),
        ("AMAZON_ADS_TOKEN_URL", "/auth/o2/token"),
    ):
        monkeypatch.setenv(name, fake_server.url + suffix)
    async with AmazonClient(ClientSettings()) as amazon:
        assert await amazon.sp.get_marketplace_participations(account)
        assert await amazon.ads.list_profiles(account)


def test_secret_wrappers_hide_values() -> None:
    secret = Secret("Atzr|very-secret")
    assert "very-secret" not in repr(secret) and "very-secret" not in f"{secret}"
    token = LwaToken(access_token="Atza|also-secret", expires_in=3600)
    assert "also-secret" not in repr(token)


def test_webhook_retries_outlast_an_hour_long_receiver_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook options promise that a receiver down for a while still gets its events:
    with 8 attempts the retries spanned 254 s at most and never reached the 600 s cap, so a
    receiver down for 5 minutes lost them. Summed here with the jitter at its worst (each
    delay cut by the full 20 %)."""
    from typing import Any, cast

    from minique.backoff import retry_delay
    from minique.options import resolve
    from processors.queue_config import WEBHOOK_JOB_OPTIONS

    opts = resolve({}, WEBHOOK_JOB_OPTIONS)
    monkeypatch.setattr("minique.backoff.random.random", lambda: 0.999999)
    delays = [retry_delay(opts.stored.backoff, made, RuntimeError("503"), cast(Any, None), {})
              for made in range(1, opts.stored.attempts)]
    assert all(d is not None for d in delays)
    assert sum(d for d in delays if d is not None) >= 3600
    assert max(d for d in delays if d is not None) == 600.0
