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
