"""Signing per Standard Webhooks, with its reference library: `webhook-id`,
`webhook-timestamp` (the attempt's time, in seconds) and `webhook-signature`, a `v1,`
HMAC-SHA256 of `id.timestamp.body` for each configured secret, space-separated, so a
receiver can move to a new secret while the old one still verifies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from math import floor

from standardwebhooks import Webhook


class Signer:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed to sign deliveries")
        self._keys = [Webhook(secret) for secret in secrets]

    def headers(self, message_id: str, body: str, now: datetime) -> dict[str, str]:
        """The three headers for one attempt to send `body` (exactly these characters)."""
        # The library reads the time as UTC whatever its zone says: give it UTC.
        now = now.astimezone(UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(floor(now.timestamp())),
            "webhook-signature": " ".join(key.sign(message_id, now, body) for key in self._keys),
        }
