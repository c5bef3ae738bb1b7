"""`reportsvc dev` from nothing (no DATABASE_URL, no API key), and the terminal views."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reportsvc.embedded import EmbeddedPostgres, free_port

pytestmark = pytest.mark.slow


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "reportsvc dev exited early"
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("reportsvc dev did not become ready")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportsvc", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_dev_runs_everything_from_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DATABASE_"))}
    env.update({"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "reportsvc", "dev", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await wait_ready(api, dev)
        async with httpx.AsyncClient(base_url=api) as http:
            job_id = (await http.post("/reports", json={"topic": "Volcanoes"})).json()["jobId"]
        watched = await asyncio.to_thread(cli, "watch", job_id, "--api", api, env=env)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert f"{job_id} completed" in watched.stdout
        listed = await asyncio.to_thread(cli, "status", "--api", api, env=env)
        assert listed.returncode == 0
        assert "Volcanoes" in listed.stdout
        async with httpx.AsyncClient(base_url=api) as http:
            report = (await http.get(f"/reports/{job_id}")).json()["report"]
        assert all(text.startswith("[Placeholder text") for text in report["sections"].values())
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=30)
        log.close()
    output = (tmp_path / "dev.log").read_text()
    assert code == 0, output
    assert "NO MODEL CONFIGURED" in output
    assert f'"page": "{api}/"' in output  # the web page's address, to open in a browser
    # Its data stays in the project directory, and its server was stopped.
    data = tmp_path / ".data" / "postgres"
    assert (data / "PG_VERSION").exists()
    assert not EmbeddedPostgres(data).is_running()


def test_watch_says_when_the_api_is_unreachable() -> None:
    result = cli("watch", "x", "--api", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 1
    assert "cannot reach the API" in result.stderr
