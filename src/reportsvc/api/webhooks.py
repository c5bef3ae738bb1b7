"""`webhookUrl` in POST /reports: checked before the job is created, so a URL the workers
would refuse to call is a 400 now rather than a failed delivery later."""

from __future__ import annotations

import asyncio
from typing import Final

from reportsvc.api.errors import ApiError
from reportsvc.settings import Settings
from reportsvc.webhooks.addresses import (
    AddressRefusedError,
    Resolve,
    check_host,
    parse_webhook_url,
    resolve,
)

# How long the host's name may take to resolve before the request is refused.
RESOLVE_SECONDS: Final = 5.0


async def check_webhook_url(raw: str, settings: Settings, resolver: Resolve = resolve) -> str:
    """The URL to store; a 400 when this service cannot or may not deliver to it."""
    if not settings.webhook_secret:
        raise ApiError(
            400,
            "webhooks_disabled",
            "webhookUrl cannot be used here: the service has no WEBHOOK_SECRET to sign "
            "deliveries with",
        )
    try:
        url = parse_webhook_url(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_webhook_url", f"webhookUrl {exc}") from None
    if settings.webhook_allow_private_networks:
        return url.url
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            await check_host(url.host, url.port, resolver)
    except AddressRefusedError:
        # Which address, and which kind, stays out of the answer: it would tell a caller
        # about the service's internal network.
        raise ApiError(
            400,
            "invalid_webhook_url",
            "webhookUrl must reach a public address: its host resolves to a loopback, "
            "private, link-local or cloud-metadata address",
        ) from None
    except (OSError, TimeoutError):
        raise ApiError(
            400, "invalid_webhook_url", f"webhookUrl's host {url.host!r} cannot be resolved"
        ) from None
    return url.url
