"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

A real `reportsvc serve` process is fuzzed over HTTP with generated requests, valid and
invalid, for every operation. Every answer must be a non-5xx and match the document.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reportsvc.embedded import free_port

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def api_url(
    postgres_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real API process on its own database (created from the migrated template)."""
    import asyncio  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415

    from tests.conftest import with_database  # noqa: PLC0415

    name = "reportsvc_fuzz"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    port = free_port()
    log = Path(tmp_path_factory.mktemp("fuzz")) / "api.log"
    env = {
        **os.environ,
        "DATABASE_URL": with_database(postgres_url, name),
        "LOG_FORMAT": "json",
        "MAX_PENDING_JOBS": "0",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reportsvc", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_fails_and_keeps_its_contract(api_url: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/docs/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=api_url, timeout=10, checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid requests to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
