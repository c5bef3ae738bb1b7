"""`reportsvc watch` and `reportsvc status`: the API, seen from a terminal (rich)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

FINAL = {"completed", "failed", "cancelled"}
STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "processing": "cyan",
    "awaiting_review": "magenta",
}


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].removeprefix(" "))


async def watch(api: str, job_ids: list[str], console: Console) -> bool:
    """Live progress bars until every job has finished; True if all completed."""
    outcomes: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=api, timeout=httpx.Timeout(10, read=None)) as http:
        topics = {}
        for job_id in job_ids:
            response = await http.get(f"/reports/{job_id}")
            if response.status_code != 200:
                console.print(f"[red]{job_id}: {response.json().get('error', response.text)}")
                return False
            topics[job_id] = response.json()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[step]}"),
            TimeElapsedColumn(),
            console=console,
        ) as bars:
            tasks = {
                job_id: bars.add_task(f"{job_id[:8]}", total=1.0, step="") for job_id in job_ids
            }
            await asyncio.gather(*(_follow(http, bars, tasks[j], j, outcomes) for j in job_ids))
    for job_id in job_ids:
        final = outcomes[job_id]
        status = final["status"]
        detail = final.get("error") or ""
        console.print(f"[{STYLE[status]}]{job_id} {status}[/] {detail}")
    return all(outcomes[j]["status"] == "completed" for j in job_ids)


async def _follow(
    http: httpx.AsyncClient,
    bars: Progress,
    task: TaskID,
    job_id: str,
    outcomes: dict[str, dict[str, Any]],
) -> None:
    async with http.stream("GET", f"/reports/{job_id}/events") as response:
        async for event, data in _events(response):
            if event == "progress":
                step = data.get("section") or "outline written"
                bars.update(task, completed=data["progress"], step=step)
            elif event == "awaiting_review":
                bars.update(task, step="outline awaiting review (PUT /reports/{id}/outline)")
            elif event in FINAL:
                bars.update(task, completed=1.0 if event == "completed" else None, step=event)
                outcomes[job_id] = data
                return


async def status(api: str, console: Console, *, limit: int, state: str | None) -> None:
    params: dict[str, str | int] = {"limit": limit}
    if state:
        params["status"] = state
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        response = await http.get("/reports", params=params)
        response.raise_for_status()
        jobs = response.json()["jobs"]
    table = Table("job", "status", "progress", "created", "topic")
    for job in jobs:
        table.add_row(
            job["jobId"],
            f"[{STYLE[job['status']]}]{job['status']}",
            f"{job['progress'] * 100:.0f}%",
            job["createdAt"][:19].replace("T", " "),
            job["topic"],
        )
    console.print(table)
