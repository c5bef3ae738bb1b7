"""Output hygiene for model text."""

from __future__ import annotations

import re
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


def _comparable(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).casefold().strip()


def clean_section(text: str, title: str) -> str:
    """The section body: reasoning removed, whitespace trimmed, a repeated title dropped."""
    text = strip_reasoning(text).strip()
    first, _, rest = text.partition("\n")
    heading = _HEADING.match(first)
    candidate = heading.group("text") if heading else first.strip("*_ ")
    bare_title = title.split(". ", 1)[-1]
    if _comparable(candidate) in {_comparable(title), _comparable(bare_title)}:
        text = rest.strip()
    return text
