"""What the client needs to know about one seller account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from processors.amazon.secret import Secret

# Each API takes a token from its own Login with Amazon grant: the SP-API's, or the Amazon
# Ads one (advertising scope), which a seller authorises separately.
Grant = Literal["sp", "ads"]


@dataclass(frozen=True)
class AmazonAccount:
    id: str
    region: str
    marketplace_ids: tuple[str, ...]
    seller_id: str
    lwa_client_id: str
    lwa_client_secret: Secret
    refresh_token: Secret
    # None: the SP-API refresh token is used for Ads too (an app whose one grant has both scopes).
    ads_refresh_token: Secret | None = None
    # Pins one Ads profile; None: every profile ``listProfiles`` shows for this seller.
    ads_profile_id: str | None = None

    @property
    def marketplace_id(self) -> str:
        return self.marketplace_ids[0]

    def refresh_token_for(self, grant: Grant) -> Secret:
        if grant == "ads" and self.ads_refresh_token:
            return self.ads_refresh_token
        return self.refresh_token
