"""What the client needs to know about one seller account."""

from __future__ import annotations

from dataclasses import dataclass

from processors.amazon.secret import Secret


@dataclass(frozen=True)
class AmazonAccount:
    id: str
    region: str
    marketplace_ids: tuple[str, ...]
    seller_id: str
    lwa_client_id: str
    lwa_client_secret: Secret
    refresh_token: Secret
    ads_profile_id: str | None = None

    @property
    def marketplace_id(self) -> str:
        return self.marketplace_ids[0]
