"""Outline generation: ask for structured JSON (or a list), then refuse to trust it.

The model's answer is parsed and normalised into distinct, numbered, bounded titles:

- not JSON, or not `{"sections": [str, ...]}`   -> a list of titles, else a retryable error
- blank titles, or punctuation only             -> dropped
- placeholders ("Title 2", "second title")      -> dropped, like blank ones
- the topic repeated as a title                 -> dropped, like blank ones
- numbering the model added ("1.", "IV)", "-")  -> removed, we number the titles ourselves
- absurdly long titles                          -> cut at a word boundary, with an ellipsis
- duplicates (ignoring case and spacing)        -> later copies dropped
- more titles than asked for                    -> the first ones kept
- nothing left                                  -> retryable error ("empty outline")
"""

from __future__ import annotations

import json
import re
from typing import Final, Literal

import msgspec
import structlog

from reportsvc.domain import Step, StepResult
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatModel, ChatReply, ChatRequest
from reportsvc.pipeline.prompts import OutlineFormat, outline_messages, outline_response_format
from reportsvc.pipeline.text import comparable, strip_reasoning
from reportsvc.sources import SourceOverview

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


# Titles that only stand for a title: what a weak model copies from an instruction, or
# writes when it has nothing to say ("Title 1", "second title", "Section III", "string").
_ORDINALS: Final = (
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|"
    r"[0-9]{1,2}(?:st|nd|rd|th)?"
)
_COUNTS: Final = r"[0-9]{1,2}|[ivxlc]{1,6}|one|two|three|four|five|six|seven|eight|nine|ten"
_PLACEHOLDER: Final = re.compile(
    rf"^(?:(?:the|a|an|your|my)\s+)?(?:(?:{_ORDINALS})\s+)?(?:(?:section|report)\s+)?"
    rf"(?:title|heading|section|chapter|part|topic|sections|titles|string|text|example)"
    rf"(?:\s+(?:{_COUNTS}))?(?:\s+here)?$"
)


_ARTICLE: Final = re.compile(r"^(?:the|a|an)\s+")


def is_placeholder(title: str, topic: str = "") -> bool:
    """A title that says nothing: punctuation only, a stand-in for a title, or only the
    topic again."""
    key = comparable(title)
    if not key or _PLACEHOLDER.match(key):
        return True
    return bool(topic) and _ARTICLE.sub("", key) == _ARTICLE.sub("", comparable(topic))


def normalize_outline(
    raw_titles: list[str], *, wanted: int, max_title_length: int, topic: str = ""
) -> list[str]:
    """Distinct, cleaned, numbered titles ("I. ...", "II. ..."), at most `wanted` of them.
    Blank titles, placeholders and the bare topic are dropped."""
    seen: set[str] = set()
    titles: list[str] = []
    for raw in raw_titles:
        title = clean_title(raw, max_title_length)
        key = title.casefold()
        if not title or key in seen or is_placeholder(title, topic):
            continue
        seen.add(key)
        titles.append(title)
        if len(titles) == wanted:
            break
    return [f"{roman(i + 1)}. {title}" for i, title in enumerate(titles)]


_LIST_ITEM: Final = re.compile(
    rf"^\s*(?:[-*\u2022]|[0-9]{{1,2}}[.)]|{_ROMAN_NUMERAL}[.)])\s+(?P<title>\S.*)$", re.MULTILINE
)

# OUTLINE_FORMAT: a format, or auto (each format in turn, strictest first, until the model
# service takes one).
OutlineSetting = Literal["auto", "json_schema", "json_object_schema", "json_object", "text"]
_LADDER: Final[tuple[OutlineFormat, ...]] = (
    "json_schema",
    "json_object_schema",
    "json_object",
    "text",
)


