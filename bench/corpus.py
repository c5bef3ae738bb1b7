"""A small corpus of source documents, written here, deterministically, for the sources
evaluation (`bench/sources.py`).

Eight fictional towns (so that no model knows anything about them), each with five
documents, one per aspect of the town (its harbour, its cathedral, ...): forty documents.
Every document plants one fact in one paragraph: a figure and a name found nowhere else in
the corpus. The other paragraphs are filler that names the town and, on purpose, other
aspects ("from the harbour to the market"), so that a section about the harbour must find
the harbour document's fact paragraph among passages that also say "harbour". Towns share
aspects, so a report given two towns' documents must also tell the towns apart.

Each aspect has a section title worded unlike its fact paragraph ("Shipping and the
harbour" for a paragraph about the harbour's tide gauge): what a model's outline would
plausibly call it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

TOWNS: Final = (
    "Varenholm", "Quillsby", "Ostremark", "Danvergate", "Lirrow", "Haskett Bay", "Morvain",
    "Tessaly Cross",
)  # fmt: skip

# An aspect: words a section title about it uses, and its planted fact's template.
ASPECTS: Final = {
    "harbour": (
        "Shipping and the harbour",
        (
            "The harbour's tide gauge was installed in {year} by the engineer {name}; it still "
            "records the harbour's water level every {n} minutes."
        ),
    ),
    "cathedral": (
        "The cathedral and its builders",
        (
            "Work on the cathedral's north tower was stopped in {year} when the mason {name} "
            "found the cathedral foundations cracked to a depth of {n} feet."
        ),
    ),
    "railway": (
        "Arrival of the railway",
        (
            "The first railway train reached the station in {year}, driven by {name}, after "
            "{n} months of work on the railway cutting."
        ),
    ),
    "university": (
        "The university and its students",
        (
            "The university admitted its first {n} students in {year}; its founding rector was "
            "the botanist {name}."
        ),
    ),
    "brewery": (
        "Brewing and the brewery",
        (
            "The brewery's copper kettles, bought by {name} in {year}, brewed {n} barrels a week "
            "at the brewery's peak."
        ),
    ),
    "lighthouse": (
        "Keepers of the lighthouse",
        (
            "The lighthouse lamp was converted to electricity in {year}; its last keeper, "
            "{name}, had kept the lighthouse for {n} years."
        ),
    ),
    "market": (
        "Trade at the market",
        (
            "The market charter of {year} let {n} stalls trade in the market square; the first "
            "market warden was {name}."
        ),
    ),
    "bridge": (
        "Crossing the river: the bridge",
        (
            "The stone bridge opened in {year}; its designer {name} gave the bridge {n} arches "
            "so that barges could pass under it."
        ),
    ),
    "mine": (
        "Mining history",
        (
            "The copper mine's deepest shaft reached {n} metres in {year}, under the mine "
            "captain {name}."
        ),
    ),
    "observatory": (
        "The observatory and its astronomers",
        (
            "The observatory's telescope, ground by {name} in {year}, has a mirror {n} "
            "centimetres across; the observatory still opens it to visitors."
        ),
    ),
}

_FIRST: Final = ("Ilse", "Tomas", "Brenna", "Oskar", "Maud", "Jory", "Elsbeth", "Caspar",
                 "Nell", "Anselm", "Wren", "Hedda", "Piet", "Orla", "Sidony", "Ewald")  # fmt: skip
_LAST: Final = ("Marrow", "Quenby", "Strand", "Vellacott", "Ashgrove", "Tallis", "Brede",
                "Ormerod", "Kestle", "Penhallow", "Rudd", "Sallow", "Thursby",
                "Wickett")  # fmt: skip
_FILLER: Final = (
    (
        "Visitors to {town} often walk from the {a} to the {b} along the old high street, "
        "stopping at the tea rooms on the way."
    ),
    (
        "The town council of {town} meets on the first Monday of each month; its minutes "
        "mention the {a} and the {b} more than anything else."
    ),
    (
        "Many families in {town} have worked at the {a} for generations, and some of them "
        "later moved to jobs at the {b}."
    ),
    (
        "Old postcards of {town} show the {a} in the foreground and the {b} behind it, under "
        "a grey northern sky."
    ),
    (
        "Local historians in {town} still argue about whether the {a} or the {b} did more "
        "for the town's growth."
    ),
    (
        "In winter the streets of {town} are quiet, and only the {a} keeps its usual hours; "
        "the {b} closes until spring."
    ),
)


@dataclass(frozen=True)
class Document:
    town: str
    aspect: str
    title: str
    text: str
    # The planted fact's sentence, word for word, as it appears in `text`.
    fact: str


@dataclass(frozen=True)
class Topic:
    town: str
    documents: list[Document]

    @property
    def report_topic(self) -> str:
        return f"The history of {self.town}"

    def section_titles(self) -> dict[str, str]:
        """Aspect -> the section title a report on this town would give it."""
        return {d.aspect: ASPECTS[d.aspect][0] for d in self.documents}


def corpus(seed: int = 14, towns: tuple[str, ...] = TOWNS, aspects: int = 5) -> list[Topic]:
    """The corpus: one topic per town, `aspects` documents each. Same seed, same text."""
    rng = random.Random(seed)
    names = iter(rng.sample([f"{f} {last}" for f in _FIRST for last in _LAST], k=200))
    topics = []
    for town in towns:
        chosen = rng.sample(sorted(ASPECTS), k=aspects)
        documents: list[Document] = []
        for aspect in chosen:
            fact = ASPECTS[aspect][1].format(
                year=rng.randrange(1700, 1950), name=next(names), n=rng.randrange(3, 97)
            )
            others = [a for a in ASPECTS if a != aspect]
            paragraphs = []
            for template in rng.choices(_FILLER, k=9):
                a, b = rng.sample(others, k=2)
                paragraphs.append(template.format(town=town, a=a, b=b))
            # A heading, then the fact somewhere among the filler.
            paragraphs.insert(rng.randrange(1, len(paragraphs) + 1), fact)
            text = f"# {town}: the {aspect}\n\n" + "\n\n".join(paragraphs)
            documents.append(
                Document(town, aspect, f"Notes on {town}, part {len(documents) + 1}", text, fact)
            )
        topics.append(Topic(town, documents))
    return topics
