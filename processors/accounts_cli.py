"""``python -m processors accounts ...``: seller accounts in the database.

    python -m processors accounts add --id acme-us --name "Acme US" --region NA \\
        --marketplace ATVPDKIKX0DER --seller-id A1B2C3 \\
        --lwa-client-id amzn1.application-oa2-client.x --acos-target 0.30 --low-stock-days 14
    python -m processors accounts list
    python -m processors accounts disable acme-us        # keeps its data; no schedules, no jobs
    python -m processors accounts enable acme-us
    python -m processors accounts rotate acme-us --refresh-token   # prompts, hidden
    python -m processors accounts remove acme-us [--purge] --yes

The database is $MINIQUE_AMAZON_DATABASE_URL (or --database-url). The LWA client secret, the
SP-API refresh token and the Amazon Ads refresh token come from --lwa-client-secret,
--refresh-token and --ads-refresh-token, or from the environment ($AMAZON_LWA_CLIENT_SECRET,
$AMAZON_REFRESH_TOKEN, $AMAZON_ADS_REFRESH_TOKEN), and are then stored; leave them out to keep
them out of the database and give each worker AMAZON_ACCOUNT_<ID>_LWA_CLIENT_SECRET,
..._REFRESH_TOKEN and ..._ADS_REFRESH_TOKEN instead. The Ads profiles are found with
listProfiles at the first sync (--ads-profile-id pins one instead).

Disabling, enabling and removing also update the account's job schedulers in Redis (--url,
--prefix); workers reconcile them at start as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from processors import schedules
from processors.accounts import (
    add_seller_account,
    list_accounts,
    remove_account,
    rotate_secrets,
    set_enabled,
)
from processors.cli_options import (
    database_option,
    not_found,
    opened_storage,
    prefix_option,
    redis_option,
    run_with_queues,
)
from processors.storage import Storage
from processors.sync_logic import secret_env_name

F = TypeVar("F", bound=Callable[..., object])


@click.group()
def accounts() -> None:
    """Seller accounts."""


@accounts.command("add")
@click.option("--id", "account_id", required=True, help="Our id for the account, e.g. acme-us.")
@click.option("--name", required=True)
@click.option("--region", required=True, type=click.Choice(["NA", "EU", "FE"], case_sensitive=False))
@click.option("--marketplace", "marketplaces", required=True, multiple=True,
              help="Marketplace id (repeatable), e.g. ATVPDKIKX0DER; each is reported on its own.")
@click.option("--seller-id", required=True, help="The selling partner (merchant) id.")
@click.option("--lwa-client-id", required=True)
@click.option("--lwa-client-secret", envvar="AMAZON_LWA_CLIENT_SECRET", default=None,
              help="Stored in the database (also $AMAZON_LWA_CLIENT_SECRET).")
@click.option("--refresh-token", envvar="AMAZON_REFRESH_TOKEN", default=None,
              help="The SP-API grant; stored in the database (also $AMAZON_REFRESH_TOKEN).")
@click.option("--ads-refresh-token", envvar="AMAZON_ADS_REFRESH_TOKEN", default=None,
              help="The Amazon Ads grant (advertising scope); stored (also $AMAZON_ADS_REFRESH_TOKEN).")
@click.option("--ads-profile-id", default=None,
              help="Pin one Ads profile (default: every profile listProfiles shows for the seller).")
@click.option("--acos-target", default=0.30, show_default=True, type=float,
              help="High-ACOS alert threshold, as a ratio.")
@click.option("--acos-window-days", default=7, show_default=True, type=click.IntRange(1, 365),
              help="ACOS alerts look at this many days.")
@click.option("--no-sales-min-spend", default="10.00", show_default=True,
              help="Spend with no attributed sales above this raises an alert.")
@click.option("--low-stock-days", default=14, show_default=True, type=click.IntRange(1, 365),
              help="Low-stock alert: days of cover below this.")
@click.option("--sales-window-days", default=14, show_default=True, type=click.IntRange(1, 365),
              help="Low-stock alert: the sales rate over this many days.")
@click.option("--webhook-url", default=None, help="Also send this account's alerts here.")
@database_option
def add(account_id: str, name: str, region: str, marketplaces: tuple[str, ...], seller_id: str,
        lwa_client_id: str, lwa_client_secret: str | None, refresh_token: str | None,
        ads_refresh_token: str | None, ads_profile_id: str | None, acos_target: float,
        acos_window_days: int, no_sales_min_spend: str, low_stock_days: int, sales_window_days: int,
        webhook_url: str | None, database_url: str | None) -> None:
    """Add (or update) a seller account."""
    with opened_storage(database_url) as storage:
        try:
            add_seller_account(
                storage, id=account_id, name=name, region=region, marketplace_ids=marketplaces,
                seller_id=seller_id, lwa_client_id=lwa_client_id, lwa_client_secret=lwa_client_secret,
                refresh_token=refresh_token, ads_refresh_token=ads_refresh_token,
                ads_profile_id=ads_profile_id, acos_target=acos_target, low_stock_days=low_stock_days,
                acos_window_days=acos_window_days, sales_window_days=sales_window_days,
                no_sales_min_spend=no_sales_min_spend, webhook_url=webhook_url)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    click.echo(f"account {account_id} saved")
    if not (lwa_client_secret and refresh_token):
        click.echo("secrets not stored: give the workers "
                   f"{secret_env_name(account_id, 'LWA_CLIENT_SECRET')} and "
                   f"{secret_env_name(account_id, 'REFRESH_TOKEN')}")
    if not (ads_refresh_token or ads_profile_id):
        click.echo("no Ads grant: give --ads-refresh-token (or "
                   f"{secret_env_name(account_id, 'ADS_REFRESH_TOKEN')}) to sync ad spend")


@accounts.command("list")
@database_option
def list_command(database_url: str | None) -> None:
    """List the accounts (never their secrets)."""
    with opened_storage(database_url) as storage:
        summaries = list_accounts(storage)
    if not summaries:
        click.echo("no accounts; add one with: python -m processors accounts add --help")
        return
    for s in summaries:
        click.echo(f"{s.id}\t{s.name}\t{s.region}\t{','.join(s.marketplace_ids)}\t"
                   f"{'enabled' if s.enabled else 'DISABLED'}\tads={s.ads}"
                   f"{'' if not s.ads_profile_id else ' (profile ' + s.ads_profile_id + ')'}\t"
                   f"acos_target={s.acos_target:g}\tlow_stock_days={s.low_stock_days}\t"
                   f"credentials={s.credentials}")


def _reconcile_schedules(storage: Storage, redis_url: str | None, prefix: str | None) -> None:
    """Brings the job schedulers in Redis in line with the accounts (best effort)."""
    try:
        applied = run_with_queues(redis_url, prefix, lambda: schedules.apply_for_connected_accounts(storage))
    except click.ClickException as exc:
        click.echo(f"schedules not updated ({exc.message}); workers update them when they start", err=True)
        return
    click.echo(f"schedules: {len(applied[next(iter(applied))])} account(s) scheduled")


def _switch(account_id: str, enabled: bool, database_url: str | None, redis_url: str | None,
            prefix: str | None) -> None:
    with opened_storage(database_url) as storage:
        try:
            set_enabled(storage, account_id, enabled)
        except KeyError as exc:
            raise not_found(exc) from None
        click.echo(f"account {account_id} {'enabled' if enabled else 'disabled'}")
        _reconcile_schedules(storage, redis_url, prefix)


@accounts.command("disable")
@click.argument("account_id")
@database_option
@redis_option
@prefix_option
def disable(account_id: str, database_url: str | None, redis_url: str | None, prefix: str | None) -> None:
    """Stop syncing an account (its data stays; its jobs fail at once until enabled)."""
    _switch(account_id, False, database_url, redis_url, prefix)


@accounts.command("enable")
@click.argument("account_id")
@database_option
@redis_option
@prefix_option
def enable(account_id: str, database_url: str | None, redis_url: str | None, prefix: str | None) -> None:
    """Sync a disabled account again."""
    _switch(account_id, True, database_url, redis_url, prefix)


def _secret_option(flag: str, what: str) -> Callable[[F], F]:
    # No environment variable here: a variable left set from `add` would rotate silently.
    return click.option(flag, default=None, is_flag=False, flag_value="-",
                        help=f"New {what}; given without a value, it is asked for (hidden).")


@accounts.command("rotate")
@click.argument("account_id")
@_secret_option("--lwa-client-secret", "LWA client secret")
@_secret_option("--refresh-token", "SP-API refresh token")
@_secret_option("--ads-refresh-token", "Amazon Ads refresh token")
@database_option
def rotate(account_id: str, lwa_client_secret: str | None, refresh_token: str | None,
           ads_refresh_token: str | None, database_url: str | None) -> None:
    """Replace stored secrets (workers use them from their next job on)."""
    given = {"lwa_client_secret": lwa_client_secret, "refresh_token": refresh_token,
             "ads_refresh_token": ads_refresh_token}
    for name, value in given.items():
        if value == "-":
            given[name] = click.prompt(f"new {name.replace('_', ' ')}", hide_input=True)
    with opened_storage(database_url) as storage:
        try:
            replaced = rotate_secrets(storage, account_id, **given)
        except KeyError as exc:
            raise not_found(exc) from None
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    click.echo(f"account {account_id}: replaced {', '.join(replaced)}")


@accounts.command("remove")
@click.argument("account_id")
@click.option("--purge", is_flag=True, help="Also delete every row synced or built for the account.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@database_option
@redis_option
@prefix_option
def remove(account_id: str, purge: bool, yes: bool, database_url: str | None, redis_url: str | None,
           prefix: str | None) -> None:
    """Remove an account (and its schedules; with --purge, its data too)."""
    if not yes:
        click.confirm(f"remove account {account_id}{' and all its data' if purge else ''}?", abort=True)
    with opened_storage(database_url) as storage:
        try:
            remove_account(storage, account_id, purge=purge)
        except KeyError as exc:
            raise not_found(exc) from None
        click.echo(f"account {account_id} removed{' with its data' if purge else ''}")
        _reconcile_schedules(storage, redis_url, prefix)
