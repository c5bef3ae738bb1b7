"""Prompts. The topic is always data in a user message, never part of the system prompt,
so a topic cannot rewrite the instructions or the structure of the answer."""

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

OUTLINE_RESPONSE_FORMAT: Final[dict[str, Any]] = {
    "type": "json_schema",
    "json_schema": {"name": OUTLINE_SCHEMA_NAME, "strict": True, "schema": OUTLINE_SCHEMA},
}

# How long a section should be, by the job's `detail` option.
SECTION_WORDS: Final[dict[Detail, str]] = {
    "brief": "80 to 150",
    "standard": "200 to 350",
    "deep": "450 to 700",
}


def _language_rule(options: JobOptions) -> str:
    if options.language:
        return f" Write in {options.language}."
    return ""


def outline_messages(topic: str, options: JobOptions) -> list[ChatMessage]:
    system = (
        "You plan the structure of written reports. Given a topic, produce an outline of "
        f"exactly {options.sections} sections that together cover the topic in a logical "
        "reading order. The sections must be distinct and must not overlap. Each title is "
        "specific and short (at most 12 words). Do not number the titles."
        f"{_language_rule(options)} "
        'Answer with JSON only, in the form {"sections": ["first title", "second title"]}.'
    )
    return [
        ChatMessage(role="system", content=system),
        ChatMessage(role="user", content=f"Topic: {_quoted(topic)}"),
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
        f"they help. Aim for {words} words.{_language_rule(options)}"
    )
    numbered = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(outline))
    user = (
        f"Report topic: {_quoted(topic)}\n\n"
        f"Outline:\n{numbered}\n\n"
        f"Write section {position + 1} of {len(outline)}: {_quoted(title)}"
    )
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def _quoted(text: str) -> str:
    """JSON-quote user-supplied text so it reads as one value, whatever it contains."""
    return msgspec.json.encode(text).decode()
