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
from typing import Any, Final, Literal

import msgspec
import structlog

from reportsvc.domain import Step, StepResult
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatModel, ChatReply, ChatRequest
from reportsvc.pipeline.prompts import OUTLINE_JSON_OBJECT, OUTLINE_JSON_SCHEMA, outline_messages
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
log = structlog.get_logger("reportsvc.pipeline")

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


_LIST_ITEM: Final = re.compile(
    rf"^\s*(?:[-*\u2022]|[0-9]{{1,2}}[.)]|{_ROMAN_NUMERAL}[.)])\s+(?P<title>\S.*)$", re.MULTILINE
)

OutlineFormat = Literal["auto", "json_schema", "json_object", "text"]
_RESPONSE_FORMATS: Final[dict[str, dict[str, Any] | None]] = {
    "json_schema": OUTLINE_JSON_SCHEMA,
    "json_object": OUTLINE_JSON_OBJECT,
    "text": None,
}
_FALLBACK: Final = {"json_schema": "json_object", "json_object": "text"}


def parse_outline(content: str) -> list[str]:
    """The titles from the answer: JSON of the requested shape or, as a last resort, a
    numbered or bulleted list (some servers ignore response_format). Anything else is a
    retryable `StepError`."""
    text = strip_reasoning(content).strip()
    # Some servers wrap JSON in a Markdown fence even in JSON mode.
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return msgspec.json.decode(text, type=_OutlineAnswer).sections
    except msgspec.DecodeError as exc:
        listed = [m.group("title") for m in _LIST_ITEM.finditer(text)]
        if len(listed) >= 2 and not text.lstrip().startswith(("{", "[")):
            return listed
        raise StepError(
            f"the model's outline was not valid JSON of the expected shape ({exc})",
            retryable=True,
            kind="malformed",
        ) from None


class OutlineWriter:
    """Asks for outlines with structured outputs, and steps down when a server refuses them.

    `auto` starts with strict `json_schema`; a server that answers 400 to it is asked again
    at once with JSON mode, then with plain text (parsed as a numbered list), and the
    format that worked is kept for this process's later outlines.
    """

    def __init__(self, model: ChatModel, *, fmt: OutlineFormat, max_title_length: int,
                 max_attempts: int) -> None:  # fmt: skip
        self._model = model
        self.format: str = "json_schema" if fmt == "auto" else fmt
        self._can_fall_back = fmt == "auto"
        self._max_title_length = max_title_length
        self._max_attempts = max_attempts

    async def write(self, task: Step) -> StepResult:
        reply = await self._ask(task)
        try:
            titles = self._titles(reply.content, task)
        except StepError as exc:
            exc.prompt_tokens += reply.usage.prompt_tokens
            exc.completion_tokens += reply.usage.completion_tokens
            raise
        return StepResult(titles=titles, usage=reply.usage)

    async def _ask(self, task: Step) -> ChatReply:
        while True:
            request = ChatRequest(
                model=task.model,
                messages=outline_messages(task.topic, task.options),
                response_format=_RESPONSE_FORMATS[self.format],
                purpose="outline",
            )
            try:
                return await self._model.chat(request)
            except StepError as exc:
                fallback = _FALLBACK.get(self.format)
                if not (self._can_fall_back and exc.status == 400 and fallback):
                    raise
                log.warning(
                    "the model service refused this outline format; falling back",
                    refused=self.format,
                    next=fallback,
                    error=exc.message,
                )
                self.format = fallback

    def _titles(self, content: str, task: Step) -> list[str]:
        wanted = task.options.sections
        titles = normalize_outline(
            parse_outline(content), wanted=wanted, max_title_length=self._max_title_length
        )
        if not titles:
            raise StepError("the model returned an empty outline", retryable=True, kind="malformed")
        if len(titles) < wanted and task.attempt < self._max_attempts:
            # Ask again; on the last attempt, what there is will do.
            raise StepError(
                f"the model proposed {len(titles)} distinct sections, {wanted} were asked for",
                retryable=True,
                kind="malformed",
            )
        return titles
