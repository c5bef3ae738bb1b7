"""Loads named statements from this package's `.sql` files (blocks that start with
`-- name: <name>`).

Sets of statuses are written in the SQL as placeholders (`{active_jobs}`) and filled in
here from the enums of `reportsvc.domain`, so each set is defined once; single status
values are plain literals, checked against the enums by a test.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Final

from reportsvc.domain import (
    ACTIVE_JOB_STATUSES,
    FINISHED_JOB_STATUSES,
    REPORT_PART_KINDS,
    RETRYABLE_JOB_STATUSES,
    SUMMARY_TITLE,
    UNFINISHED_JOB_STATUSES,
)

_NAME: Final = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_PLACEHOLDER: Final = re.compile(r"\{(\w+)\}")


def _literals(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


PLACEHOLDERS: Final = {
    "active_jobs": _literals(ACTIVE_JOB_STATUSES),
    "finished_jobs": _literals(FINISHED_JOB_STATUSES),
    "unfinished_jobs": _literals(UNFINISHED_JOB_STATUSES),
    "retryable_jobs": _literals(RETRYABLE_JOB_STATUSES),
    "report_parts": _literals(REPORT_PART_KINDS),
    "summary_title": _literals((SUMMARY_TITLE,)),
}


# Numbers a statement takes as literals rather than parameters, filled in by its caller
# (`literal`); left as they are here.
PER_CALL: Final = frozenset({"claim_limit", "owner_bound"})


def _fill(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in PER_CALL:
        return match.group(0)
    if name not in PLACEHOLDERS:
        raise ValueError(f"unknown placeholder {{{name}}} in SQL")
    return PLACEHOLDERS[name]


def parse_queries(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    # Splitting on the name lines leaves the preamble, then alternating names and bodies.
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = _PLACEHOLDER.sub(_fill, body.strip())
    return queries


def load_queries(filename: str) -> dict[str, str]:
    """The statements of `reportsvc/queue/<filename>`, by name."""
    return parse_queries(files("reportsvc.queue").joinpath(filename).read_text("utf-8"))


def literal(sql: str, **numbers: int) -> str:
    """`sql` with its per-call placeholders written as the given integers."""
    for name, number in numbers.items():
        if name not in PER_CALL:
            raise ValueError(f"{name} is not a per-call placeholder")
        sql = sql.replace(f"{{{name}}}", str(int(number)))
    if left := _PLACEHOLDER.search(sql):
        raise ValueError(f"placeholder {left.group(0)} left unfilled")
    return sql
