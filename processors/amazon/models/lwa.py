"""Login with Amazon token endpoint replies."""

from __future__ import annotations

import msgspec


class LwaToken(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: int = 3600
    token_type: str = "bearer"

    def __repr__(self) -> str:
        return f"LwaToken(access_token='********', expires_in={self.expires_in})"


class LwaError(msgspec.Struct, frozen=True):
    error: str
    error_description: str = ""
