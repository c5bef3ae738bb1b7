"""HTTP load for the API benchmark, from a separate process.

- `closed`: N connections send requests back to back for a duration (throughput). Uses
  wrk when it is installed (Debian: `apt install wrk`), else an aiohttp client.
- `rate`: an open-loop client that starts requests at a fixed rate, whatever the answers
  do, and records each latency (for tail latency at a moderate load).

    python -m bench.loadgen closed http://127.0.0.1:8000/reports --body '{"topic":"x"}'
    python -m bench.loadgen rate http://127.0.0.1:8000/reports/ID --rate 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.harness import summary

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""


def closed_loop(url: str, *, body: str, connections: int, seconds: float) -> dict[str, Any]:
    """Requests/s of POST `body` to `url` over `connections` keep-alive connections."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        return _wrk(wrk, url, body=body, connections=connections, seconds=seconds)
    return _subprocess("closed", url, "--body", body, "--connections", str(connections),
                       "--seconds", str(seconds))  # fmt: skip


def fixed_rate(urls: list[str], *, rate: float, seconds: float) -> dict[str, Any]:
    return _subprocess("rate", *urls, "--rate", str(rate), "--seconds", str(seconds))


def _subprocess(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", *args], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _wrk(wrk: str, url: str, *, body: str, connections: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=json.dumps(body)))
        out = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {
        q: _ms(m.group(1), m.group(2))
        for q, m in ((q, re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out)) for q in ("50", "99"))
        if m
    }
    return {
        "tool": "wrk",
        "rps": rps,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "latency_ms": latency,
    }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def _closed(url: str, body: str, connections: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one_connection() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    failures += response.status >= 300
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    stats = summary(latencies)
    return {
        "tool": "aiohttp",
        "rps": len(latencies) / elapsed,
        "non_2xx": failures,
        "latency_ms": {"50": stats["median"], "99": stats["p99"]},
    }


async def _rate(urls: list[str], rate: float, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    count = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        # Warm up the connections first.
        for url in urls[:5]:
            async with http.get(url) as response:
                await response.read()

        async def one(url: str) -> None:
            nonlocal failures
            started = time.perf_counter()
            async with http.get(url) as response:
                await response.read()
                failures += response.status != 200
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        for i in range(count):
            with contextlib.suppress(ValueError):
                await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(urls[i % len(urls)])))
        await asyncio.gather(*tasks)
    return {"rate": rate, "failures": failures, "latency_ms": summary(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["closed", "rate"])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--body", default="")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()
    if args.mode == "closed":
        result = uvloop.run(_closed(args.urls[0], args.body, args.connections, args.seconds))
    else:
        result = uvloop.run(_rate(args.urls, args.rate, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
