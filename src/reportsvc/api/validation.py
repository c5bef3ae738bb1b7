"""Checks on what a client sends, and the patterns the OpenAPI document states them with.

The patterns are built here from Python's own character tables and used twice: the
handler matches input against them, and `api/docs.py` puts them in the document. So a
request the document calls valid is one the handler accepts, and the reverse.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar
from uuid import UUID

import msgspec
from msgspec import UnsetType

from reportsvc.api.bodies import undecodable
from reportsvc.api.errors import ApiError
from reportsvc.api.schemas import CreateReport, ReviewOutline, RewriteSection
from reportsvc.domain import JobOptions
from reportsvc.settings import Settings

MAX_IDEMPOTENCY_KEY_LENGTH = 255
T = TypeVar("T")


def char_class(codepoints: Iterable[int]) -> str:
    """The inside of a regular-expression character class holding exactly `codepoints`
    (all in the Basic Multilingual Plane), as ranges that ECMA-262 (JSON Schema), Python
    and Rust read alike: letters and digits of ASCII as themselves, the rest escaped."""

    def spell(codepoint: int) -> str:
        char = chr(codepoint)
        if char.isascii() and char.isalnum():
            return char
        return f"\\x{codepoint:02x}" if codepoint < 0x100 else f"\\u{codepoint:04x}"

    parts: list[str] = []
    ordered = sorted(codepoints)
    start = 0
    for i, codepoint in enumerate(ordered):
        if i + 1 < len(ordered) and ordered[i + 1] == codepoint + 1:
            continue
        first = ordered[start]
        parts.append(spell(first) if first == codepoint else f"{spell(first)}-{spell(codepoint)}")
        start = i + 1
    return "".join(parts)


_BMP: Final = range(0x10000)
# What str.split() collapses, and the control characters it does not (every Cc is in the BMP).
_WHITESPACE: Final = char_class(c for c in _BMP if chr(c).isspace())
_CONTROL: Final = char_class(
    c for c in _BMP if unicodedata.category(chr(c)) == "Cc" and not chr(c).isspace()
)
# Every control character, line breaks and tabs included.
_ANY_CONTROL: Final = char_class(c for c in _BMP if unicodedata.category(chr(c)) == "Cc")
_LETTER: Final = char_class(c for c in _BMP if chr(c).isalpha())

# A topic: no control characters other than whitespace, and something besides whitespace.
TOPIC_PATTERN: Final = f"^[^{_CONTROL}]*[^{_CONTROL}{_WHITESPACE}][^{_CONTROL}]*$"
# A language by name: letters (any script), with single spaces, hyphens or apostrophes between.
LANGUAGE_PATTERN: Final = f"^[{_LETTER}]+(?:[\\x20'\\-][{_LETTER}]+)*$"
# A source document's title or text: something besides whitespace, and no NUL (which
# PostgreSQL's text cannot hold).
DOCUMENT_PATTERN: Final = f"^[^\\x00]*[^\\x00{_WHITESPACE}][^\\x00]*$"
# An outline title: no control characters at all (a title is one line), and something
# besides whitespace.
TITLE_PATTERN: Final = f"^[^{_ANY_CONTROL}]*[^{_ANY_CONTROL}{_WHITESPACE}][^{_ANY_CONTROL}]*$"
# Visible ASCII, with spaces only inside (HTTP drops them at either end of a header value).
IDEMPOTENCY_KEY_PATTERN: Final = "^[!-~](?:[\\x20-~]*[!-~])?$"
# Microseconds since 1970 and a job id: every value of this shape is a cursor.
CURSOR_PATTERN: Final = "^[0-9]{1,17}_[0-9a-f]{32}$"

_CONTROL_CHAR: Final = re.compile(f"[{_CONTROL}]")
_LANGUAGE: Final = re.compile(LANGUAGE_PATTERN)
_TITLE: Final = re.compile(TITLE_PATTERN)
_IDEMPOTENCY_KEY: Final = re.compile(IDEMPOTENCY_KEY_PATTERN)
_CURSOR: Final = re.compile(CURSOR_PATTERN)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def clean_topic(raw: str, max_length: int) -> str:
    """The topic with its whitespace collapsed; a 400 if it is too long, binary or blank
    (exactly what `TOPIC_PATTERN` and the document's maxLength say)."""
    if len(raw) > max_length:
        raise ApiError(
            400,
            "invalid_topic",
            f"topic is {len(raw)} characters long; the limit is {max_length} (MAX_TOPIC_LENGTH)",
        )
    if _CONTROL_CHAR.search(raw):
        raise ApiError(400, "invalid_topic", "topic must not contain control characters")
    topic = " ".join(raw.split())
    if not topic:
        raise ApiError(400, "invalid_topic", "topic must not be empty or blank")
    return topic


_STRICT: Final = msgspec.json.Decoder(CreateReport, strict=True)
_STRICT_REVIEW: Final = msgspec.json.Decoder(ReviewOutline, strict=True)
_STRICT_REWRITE: Final = msgspec.json.Decoder(RewriteSection, strict=True)


def strict_request(body: bytes) -> CreateReport:
    """The request body decoded strictly: Litestar's own decoding is lax and would take
    "3" for 3; an API should say that a number was expected."""
    return _decode(_STRICT, body)


def strict_review(body: bytes) -> ReviewOutline:
    return _decode(_STRICT_REVIEW, body)


def strict_rewrite(body: bytes) -> RewriteSection:
    """An empty body (or JSON null) is a rewrite without an instruction."""
    if body.strip() in (b"", b"null"):
        return RewriteSection()
    return _decode(_STRICT_REWRITE, body)


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`", "")
        if " - at $." in message:
            what, _, where = message.rpartition(" - at $.")
            message = f"{where}: {what}"
        raise ApiError(400, "invalid_request", message) from None
    except (UnicodeError, RecursionError, msgspec.DecodeError) as exc:
        raise undecodable(exc) from None


def job_options(
    request: CreateReport, settings: Settings
) -> tuple[str, JobOptions, list[str] | None]:
    """The model, options and client's outline (if any) a request asks for, with the
    defaults filled in; a 400 for anything the settings do not allow."""
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
        if request.sections != int(request.sections):
            raise ApiError(400, "invalid_sections", "sections must be a whole number")
        sections = int(request.sections)
        if sections > settings.max_sections:
            raise ApiError(
                400,
                "invalid_sections",
                f"sections is {sections}; the limit is {settings.max_sections} (MAX_SECTIONS)",
            )
    language = None
    if not isinstance(request.language, UnsetType):
        language = request.language
        if not _LANGUAGE.fullmatch(language):
            raise ApiError(
                400,
                "invalid_language",
                "language must be a language's name: letters, with spaces or hyphens",
            )
    detail = "standard" if isinstance(request.detail, UnsetType) else request.detail
    review = request.review_outline is True
    # A client's outline: its length is the number of sections (`sections` is not used).
    outline = None
    if not isinstance(request.outline, UnsetType):
        outline = clean_outline(request.outline, settings)
        sections = len(outline)
    options = JobOptions(
        sections=sections,
        detail=detail,
        language=language,
        summary=settings.summary_pass,
        review_outline=review,
        outline_given=outline is not None,
    )
    return model, options, outline


def clean_outline(titles: list[str], settings: Settings) -> list[str]:
    """A client's outline, checked as the model's is made to be, and exactly what
    `outline_schema` in api/docs.py documents: 1 to MAX_SECTIONS titles, each at most
    MAX_TITLE_LENGTH characters, not blank, no control characters (a title is one line),
    and all different. A 400 naming the title otherwise. The titles are kept exactly as
    sent: the model's are numbered by the service, a client's are the client's."""
    if not titles:
        raise ApiError(400, "invalid_outline", "outline must have at least one title")
    if len(titles) > settings.max_sections:
        raise ApiError(
            400,
            "invalid_outline",
            f"outline has {len(titles)} titles; the limit is {settings.max_sections} "
            "(MAX_SECTIONS)",
        )
    seen: dict[str, int] = {}
    for i, title in enumerate(titles):
        if len(title) > settings.max_title_length:
            raise ApiError(
                400,
                "invalid_outline",
                f"outline[{i}] is {len(title)} characters long; the limit is "
                f"{settings.max_title_length} (MAX_TITLE_LENGTH)",
            )
        if not _TITLE.fullmatch(title):
            problem = (
                "must not be empty or blank"
                if not title.strip()
                else ("must not contain control characters or line breaks")
            )
            raise ApiError(400, "invalid_outline", f"outline[{i}] {problem}")
        if title in seen:
            raise ApiError(
                400,
                "invalid_outline",
                f"outline[{i}] repeats outline[{seen[title]}]: titles must be distinct",
            )
        seen[title] = i
    return list(titles)


def clean_instruction(request: RewriteSection, settings: Settings) -> str | None:
    """A rewrite's instruction with its whitespace collapsed; None when there is none."""
    if isinstance(request.instruction, UnsetType):
        return None
    raw = request.instruction
    if len(raw) > settings.max_instruction_length:
        raise ApiError(
            400,
            "invalid_instruction",
            f"instruction is {len(raw)} characters long; the limit is "
            f"{settings.max_instruction_length} (MAX_INSTRUCTION_LENGTH)",
        )
    if _CONTROL_CHAR.search(raw):
        raise ApiError(
            400, "invalid_instruction", "instruction must not contain control characters"
        )
    instruction = " ".join(raw.split())
    if not instruction:
        raise ApiError(400, "invalid_instruction", "instruction must not be empty or blank")
    return instruction


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not (
        len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and _IDEMPOTENCY_KEY.fullmatch(key)
    ):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII "
            "characters (spaces allowed inside)",
        )


def parse_job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(404, "job_not_found", f"no job with id {raw!r}") from None


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    """Where the next page starts: `<microseconds since 1970>_<job id>`. Opaque to clients,
    but of a shape a pattern can describe, so that every cursor the document allows is one
    the API can read."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{job_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The page start a cursor names."""
    if not _CURSOR.fullmatch(cursor):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    micros, _, job_id = cursor.partition("_")
    return _EPOCH + timedelta(microseconds=int(micros)), UUID(hex=job_id)
