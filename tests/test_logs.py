"""Logs are one JSON object per line, name the job and section, and never show secrets."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from reportsvc.llm.fake import FakeLLMThread
from tests.processes import cluster, wait_until

pytestmark = pytest.mark.slow

API_KEY = "sk-test-do-not-log-7f3a9c"
PASSWORD = "db-password-do-not-log-51e2"


def with_password(url: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{PASSWORD}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def test_logs_are_structured_and_keep_secrets(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    # The test server trusts local connections, so it ignores the password we add.
    url = with_password(database_url)
    with cluster(
        url, fake_llm.base_url, tmp_path, OPENAI_API_KEY=API_KEY, LOG_LEVEL="DEBUG"
    ) as running:
        running.start_api()
        worker = running.start_worker("worker")
        async with httpx.AsyncClient() as http:
            job_id = (await http.post(f"{running.api_url}/reports", json={"topic": "Logs"})).json()
            await wait_until(
                "SELECT status = 'completed' FROM jobs WHERE id = $1", database_url, job_id["jobId"]
            )
            await http.get(f"{running.api_url}/reports/{job_id['jobId']}")
        worker.signal(signal.SIGTERM)
        worker.wait(timeout=20)
        outputs = {service.name: service.output() for service in running.services}
    assert fake_llm.stats().last_request is not None
    for name, output in outputs.items():
        assert API_KEY not in output, name
        assert PASSWORD not in output, name
        for line in output.splitlines():
            json.loads(line)  # every line is one JSON object
    events = [json.loads(line) for line in outputs["worker"].splitlines()]
    completed = [e for e in events if e["event"] == "job completed"]
    assert completed
    assert completed[0]["job_id"] == job_id["jobId"]
    assert all({"timestamp", "level", "logger"} <= set(e) for e in events)
