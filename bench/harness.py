"""Shared benchmark plumbing: throwaway databases, child processes, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from reportsvc.db import migrate
from reportsvc.embedded import free_port

# Child processes log only warnings, and admit any number of jobs (the API benchmark posts
# far more than MAX_PENDING_JOBS' default, and no worker drains them).
QUIET = {
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "json",
    "PYTHONUNBUFFERED": "1",
    "MAX_PENDING_JOBS": "100000000",
}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A fresh database on the server of `server_url`, dropped afterwards."""
    name = f"reportsvc_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        if migrated:
            await asyncio.to_thread(migrate.upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Children:
    """Child processes of one benchmark, all stopped (by PID) on exit."""

    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="reportsvc-bench-")))
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Child:
        log = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **QUIET, **(env or {})}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args], env=full_env, stdout=out, stderr=subprocess.STDOUT
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def reportsvc(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Child:
        return self.spawn(name, ["-m", "reportsvc", *args], env)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


@contextlib.contextmanager
def children() -> Iterator[Children]:
    group = Children()
    try:
        yield group
    finally:
        group.stop_all()


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code < 500:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s")
            await asyncio.sleep(0.05)


def start_fake_model(group: Children, latency: float = 0.0) -> str:
    """The stand-in model in its own process; returns its OpenAI base URL."""
    port = free_port()
    group.reportsvc("fake-llm", ["fake-llm", "--port", str(port), "--latency", str(latency)])
    return f"http://127.0.0.1:{port}"


def start_api(
    group: Children, database_url: str, name: str = "api", env: dict[str, str] | None = None
) -> str:
    port = free_port()
    group.reportsvc(
        name, ["serve", "--port", str(port)], {"DATABASE_URL": database_url, **(env or {})}
    )
    return f"http://127.0.0.1:{port}"


def cpu_seconds(group: Children) -> dict[str, float]:
    """User + system CPU each child has used so far."""
    used = {}
    for child in group.children:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(child.process.pid).cpu_times()
            used[child.name] = times.user + times.system
    return used


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "min": min(values),
    }


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return info


async def postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        version: str = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return version