def outline_max_tokens(sections: int, max_title_length: int) -> int:
    """The bound on an outline answer: room for `sections` titles of the longest length we
    keep (about two characters a token, and some for JSON or list punctuation), plus the
    object around them. A model that runs on (small ones do, in JSON mode) stops there."""
    return 96 + sections * (max_title_length // 2 + 16)


def parse_outline(content: str, fmt: OutlineFormat = "json_schema") -> list[str]:
    """The titles from the answer: JSON of the requested shape or a numbered or bulleted
    list (asked for in text mode; some servers ignore response_format and answer one).
    Anything else is a retryable `StepError`."""
    text = strip_reasoning(content).strip()
    # Some servers wrap JSON in a Markdown fence even in JSON mode.
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return msgspec.json.decode(text, type=_OutlineAnswer).sections
    except msgspec.DecodeError as exc:
        problem = str(exc)
    try:
        # llama-cpp-python's JSON grammars let raw newlines into strings, which JSON forbids
        # but which say nothing about the answer's shape.
        return msgspec.convert(json.loads(text, strict=False), _OutlineAnswer).sections
    except (ValueError, msgspec.ValidationError):
        pass
    listed = [m.group("title") for m in _LIST_ITEM.finditer(text)]
    # Outside text mode one listed line could be prose that happens to start with "1.".
    enough = 1 if fmt == "text" else 2
    if len(listed) >= enough and not text.startswith(("{", "[")):
        return listed
    if fmt == "text":
        message = "the model's outline was not a list of titles"
    else:
        message = "the model's outline was not JSON of the expected shape"
    raise StepError(message, retryable=True, kind="malformed", detail=problem)


class OutlineWriter:
    """Asks for outlines in the strictest format the model service takes.

    With `auto`, a service that refuses a format (a 400, 422 or 500 naming it: servers
    differ, see README "Model servers") is asked again at once in the next one:
    `json_schema`, then llama.cpp's `json_object` with a schema, then plain JSON mode, then
    text. What worked is remembered per (base URL, model) for the life of the process, so
    only the first outline of each pays for the refusals. A pinned format is never changed.
    """

    def __init__(self, model: ChatModel, *, fmt: OutlineSetting, max_title_length: int,
                 max_attempts: int) -> None:  # fmt: skip
        self._model = model
        self._pinned: OutlineFormat | None = None if fmt == "auto" else fmt
        self._known: dict[tuple[str, str], OutlineFormat] = {}
        self._confirmed: set[tuple[str, str]] = set()
        self._max_title_length = max_title_length
        self._max_attempts = max_attempts

    def format_for(self, model: str) -> OutlineFormat:
        """The format the next outline for `model` will be asked in."""
        return self._pinned or self._known.get((self._model.server, model), _LADDER[0])

    async def write(self, task: Step, sources: list[SourceOverview] | None = None) -> StepResult:
        """The outline; `sources`, when the report has any, are shown to the model."""
        reply, fmt = await self._ask(task, sources)
        try:
            titles = self._titles(reply, fmt, task)
        except StepError as exc:
            log.warning(
                "the outline answer was not usable",
                job_id=str(task.job_id),
                attempt=task.attempt,
                format=fmt,
                finish_reason=reply.finish_reason,
                error=exc.message,
                detail=exc.detail,
            )
            exc.prompt_tokens += reply.usage.prompt_tokens
            exc.completion_tokens += reply.usage.completion_tokens
            raise
        return StepResult(titles=titles, usage=reply.usage)

    async def _ask(
        self, task: Step, sources: list[SourceOverview] | None
    ) -> tuple[ChatReply, OutlineFormat]:
        wanted = task.options.sections
        while True:
            fmt = self.format_for(task.model)
            request = ChatRequest(
                model=task.model,
                messages=outline_messages(task.topic, task.options, fmt, sources=sources),
                response_format=outline_response_format(
                    fmt, sections=wanted, max_title_length=self._max_title_length
                ),
                max_tokens=outline_max_tokens(wanted, self._max_title_length),
                purpose="outline",
            )
            try:
                reply = await self._model.chat(request)
            except StepError as exc:
                if self._pinned is not None or exc.kind != "format_refused":
                    raise
                self._step_down(task.model, fmt, exc)
                continue
            self._confirm(task.model, fmt)
            return reply, fmt

    def _confirm(self, model: str, fmt: OutlineFormat) -> None:
        key = (self._model.server, model)
        if key not in self._confirmed:
            self._confirmed.add(key)
            log.info("outline format accepted", server=key[0], model=model, format=fmt)

    def _step_down(self, model: str, refused: OutlineFormat, exc: StepError) -> None:
        key = (self._model.server, model)
        following = _LADDER[_LADDER.index(refused) + 1]
        # Concurrent outlines may report the same refusal: never step back up.
        current = self._known.get(key, _LADDER[0])
        if _LADDER.index(current) < _LADDER.index(following):
            self._known[key] = following
        self._confirmed.discard(key)
        log.warning(
            "the model service refused this outline format; asking in the next one",
            server=key[0],
            model=model,
            refused=refused,
            next=self._known[key],
            status=exc.status,
            detail=exc.detail,
        )

    def _titles(self, reply: ChatReply, fmt: OutlineFormat, task: Step) -> list[str]:
        wanted = task.options.sections
        cut_off = reply.finish_reason == "length"
        try:
            raw = parse_outline(reply.content, fmt)
        except StepError as exc:
            if not cut_off:
                raise
            raise StepError(
                "the model's outline was cut off at its token limit",
                retryable=True,
                kind="malformed",
                detail=exc.detail,
            ) from None
        if cut_off and fmt == "text" and len(raw) > 1:
            raw = raw[:-1]  # the last line may have been cut mid-title
        titles = normalize_outline(
            raw, wanted=wanted, max_title_length=self._max_title_length, topic=task.topic
        )
        if not titles:
            raise StepError(
                "the model returned an empty outline (no usable titles)",
                retryable=True,
                kind="malformed",
            )
        if len(titles) < wanted and task.attempt < self._max_attempts:
            # Ask again; on the last attempt, what there is will do (GET /reports/{id}
            # shows the shortfall).
            raise StepError(
                f"the model proposed {len(titles)} usable sections, {wanted} were asked for",
                retryable=True,
                kind="malformed",
            )
        return titles
