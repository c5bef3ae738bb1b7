"""A section of a report with sources: the passages its prompt carries, and what is done
with the citations of its answer.

`section_passages` is the one place that decides what a section is given: a search of the
job's passages with the section's title and the job's topic. Whatever writes a section
(the first time, or again) calls it, so the same title finds the same passages.
"""

from __future__ import annotations

from typing import Final

from reportsvc.domain import Step
from reportsvc.metrics import CITATIONS, SECTION_PASSAGES, SECTIONS_WITHOUT_PASSAGES
from reportsvc.sources import Passage, PassageIndex
from reportsvc.sources.citations import Cleaned, cited_numbers, clean_citations

# What a section that no passage was relevant to starts with, so that a reader does not
# take it for one written from the sources.
NO_PASSAGE_NOTE: Final = (
    "*None of the sources given for this report covers this section; it is written without them.*"
)


async def section_passages(index: PassageIndex, step: Step, *, limit: int) -> list[Passage]:
    """The passages most relevant to the step's section: searched with its title and the
    job's topic, in the job's language; at most `limit`, best first."""
    return await index.search(
        step.job_id,
        language=step.options.language,
        title=step.title or "",
        topic=step.topic,
        limit=limit,
    )


def grounded_text(text: str, passages: list[Passage]) -> Cleaned:
    """A section's text with every citation of a passage it was not given removed (and
    counted); opened with NO_PASSAGE_NOTE when it was given none."""
    cleaned = clean_citations(text, {p.number for p in passages})
    kept = len(cited_numbers(cleaned.text))
    CITATIONS.labels("kept").inc(kept)
    CITATIONS.labels("removed").inc(cleaned.removed)
    SECTION_PASSAGES.inc(len(passages))
    if passages:
        return cleaned
    SECTIONS_WITHOUT_PASSAGES.inc()
    return Cleaned(f"{NO_PASSAGE_NOTE}\n\n{cleaned.text}", cleaned.removed)


def grounded_summary(text: str, written: dict[str, str]) -> Cleaned:
    """The summary of a report with sources, citing only what its sections cite: it was
    given the sections, not the passages, so any other number is invented."""
    cited = set().union(*(cited_numbers(section) for section in written.values()))
    cleaned = clean_citations(text, cited)
    CITATIONS.labels("kept").inc(len(cited_numbers(cleaned.text)))
    CITATIONS.labels("removed").inc(cleaned.removed)
    return cleaned
