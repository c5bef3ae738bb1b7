"""Outline generation: ask for structured JSON, then refuse to trust it.

The model's answer is parsed and normalised into distinct, numbered, bounded titles:

- not JSON, or not `{"sections": [str, ...]}`   -> retryable error (another try may do better)
- blank titles                                  -> dropped
- numbering the model added ("1.", "IV)", "-")  -> removed, we number the titles ourselves
- absurdly long titles                          -> cut at a word boundary, with an ellipsis
- duplicates (ignoring case and spacing)        -> later copies dropped
- more titles than asked for                    -> the first ones kept
- nothing left                                  -> retryable error ("empty outline")
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from reportsvc.domain import OutlineResult, OutlineTask
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatModel, ChatRequest
from reportsvc.pipeline.prompts import OUTLINE_RESPONSE_FORMAT, outline_messages
from reportsvc.pipeline.text import strip_reasoning

_ROMAN_NUMERAL: Final = r"(?=[MDCLXVI])M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
# Numbering a model may put in front of a title. Roman numerals must be upper case and
# arabic ones at most two digits, so "Civil: ..." and "1848: ..." survive.
_NUMBERING: Final = re.compile(
    rf"""^\s*(?:
        [-*\u2022#]+\s*                                           # bullets, Markdown headings
      | (?i:section|part|chapter)\s+(?:[0-9]{{1,2}}|{_ROMAN_NUMERAL})\s*[.:)\-\u2013\u2014]?\s*
      | (?:[0-9]{{1,2}}|{_ROMAN_NUMERAL})\s*[.:)\u2013\u2014]\s+    # "1." "IV)"
      | (?:[0-9]{{1,2}}|{_ROMAN_NUMERAL})\s+[-\u2013\u2014]\s+      # "3 - "
    )""",
    re.VERBOSE,
)
_ROMAN: Final = (
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
    (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
)  # fmt: skip


class _OutlineAnswer(msgspec.Struct, forbid_unknown_fields=True):
    sections: list[str]


def roman(number: int) -> str:
    out = []
    for value, numeral in _ROMAN:
        count, number = divmod(number, value)
        out.append(numeral * count)
    return "".join(out)


def clean_title(raw: str, max_length: int) -> str:
    title = " ".join(raw.replace("\x00", "").split())
    # Remove numbering repeatedly: "1. I. Origins" happens.
    while (match := _NUMBERING.match(title)) and match.end() < len(title):
        title = title[match.end() :]
    title = title.strip().strip("\"'*_`").strip()
    if len(title) > max_length:
        cut = title[: max_length - 1]
        if " " in cut[max_length // 2 :]:
            cut = cut[: cut.rindex(" ")]
        title = cut.rstrip(" ,;:-") + "…"
    return title


def normalize_outline(raw_titles: list[str], *, wanted: int, max_title_length: int) -> list[str]:
    """Distinct, cleaned, numbered titles ("I. ...", "II. ..."), at most `wanted` of them."""
    seen: set[str] = set()
    titles: list[str] = []
    for raw in raw_titles:
        title = clean_title(raw, max_title_length)
        key = title.casefold()
        if not title or key in seen:
            continue
        seen.add(key)
        titles.append(title)
        if len(titles) == wanted:
            break
    return [f"{roman(i + 1)}. {title}" for i, title in enumerate(titles)]


def parse_outline(content: str) -> list[str]:
    """The titles from a JSON answer; raises a retryable `StepError` on any other shape."""
    text = strip_reasoning(content).strip()
    # Some servers wrap JSON in a Markdown fence even in JSON mode.
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        answer = msgspec.json.decode(text, type=_OutlineAnswer)
    except msgspec.DecodeError as exc:
        raise StepError(
            f"the model's outline was not valid JSON of the expected shape ({exc})",
            retryable=True,
            kind="malformed",
        ) from None
    return answer.sections


async def write_outline(
    model: ChatModel, task: OutlineTask, *, max_title_length: int
) -> OutlineResult:
    reply = await model.chat(
        ChatRequest(
            model=task.model,
            messages=outline_messages(task.topic, task.options),
            response_format=OUTLINE_RESPONSE_FORMAT,
            purpose="outline",
        )
    )
    titles = normalize_outline(
        parse_outline(reply.content),
        wanted=task.options.sections,
        max_title_length=max_title_length,
    )
    if not titles:
        raise StepError("the model returned an empty outline", retryable=True, kind="malformed")
    return OutlineResult(titles=titles, usage=reply.usage)
