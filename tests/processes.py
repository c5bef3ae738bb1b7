"""Real `reportsvc` processes for chaos tests: started, signalled and reaped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import psutil

from reportsvc.embedded import free_port

T = TypeVar("T")

# Timings that make leases lapse and retries happen within a test's patience.
CHAOS_ENV = {
    "LEASE_SECONDS": "2",
    "RESCUE_INTERVAL_SECONDS": "0.3",
    "POLL_INTERVAL_SECONDS": "0.3",
    "RETRY_BASE_SECONDS": "0.05",
    "RETRY_MAX_SECONDS": "0.5",
    "MAX_ATTEMPTS": "5",
    "OPENAI_MAX_RETRIES": "0",
    "OPENAI_TIMEOUT": "10",
    "SHUTDOWN_GRACE_SECONDS": "2",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "DEFAULT_SECTIONS": "6",
}


class Service:
    """One running `reportsvc` subprocess, its output captured in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reportsvc", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class Cluster:
    """The API and workers of one test, all stopped when the test ends."""

    def __init__(self, database_url: str, model_url: str, log_dir: Path, **env: str) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DATABASE_"))},
            **CHAOS_ENV,
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": model_url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.services: list[Service] = []
        self.api_url = ""

    def start_api(self, name: str = "api", **env: str) -> Service:
        port = free_port()
        service = self._start(name, ["serve", "--port", str(port)], **env)
        self.api_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return service
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"API did not start:\n{service.output()}")

    def start_worker(self, name: str, concurrency: int = 8, **env: str) -> Service:
        return self._start(name, ["worker", "--concurrency", str(concurrency)], **env)

    def _start(self, name: str, args: list[str], **env: str) -> Service:
        service = Service(name, args, {**self.env, **env}, self.log_dir)
        self.services.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


@contextmanager
def cluster(database_url: str, model_url: str, log_dir: Path, **env: str) -> Iterator[Cluster]:
    running = Cluster(database_url, model_url, log_dir, **env)
    try:
        yield running
    finally:
        running.stop()


async def wait_until(
    predicate_sql: str, database_url: str, *args: object, timeout: float = 30
) -> None:
    """Poll until `predicate_sql` (a query returning one boolean) is true."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while not await conn.fetchval(predicate_sql, *args):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {predicate_sql}")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections process `pid` holds to `port` (PostgreSQL, PgBouncer)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return 0
    return sum(
        1
        for c in connections
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def peak_connections(
    services: list[Service], port: int, until: Awaitable[T]
) -> tuple[T, dict[str, int]]:
    """Await `until` while sampling, every 50 ms, how many connections each service holds
    to `port`; returns its result and the most each service held at once."""
    task = asyncio.ensure_future(until)
    peaks = dict.fromkeys((service.name for service in services), 0)
    while not task.done():
        for service in services:
            peaks[service.name] = max(peaks[service.name], connections_to(service.pid, port))
        await asyncio.wait({task}, timeout=0.05)
    return task.result(), peaks
