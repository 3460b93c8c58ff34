"""Seller accounts: the documented CLI command and the Python function."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from processors.accounts import add_seller_account, list_accounts
from processors.cli import main
from processors.settings import AppSettings
from processors.storage import Storage

US = "ATVPDKIKX0DER"
OPTIONS = {"--id": "acme-us", "--name": "Acme US", "--region": "NA", "--marketplace": "ATVPDKIKX0DER",
           "--seller-id": "A1SELLER", "--lwa-client-id": "amzn1.client", "--ads-profile-id": "123",
           "--acos-target": "0.25", "--low-stock-days": "10"}


def add_args(db: str, **overrides: str) -> list[str]:
    options = {**OPTIONS, **{"--" + k.replace("_", "-"): v for k, v in overrides.items()}}
    return ["accounts", "add", *(x for pair in options.items() for x in pair), "--database-url", db]


def test_cli_adds_and_lists_accounts_without_showing_secrets(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    runner = CliRunner()
    added = runner.invoke(main, add_args(db),
                          env={"AMAZON_LWA_CLIENT_SECRET": "s3cret", "AMAZON_REFRESH_TOKEN": "Atzr|tok"})
    assert added.exit_code == 0, added.output
    env_only = runner.invoke(main, add_args(db, id="acme-eu", region="EU"),
                             env={"AMAZON_LWA_CLIENT_SECRET": "", "AMAZON_REFRESH_TOKEN": ""})
    assert env_only.exit_code == 0, env_only.output
    assert "AMAZON_ACCOUNT_ACME_EU_REFRESH_TOKEN" in env_only.output
    listed = runner.invoke(main, ["accounts", "list", "--database-url", db])
    assert listed.exit_code == 0
    assert "acme-us" in listed.output and "credentials=stored" in listed.output
    assert "acme-eu" in listed.output and "credentials=missing" in listed.output
    assert "s3cret" not in listed.output and "Atzr|tok" not in listed.output
    storage = Storage.from_url(db)
    try:
        record = storage.get_account("acme-us")
        assert (record.acos_target, record.low_stock_days, record.ads_profile_id) == (0.25, 10, "123")
        assert record.refresh_token == "Atzr|tok"
    finally:
        storage.dispose()


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    bad_region = CliRunner().invoke(main, add_args(db, region="XX"))
    assert bad_region.exit_code != 0 and "XX" in bad_region.output
    bad_acos = CliRunner().invoke(main, add_args(db, acos_target="30"))
    assert bad_acos.exit_code != 0 and "acos_target" in bad_acos.output


def test_python_function_and_env_secrets(tmp_path: Path) -> None:
    storage = Storage.from_url(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        add_seller_account(storage, id="acme-us", name="Acme", region="na", marketplace_ids=[US],
                           seller_id="S", lwa_client_id="c")
        with pytest.raises(ValueError, match="account id"):
            add_seller_account(storage, id="has space", name="x", region="NA", marketplace_ids=[US],
                               seller_id="S", lwa_client_id="c")
        with pytest.raises(ValueError, match="unknown marketplace id 'M'"):
            add_seller_account(storage, id="x", name="x", region="NA", marketplace_ids=["M"],
                               seller_id="S", lwa_client_id="c")
        assert [s.credentials.split()[0] for s in list_accounts(storage, env={})] == ["missing"]
        env = {"AMAZON_ACCOUNT_ACME_US_LWA_CLIENT_SECRET": "s", "AMAZON_ACCOUNT_ACME_US_REFRESH_TOKEN": "r"}
        summary = list_accounts(storage, env=env)[0]
        assert (summary.region, summary.credentials) == ("NA", "environment")
    finally:
        storage.dispose()


@pytest.mark.parametrize("url", ["hooks.example/x", "ftp://hooks.example/x", "http://",
                                 "http://[::1/x"])
def test_a_webhook_url_that_cannot_be_posted_to_is_refused_where_it_is_given(
        tmp_path: Path, url: str) -> None:
    """A typo in an account's webhook URL (or in MINIQUE_WEBHOOK_URLS) used to be stored, and
    every alert webhook to it then failed; refused at the door, naming the field."""
    db = f"sqlite:///{tmp_path / 'a.db'}"
    refused = CliRunner().invoke(main, add_args(db, webhook_url=url))
    assert refused.exit_code != 0 and "webhook_url" in refused.output
    storage = Storage.from_url(db)
    try:
        with pytest.raises(ValueError, match="webhook_url"):
            add_seller_account(storage, id="x", name="x", region="NA", marketplace_ids=[US],
                               seller_id="S", lwa_client_id="c", webhook_url=url)
        with pytest.raises(KeyError):
            storage.get_account("x")
    finally:
        storage.dispose()
    with pytest.raises(ValueError, match="MINIQUE_WEBHOOK_URLS"):
        AppSettings.from_env({"MINIQUE_WEBHOOK_URLS": f"https://ok.example/h,{url}"})
    assert AppSettings.from_env({"MINIQUE_WEBHOOK_URLS": "https://u:p@ok.example/h?t=1"}).webhook_urls
