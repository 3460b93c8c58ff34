"""Which data sets a marketplace's day was built on, and which were not synced through it.

A data set is complete for a day when its stream's watermark (synced up to that instant) is
at or past the end of the day in the marketplace's time zone:

* ``orders`` (searchOrders) and ``finances`` (listTransactions: fees, refunds, service fees);
* with an Ads grant: ``ads-profiles`` (listProfiles has run), then one per report type of the
  marketplace's profile, ``spCampaigns``, ``sbCampaigns``, ``sdCampaigns`` and
  ``spAdvertisedProduct``, except for days older than Amazon keeps that report type.

Finances may still restate the last 48 h afterwards (Amazon's lag); each sync re-reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from processors.amazon.models.ads import REPORT_SPECS
from processors.storage.records import SyncState
from processors.storage.store import day_start
from processors.sync_logic.scopes import MarketplaceScope
from processors.sync_logic.sync_ads import PROFILES_STREAM, ads_stream


def missing_data(
    states: Mapping[str, SyncState], scope: MarketplaceScope, day: date, today: date, *, ads: bool
) -> list[str]:
    """The data sets not synced through the end of ``day`` (empty: the day is complete)."""
    end = day_start(day + timedelta(days=1), scope.zone)

    def short(stream: str) -> bool:
        state = states.get(stream)
        return state is None or state.watermark is None or state.watermark < end

    missing = [label for label, stream in (("orders", "orders"), ("finances", "transactions"))
               if short(stream)]
    if ads:
        if states.get(PROFILES_STREAM) is None or states[PROFILES_STREAM].watermark is None:
            missing.append("ads-profiles")
        for spec in REPORT_SPECS:
            if (today - day).days >= spec.retention_days:
                continue  # Amazon keeps none of it any more: nothing to wait for.
            if any(short(ads_stream(spec, profile)) for profile in scope.profile_ids):
                missing.append(spec.report_type_id)
    return missing
