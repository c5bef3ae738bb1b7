"""Citations in a section's text: `[n]`, or several numbers in one bracket (`[2, 5]`,
`[2][5]` is two brackets). A number the section was not given is removed (the bracket
too, when nothing is left in it) and counted: a model that cites a passage it never saw
has invented a source, and a reader must not be sent to it.

A bracket followed by `(` is a Markdown link (`[3](https://...)`), not a citation.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final, NamedTuple

_CITATION: Final = re.compile(r"(?P<space>[ \t]?)\[(?P<numbers>\d{1,6}(?:\s*,\s*\d{1,6})*)\](?!\()")


class Cleaned(NamedTuple):
    text: str
    # Citations of numbers that were not given, removed.
    removed: int


def cited_numbers(text: str) -> set[int]:
    """Every number `text` cites."""
    return {
        int(number)
        for match in _CITATION.finditer(text)
        for number in match.group("numbers").split(",")
    }


def clean_citations(text: str, given: Collection[int]) -> Cleaned:
    """`text` with citations of numbers outside `given` removed, and how many there were."""
    removed = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal removed
        numbers = [int(n) for n in match.group("numbers").split(",")]
        kept = [n for n in numbers if n in given]
        removed += len(numbers) - len(kept)
        if not kept:
            return ""
        return f"{match.group('space')}[{', '.join(str(n) for n in kept)}]"

    return Cleaned(_CITATION.sub(keep, text), removed)
