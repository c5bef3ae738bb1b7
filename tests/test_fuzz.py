"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

A real `reportsvc serve` process, with a worker behind it so that jobs finish and their
event streams end, is fuzzed over HTTP with generated requests, valid and invalid, for
every operation. Every check schemathesis has runs, as configured in the repository's
`schemathesis.toml` (which says why two of the API's answers are what they are): no 5xx,
documented status codes, content types and headers, bodies and every Server-Sent Event
matching the document, invalid requests refused and valid ones accepted.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok

from reportsvc.embedded import free_port
from tests.processes import Service, cluster

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stand-in model in a process of its own: in a thread of this one, its use of the
    `random` module would race with hypothesis's check that strategies leave it alone."""
    port = free_port()
    model = Service(
        "fake-llm",
        ["fake-llm", "--port", str(port)],
        {**os.environ, "PYTHONUNBUFFERED": "1"},
        tmp_path_factory.mktemp("fake-llm"),
    )
    try:
        deadline = time.monotonic() + 30
        while not model.output().strip().endswith("/v1"):
            assert model.alive(), model.output()
            assert time.monotonic() < deadline, model.output()
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        model.stop()


@pytest.fixture(scope="module")
def api_url(
    postgres_url: str,
    template_database: str,
    model_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A real API process and a worker on their own database (from the migrated template)."""
    import asyncio  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415

    from tests.conftest import with_database  # noqa: PLC0415

    # Unique: other runs of the suite may share the server.
    name = f"reportsvc_fuzz_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    try:
        with cluster(
            with_database(postgres_url, name),
            model_url,
            tmp_path_factory.mktemp("fuzz"),
            MAX_PENDING_JOBS="0",
            LOG_LEVEL="WARNING",
        ) as running:
            running.start_api()
            running.start_worker("worker", concurrency=64)
            yield running.api_url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def load_schema(api_url: str) -> Any:
    config = SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    return schemathesis.openapi.from_url(f"{api_url}/docs/openapi.json", config=config)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_fails_and_keeps_its_contract(api_url: str, mode: GenerationMode) -> None:
    schema = load_schema(api_url)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 8
    created: Counter[int] = Counter()
    keys_sent: set[str] = set()
    for operation in operations:
        creates = operation.label == "POST /reports"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            # No explicit checks: every check the configuration enables.
            response = case.call_and_validate(base_url=api_url, timeout=10)
            if creates:  # noqa: B023 - fuzz() runs within this iteration
                created[response.status_code] += 1
                key = (case.headers or {}).get("Idempotency-Key")
                if response.status_code == 409:
                    # Only ever a key this run sent before, with another body (hypothesis
                    # varies the bodies of earlier cases, keys included).
                    assert key in keys_sent, (key, case.body)
                    assert response.json()["code"] == "idempotency_key_reused"
                if response.status_code == 404:
                    # Only ever a source id that names no source.
                    assert (case.body or {}).get("sources"), case.body
                    assert response.json()["code"] == "source_not_found"
                if key is not None:
                    keys_sent.add(key)

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid requests to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
    if mode is GenerationMode.POSITIVE:
        # Bodies the document calls valid start a report, or reuse an Idempotency-Key of
        # this run for another body (409), or name a generated sourceId that no source has
        # (404: no generated body can name one that exists), each checked case by case
        # above. How many of each is up to hypothesis: 15, 7 and 3 of 25 in one run, 7, 7
        # and 11 in another (its cases changed with unrelated edits to this test and to the
        # service).
        assert set(created) <= {202, 404, 409}, created
        assert created[202] > 0, created


def test_a_schemathesis_run_finds_nothing(api_url: str, tmp_path: Path) -> None:
    """`st run` as a user would start it from the repository: every phase (examples,
    boundary coverage, fuzzing, stateful sequences), every check the configuration enables,
    and any warning ("mostly rejected generated data" among them) is a failure."""
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file", str(ROOT / "schemathesis.toml"),
            "run",
            f"{api_url}/docs/openapi.json",
            "--max-examples", str(EXAMPLES),
            "--seed", "1",
            "--workers", "1",
        ],
        # Its replay records go to the working directory, not the repository.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in run.stdout, run.stdout
