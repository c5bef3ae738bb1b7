"""Checks on what a client sends that its JSON schema alone cannot express."""

from __future__ import annotations

import base64
import binascii
import unicodedata
from datetime import datetime
from uuid import UUID

from reportsvc.api.errors import ApiError

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def clean_topic(raw: str, max_length: int) -> str:
    """The topic with its whitespace collapsed; a 400 if it is blank, too long or binary."""
    topic = " ".join(raw.split())
    if not topic:
        raise ApiError(400, "invalid_topic", "topic must not be empty or blank")
    if len(topic) > max_length:
        raise ApiError(
            400,
            "invalid_topic",
            f"topic is {len(topic)} characters long; the limit is {max_length} (MAX_TOPIC_LENGTH)",
        )
    if not topic.isprintable() and any(
        unicodedata.category(char) in ("Cc", "Cs") for char in topic
    ):
        raise ApiError(400, "invalid_topic", "topic must not contain control characters")
    return topic


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and key.isprintable()):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
        )


def parse_job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(404, "job_not_found", f"no job with id {raw!r}") from None


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    invalid = ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, job_id = base64.urlsafe_b64decode(padded).decode().split("|")
        when, parsed_id = datetime.fromisoformat(created_at), UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if when.tzinfo is None:  # every cursor we hand out carries a time zone
        raise invalid
    return when, parsed_id
