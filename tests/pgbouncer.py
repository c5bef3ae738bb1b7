"""A real PgBouncer in transaction mode for tests, in front of a PostgreSQL of their choice.

It is the operating system's `pgbouncer` (Debian's package is 1.18: no prepared-statement
support in transaction mode, the hardest case), run by `reportsvc.embedded.PgBouncer` as an
unprivileged user and stopped by PID. Missing, it skips a test, except in CI, where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reportsvc.embedded import PgBouncer, pgbouncer_binary

# Server connections PgBouncer keeps per database: what PostgreSQL sees, however many
# clients there are.
POOL_SIZE = 4


@contextmanager
def pgbouncer(
    server_url: str, directory: Path, *, pool_size: int = POOL_SIZE
) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    bouncer = PgBouncer(server_url, directory, pool_size=pool_size)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
