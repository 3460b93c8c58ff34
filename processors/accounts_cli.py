"""``python -m processors accounts add|list``: seller accounts in the database.

    python -m processors accounts add --id acme-us --name "Acme US" --region NA \\
        --marketplace ATVPDKIKX0DER --seller-id A1B2C3 \\
        --lwa-client-id amzn1.application-oa2-client.x --ads-profile-id 123 \\
        --acos-target 0.30 --low-stock-days 14
    python -m processors accounts list

The database is $MINIQUE_AMAZON_DATABASE_URL (or --database-url). The LWA client secret and
refresh token come from --lwa-client-secret / --refresh-token, or from the environment
($AMAZON_LWA_CLIENT_SECRET / $AMAZON_REFRESH_TOKEN), and are then stored; leave them out to
keep them out of the database and give each worker AMAZON_ACCOUNT_<ID>_LWA_CLIENT_SECRET and
AMAZON_ACCOUNT_<ID>_REFRESH_TOKEN instead.
"""

from __future__ import annotations

import click

from processors.accounts import add_seller_account, list_accounts
from processors.storage import ENV_DATABASE_URL, Storage, database_url
from processors.sync_logic import secret_env_name

database_option = click.option(
    "--database-url", envvar=ENV_DATABASE_URL, default=None,
    help=f"SQLAlchemy URL (also ${ENV_DATABASE_URL}; default sqlite:///minique-amazon.db).")


def _storage(url: str | None) -> Storage:
    return Storage.from_url(url or database_url())


@click.group()
def main() -> None:
    """The Amazon seller jobs: accounts (run workers with `minique worker processors.jobs:registry`)."""


@main.group()
def accounts() -> None:
    """Seller accounts."""


@accounts.command("add")
@click.option("--id", "account_id", required=True, help="Our id for the account, e.g. acme-us.")
@click.option("--name", required=True)
@click.option("--region", required=True, type=click.Choice(["NA", "EU", "FE"], case_sensitive=False))
@click.option("--marketplace", "marketplaces", required=True, multiple=True,
              help="Marketplace id (repeatable), e.g. ATVPDKIKX0DER.")
@click.option("--seller-id", required=True, help="The selling partner (merchant) id.")
@click.option("--lwa-client-id", required=True)
@click.option("--lwa-client-secret", envvar="AMAZON_LWA_CLIENT_SECRET", default=None,
              help="Stored in the database (also $AMAZON_LWA_CLIENT_SECRET).")
@click.option("--refresh-token", envvar="AMAZON_REFRESH_TOKEN", default=None,
              help="Stored in the database (also $AMAZON_REFRESH_TOKEN).")
@click.option("--ads-profile-id", default=None, help="Amazon Ads profile id (PPC sync).")
@click.option("--acos-target", default=0.30, show_default=True, type=float,
              help="High-ACOS alert threshold, as a ratio.")
@click.option("--low-stock-days", default=14, show_default=True, type=int,
              help="Low-stock alert: days of cover below this.")
@click.option("--webhook-url", default=None, help="Also send this account's alerts here.")
@database_option
def add(account_id: str, name: str, region: str, marketplaces: tuple[str, ...], seller_id: str,
        lwa_client_id: str, lwa_client_secret: str | None, refresh_token: str | None,
        ads_profile_id: str | None, acos_target: float, low_stock_days: int,
        webhook_url: str | None, database_url: str | None) -> None:
    """Add (or update) a seller account."""
    storage = _storage(database_url)
    try:
        add_seller_account(
            storage, id=account_id, name=name, region=region, marketplace_ids=marketplaces,
            seller_id=seller_id, lwa_client_id=lwa_client_id, lwa_client_secret=lwa_client_secret,
            refresh_token=refresh_token, ads_profile_id=ads_profile_id, acos_target=acos_target,
            low_stock_days=low_stock_days, webhook_url=webhook_url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        storage.dispose()
    click.echo(f"account {account_id} saved")
    if not (lwa_client_secret and refresh_token):
        click.echo("secrets not stored: give the workers "
                   f"{secret_env_name(account_id, 'LWA_CLIENT_SECRET')} and "
                   f"{secret_env_name(account_id, 'REFRESH_TOKEN')}")


@accounts.command("list")
@database_option
def list_command(database_url: str | None) -> None:
    """List the accounts (never their secrets)."""
    storage = _storage(database_url)
    try:
        summaries = list_accounts(storage)
    finally:
        storage.dispose()
    if not summaries:
        click.echo("no accounts; add one with: python -m processors accounts add --help")
        return
    for s in summaries:
        click.echo(f"{s.id}\t{s.name}\t{s.region}\t{','.join(s.marketplace_ids)}\t"
                   f"ads={s.ads_profile_id or '-'}\tacos_target={s.acos_target:g}\t"
                   f"low_stock_days={s.low_stock_days}\tcredentials={s.credentials}")
