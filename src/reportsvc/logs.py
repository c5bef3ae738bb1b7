"""Structured logs: one JSON object per line in production, readable lines in a terminal.

Secrets never reach a log line: settings are never logged whole, the API key is a
SecretStr, database URLs are logged only through `redact_database_url`, tracebacks are
plain in every format (a rich traceback would print every frame's locals: a request's
headers among them), and a last processor masks anything that still looks like a
credential (`Bearer ...`, an `authorization` field).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, Literal

import structlog

_BEARER: Final = re.compile(r"(?i)\b(bearer)\s+[^\s'\",]+")
_SECRET_KEYS: Final = frozenset({"authorization", "token", "api_key", "password", "secret"})


def redact(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask credentials that reached a log line anyway."""
    for key, value in event.items():
        if key.lower() in _SECRET_KEYS and value:
            event[key] = "***"
        elif isinstance(value, str) and "earer" in value:
            event[key] = _BEARER.sub(r"\1 ***", value)
    return event


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    shared.append(redact)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request access lines and the SDK's per-call debug lines are noise at INFO.
    for noisy in ("uvicorn.access", "httpx", "httpx2", "openai", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
