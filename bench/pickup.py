"""Pickup latency: from the POST /reports response to the outline request at the model.

An idle worker waits (LISTEN/NOTIFY on). The client sends one report at a time and waits
between them, so each measurement starts from an idle worker. The stand-in model records
the wall-clock arrival of each outline request by topic; API, worker, model and client all
run on this machine, so their clocks agree.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.harness import children, start_api, start_fake_model, summary, wait_http


async def measure(database_url: str, *, reports: int, listen: bool = True) -> dict[str, Any]:
    with children() as group:
        model = start_fake_model(group)
        api = start_api(group, database_url)
        group.reportsvc(
            "worker",
            ["worker", "--concurrency", "16"],
            {
                "DATABASE_URL": database_url,
                "OPENAI_BASE_URL": f"{model}/v1",
                "LISTEN_NOTIFY": "true" if listen else "false",
            },
        )
        await wait_http(f"{model}/fake/stats")
        await wait_http(f"{api}/healthz")
        async with httpx.AsyncClient(timeout=10) as http:
            # Warm up: connections, prepared statements, the SDK's first request.
            for i in range(5):
                await http.post(f"{api}/reports", json={"topic": f"warm-up {i}"})
                await asyncio.sleep(0.2)
            await http.post(f"{model}/fake/arrivals")
            answered: dict[str, float] = {}
            for i in range(reports):
                topic = f"pickup {i}"
                response = await http.post(f"{api}/reports", json={"topic": topic})
                answered[topic] = time.time()
                response.raise_for_status()
                # Let the worker go idle again (and finish the report's sections).
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            arrivals = (await http.post(f"{model}/fake/arrivals")).json()
    arrived = {topic: at for at, topic in arrivals}
    latencies_ms = [(arrived[t] - answered[t]) * 1000 for t in answered if t in arrived]
    if len(latencies_ms) != reports:
        raise RuntimeError(f"only {len(latencies_ms)} of {reports} outline requests arrived")
    return {"listen": listen, **summary(latencies_ms)}
