"""Output hygiene for model text."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

# Some OpenAI-compatible local models (DeepSeek-R1, Qwen3 and others served by Ollama or
# vLLM) put their reasoning in <think>...</think> before the answer.
_REASONING: Final = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_REASONING: Final = re.compile(
    r"^\s*<(think|thinking|reasoning)>.*", re.DOTALL | re.IGNORECASE
)
_HEADING: Final = re.compile(r"^\s{0,3}#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


def strip_reasoning(text: str) -> str:
    # NUL cannot be stored in a PostgreSQL text column; no model means to send one.
    text = _REASONING.sub("", text.replace("\x00", ""))
    # A reply cut off inside its reasoning has no answer at all.
    return _UNCLOSED_REASONING.sub("", text)


_NOT_WORDS: Final = re.compile(r"[\W_]+")


def comparable(text: str) -> str:
    """`text` for comparison: lower case, punctuation and spacing folded to single spaces."""
    return _NOT_WORDS.sub(" ", text).casefold().strip()


def clean_section(text: str, title: str) -> str:
    """The section body: reasoning removed, whitespace trimmed, a repeated title dropped."""
    text = strip_reasoning(text).strip()
    first, _, rest = text.partition("\n")
    heading = _HEADING.match(first)
    candidate = heading.group("text") if heading else first.strip("*_ ")
    bare_title = title.split(". ", 1)[-1]
    if comparable(candidate) in {comparable(title), comparable(bare_title)}:
        text = rest.strip()
    return text


# Leading numbering ("1", "iv") of a line already folded by `comparable`.
_LEADING_NUMBERS: Final = re.compile(r"^(?:(?:[0-9]{1,2}|[ivxlc]{1,6})\s+)+")
# Fewer words than this around an echoed outline, and the answer is the outline.
_ECHO_PROSE_WORDS: Final = 25


def _title_key(text: str) -> str:
    return _LEADING_NUMBERS.sub("", comparable(text))


def section_problem(answer: str, title: str, outline: list[str]) -> str | None:
    """What makes a model's answer not a section, in words for a reminder; None if it is.

    Small models answer with nothing, with the section's title alone, or with the outline
    they were given (numbered or not, perhaps with a sentence around it).
    """
    text = strip_reasoning(answer).strip()
    if not text:
        return "empty"
    titles = _title_keys(tuple(outline))
    # An answer with more words outside the outline's titles than the title has is not the
    # title alone either: a real section is settled within its first lines, without folding
    # the whole of it (every section's answer passes through here).
    enough = max(_ECHO_PROSE_WORDS, len(comparable(title).split()) + 1)
    echoed: set[str] = set()
    prose_words = 0
    for line in text.splitlines():
        key = _title_key(line)
        if key in titles:
            echoed.add(key)
        else:
            prose_words += len(key.split())
            if prose_words >= enough:
                return None  # prose enough to be a section, whatever it repeats
    if _title_key(text) == _title_key(title) or not clean_section(text, title):
        return "only the section's title"
    if len(echoed) >= min(2, len(titles)):
        return "the outline repeated back"
    return None


# Sections of a report are claimed together, so a worker's sections in flight belong to a
# few reports: 32 outlines cover --concurrency 64 down to reports of two sections. Each entry
# keeps an outline alive (2.7 KB for eight titles of 60 characters, by tracemalloc); with
# 256 the cache alone grew a worker's RSS 0.7 MiB over 10,000 sections (bench/memory.py).
@lru_cache(maxsize=32)
def _title_keys(outline: tuple[str, ...]) -> frozenset[str]:
    """The outline's titles, folded: every section of a report asks about the same ones."""
    return frozenset(_title_key(t) for t in outline)
