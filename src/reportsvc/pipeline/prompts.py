"""Prompts. What a user sends (the topic, the language) is always data in the user message,
JSON-quoted, never part of the system prompt: it cannot rewrite the instructions or the
structure of the answer."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from reportsvc.domain import Detail, JobOptions
from reportsvc.pipeline.model import ChatMessage

OUTLINE_SCHEMA_NAME: Final = "report_outline"

# Strict structured outputs accept this schema: the root is an object, every object sets
# additionalProperties to false and lists every property as required.
OUTLINE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "sections": {
            "type": "array",
            "description": "Section titles, in reading order, without numbering.",
            "items": {"type": "string"},
        }
    },
    "required": ["sections"],
    "additionalProperties": False,
}

OUTLINE_JSON_SCHEMA: Final[dict[str, Any]] = {
    "type": "json_schema",
    "json_schema": {"name": OUTLINE_SCHEMA_NAME, "strict": True, "schema": OUTLINE_SCHEMA},
}
OUTLINE_JSON_OBJECT: Final[dict[str, Any]] = {"type": "json_object"}

# How long a section should be, by the job's `detail` option: the words asked for in the
# prompt, and the factor applied to SECTION_MAX_TOKENS (the hard cap on its length).
SECTION_WORDS: Final[dict[Detail, str]] = {
    "brief": "80 to 150",
    "standard": "200 to 350",
    "deep": "450 to 700",
}
MAX_TOKENS_FACTOR: Final[dict[Detail, float]] = {"brief": 0.5, "standard": 1.0, "deep": 2.0}

_LANGUAGE_RULE: Final = " Write in the language the user names; in English if the user names none."


def _user(*parts: tuple[str, str | None]) -> ChatMessage:
    lines = [f"{label}: {_quoted(value)}" for label, value in parts if value is not None]
    return ChatMessage(role="user", content="\n".join(lines))


def outline_messages(topic: str, options: JobOptions) -> list[ChatMessage]:
    system = (
        "You plan the structure of written reports. Given a topic, produce an outline of "
        f"exactly {options.sections} sections that together cover the topic in a logical "
        "reading order. The sections must be distinct and must not overlap. Each title is "
        "specific and short (at most 12 words). Do not number the titles."
        f"{_LANGUAGE_RULE} "
        'Answer with JSON only, in the form {"sections": ["first title", "second title"]}.'
    )
    return [
        ChatMessage(role="system", content=system),
        _user(("Topic", topic), ("Language", options.language)),
    ]


def section_messages(
    topic: str, outline: list[str], position: int, options: JobOptions
) -> list[ChatMessage]:
    title = outline[position]
    words = SECTION_WORDS[options.detail]
    system = (
        "You write one section of a report whose outline you are given. Write only the body "
        "of your section: no heading, no title line, no preamble. Stay inside your section's "
        "scope; the other sections of the outline are written separately, so do not cover "
        "their material. Do not write an introduction or a conclusion for the whole report "
        "unless your section is one. Use plain Markdown paragraphs, with lists only where "
        f"they help. Aim for {words} words.{_LANGUAGE_RULE}"
    )
    numbered = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(outline))
    user = (
        f"Report topic: {_quoted(topic)}\n"
        + (f"Language: {_quoted(options.language)}\n" if options.language else "")
        + f"\nOutline:\n{numbered}\n\n"
        f"Write section {position + 1} of {len(outline)}: {_quoted(title)}"
    )
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def summary_messages(topic: str, written: dict[str, str], options: JobOptions) -> list[ChatMessage]:
    system = (
        "You write the summary that opens a report. You are given the report's sections. "
        "Write one or two paragraphs, 100 to 180 words, that tell a reader what the report "
        "covers and its main points, in the order of the sections. Write only the summary: "
        f"no heading, no preamble, no new facts.{_LANGUAGE_RULE}"
    )
    body = "\n\n".join(f"## {title}\n\n{text}" for title, text in written.items())
    user = (
        f"Report topic: {_quoted(topic)}\n"
        + (f"Language: {_quoted(options.language)}\n" if options.language else "")
        + f"\nWrite the summary of this report:\n\n{body}"
    )
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def _quoted(text: str) -> str:
    """JSON-quote user-supplied text so it reads as one value, whatever it contains."""
    return msgspec.json.encode(text).decode()
