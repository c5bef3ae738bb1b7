"""Serving the API with uvicorn: the options it runs with, and a guard against clients
that send their request's headers slowly, or never finish them.

uvicorn's keep-alive timer is cancelled by any byte received, and nothing else bounds how
long a request's headers may take, so a client sending a byte every few seconds holds a
connection (and its memory) forever. `HeaderTimeoutProtocol` gives every request a
deadline for its headers, counted from when the connection opens or the previous response
ended; the body has its own bound in `SafeRequest`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reportsvc.settings import Settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_seconds, self._headers_too_slow
        )

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the API, from the settings."""
    protocol = type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_seconds": settings.request_header_timeout_seconds},
    )
    trusted = settings.forwarded_allow_ips.strip()
    return {
        "http": protocol,
        # X-Forwarded-For and -Proto are believed only from these proxies; by default from
        # none (uvicorn's own default trusts 127.0.0.1, so any local process could pose as
        # any client, and bypass a per-address rate limit).
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "log_config": None,
        "access_log": False,
        "server_header": False,
    }


def serve(app: Any, settings: Settings, *, host: str, port: int) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        timeout_graceful_shutdown=10,
        **server_options(settings),
    )
