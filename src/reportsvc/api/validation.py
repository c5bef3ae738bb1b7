"""Checks on what a client sends that its JSON schema alone cannot express."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

import msgspec
from msgspec import UnsetType

from reportsvc.api.bodies import undecodable
from reportsvc.api.errors import ApiError
from reportsvc.api.schemas import CreateReport
from reportsvc.domain import JobOptions
from reportsvc.settings import Settings

MAX_IDEMPOTENCY_KEY_LENGTH = 255
# A language by name: letters (any script), with spaces, hyphens or apostrophes between.
_LANGUAGE = re.compile(r"^[^\W\d_]+(?:[ '\-][^\W\d_]+)*$")


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


_STRICT: Final = msgspec.json.Decoder(CreateReport, strict=True)


def strict_request(body: bytes) -> CreateReport:
    """The request body decoded strictly: Litestar's own decoding is lax and would take
    "3" for 3; an API should say that a number was expected."""
    try:
        return _STRICT.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`", "")
        if " - at $." in message:
            what, _, where = message.rpartition(" - at $.")
            message = f"{where}: {what}"
        raise ApiError(400, "invalid_request", message) from None
    except (UnicodeError, RecursionError, msgspec.DecodeError) as exc:
        raise undecodable(exc) from None


def job_options(request: CreateReport, settings: Settings) -> tuple[str, JobOptions]:
    """The model and options a request asks for, with the defaults filled in; a 400 for
    anything the settings do not allow."""
    model = settings.openai_model
    if not isinstance(request.model, UnsetType):
        if request.model not in settings.allowed_models:
            allowed = ", ".join(settings.allowed_models)
            raise ApiError(
                400,
                "invalid_model",
                f"model {request.model!r} is not allowed here; choose one of: {allowed} "
                "(OPENAI_ALLOWED_MODELS)",
            )
        model = request.model
    sections = settings.default_sections
    if not isinstance(request.sections, UnsetType):
        if request.sections > settings.max_sections:
            raise ApiError(
                400,
                "invalid_sections",
                f"sections is {request.sections}; the limit is {settings.max_sections} "
                "(MAX_SECTIONS)",
            )
        sections = request.sections
    language = None
    if not isinstance(request.language, UnsetType):
        language = " ".join(request.language.split())
        if not _LANGUAGE.match(language):
            raise ApiError(
                400,
                "invalid_language",
                "language must be a language's name: letters, with spaces or hyphens",
            )
    detail = "standard" if isinstance(request.detail, UnsetType) else request.detail
    options = JobOptions(
        sections=sections, detail=detail, language=language, summary=settings.summary_pass
    )
    return model, options


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


MAX_CURSOR_LENGTH: Final = 200


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) a cursor stands for. Only what `encode_cursor` produces is
    accepted: the same bytes must come out when it is encoded again, so a crafted time
    (another time zone, a year PostgreSQL cannot hold) is a 400, never a database error."""
    invalid = ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, job_id = base64.urlsafe_b64decode(padded).decode().split("|")
        when, parsed_id = datetime.fromisoformat(created_at), UUID(job_id)
        # Cursors carry UTC (as PostgreSQL returns timestamptz); converting also refuses a
        # time that would leave the range of dates once moved to UTC.
        canonical = when.astimezone(UTC)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if when.utcoffset() != timedelta(0) or encode_cursor(canonical, parsed_id) != cursor:
        raise invalid
    return canonical, parsed_id
