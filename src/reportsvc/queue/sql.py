"""Loads the named statements of `queries.sql` (blocks starting with `-- name: <name>`)."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Final

_NAME: Final = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    # Splitting on the name lines leaves the preamble, then alternating names and bodies.
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


QUERIES: Final = parse_queries(files("reportsvc.queue").joinpath("queries.sql").read_text("utf-8"))
