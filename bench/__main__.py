"""Run every benchmark and print each figure next to its target.

    python -m bench              # full run (about 5 minutes on 2 cores)
    python -m bench --quick      # smaller sizes, under 2 minutes
    python -m bench --json       # the same figures as JSON (machine info included)
    python -m bench --only pickup,api
    python -m bench --only sources   # the sources evaluation (recall@k, citations, search)

Everything runs against the PostgreSQL server of DATABASE_URL, in scratch databases it
creates and drops; without DATABASE_URL an embedded PostgreSQL is started (pgserver).
Side-by-side comparisons (PgQueuer, a bare Litestar handler) run in the same invocation,
alternating with ours, so their ratios hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import api, memory, metrics, overhead, pickup, quota, scale, sources, throughput
from bench.harness import machine_info, postgres_version, scratch_database
from reportsvc.embedded import EmbeddedPostgres
from reportsvc.settings import normalize_database_url


@dataclass(frozen=True)
class Sizes:
    pickup_reports: int
    throughput_rows: dict[int, int]
    throughput_rounds: int
    api_seconds: float
    memory_sections: int
    scale_reports: int
    finished_rows: int
    finished_jobs: int
    quota_reports: int
    turns_backlog: int
    gate_rows: int
    gate_rounds: int
    sources_searches: int


QUICK = Sizes(
    100, {10: 10_000, 100: 20_000}, 1, 6, 10_000, 1_000, 100_000, 100_000, 12, 20, 10_000, 2, 200
)
FULL = Sizes(
    300,
    {10: 20_000, 100: 40_000},
    3,
    20,
    10_000,
    10_000,
    100_000,
    500_000,
    30,
    60,
    20_000,
    11,
    1000,
)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str
    ok: bool


def _figures_pickup(r: dict[str, Any]) -> list[Figure]:
    return [
        Figure("pickup latency, median", r["median"], "ms", "<= 5 ms", r["median"] <= 5),
        Figure("pickup latency, p99", r["p99"], "ms", "<= 25 ms", r["p99"] <= 25),
    ]


def _figures_overhead(
    one: dict[str, Any], many: dict[str, Any], single: dict[str, Any]
) -> list[Figure]:
    label = f"{many['reports']} concurrent reports, {many['workers']} worker processes"
    return [
        Figure("1 report: wall / 2L", one["ratio_max"], "x", "<= 1.10", one["ratio_max"] <= 1.10),
        Figure(
            f"{label}: median wall / 2L",
            many["ratio_median"],
            "x",
            "<= 1.30",
            many["ratio_median"] <= 1.30,
        ),
        Figure(
            f"{label}: slowest wall / 2L",
            many["ratio_max"],
            "x",
            "<= 1.30",
            many["ratio_max"] <= 1.30,
        ),
        Figure(
            f"{single['reports']} concurrent reports, 1 worker process: slowest wall / 2L",
            single["ratio_max"],
            "x",
            "(for comparison)",
            ok=True,
        ),
    ]


def _figures_throughput(results: list[dict[str, Any]]) -> list[Figure]:
    return [
        Figure(
            f"queue throughput, batch {r['batch']}: ours / PgQueuer "
            f"({r['ours_per_s']:,.0f} vs {r['pgqueuer_per_s']:,.0f} rows/s)",
            r["ratio"],
            "x",
            ">= 1.5",
            r["ratio"] >= 1.5,
        )
        for r in results
    ]


def _figures_api(r: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"POST /reports: ours / bare Litestar ({r['post_rps_ours']:,.0f} vs "
            f"{r['post_rps_bare']:,.0f} req/s, {r['tool']})",
            r["post_ratio"],
            "x",
            ">= 0.50",
            r["post_ratio"] >= 0.5,
        ),
        Figure(
            f"GET /reports/{{id}} p99 at {r['get_rate']:.0f} req/s",
            r["get_latency_ms"]["p99"],
            "ms",
            "<= 10 ms",
            r["get_latency_ms"]["p99"] <= 10,
        ),
    ]


def _figures_memory(r: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"worker RSS growth over {r['sections']:,} sections (end {r['rss_mib_end']} MiB)",
            r["growth_mib"],
            "MiB",
            "<= 5 MiB",
            r["growth_mib"] <= 5,
        )
    ]


def _figures_scale(drain: dict[str, Any], cost: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"{drain['reports']:,} reports, {drain['workers']} workers: seconds to drain, "
            f"all completed once ({drain['steps_per_s']:,.0f} steps/s)",
            drain["seconds"],
            "s",
            "no error, no stuck row",
            bool(drain["ok"]),
        ),
        Figure(
            f"claim latency with {cost['finished_rows']:,} finished rows / without "
            f"({cost['claim_ms_median_with_finished_rows']:.2f} vs "
            f"{cost['claim_ms_median_without_finished_rows']:.2f} ms)",
            cost["ratio"],
            "x",
            "flat (<= 1.5)",
            cost["ratio"] <= 1.5,
        ),
    ]


def _figures_metrics(r: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            f"/metrics database refresh with {r['finished_jobs']:,} finished jobs / with 1,000 "
            f"({r['refresh_ms_many']:.2f} vs {r['refresh_ms_few']:.2f} ms; the old full count: "
            f"{r['full_count_ms_many']:.1f} vs {r['full_count_ms_few']:.1f} ms)",
            r["ratio"],
            "x",
            "flat (<= 1.5)",
            r["ratio"] <= 1.5,
        )
    ]


def _figures_quota(spends: dict[str, dict[str, Any]], turns: dict[str, Any]) -> list[Figure]:
    figures: list[Figure] = []
    targets = {"configured": (0.02, 1.15), "headers": (0.10, 1.30), "tokens": (0.02, 1.15)}
    for case, r in spends.items():
        most_429, most_wall = targets[case]
        limit = f"{r['rpm']:g} rpm" if r["rpm"] else f"{r['tpm']:g} tpm"
        how = "configured" if r["configured"] else "learned from headers"
        label = f"{r['calls']} calls, 4 workers x 16, provider at {limit} ({how})"
        figures += [
            Figure(
                f"{label}: 429s / calls served ({r['answered_429']} of {r['served']})",
                r["ratio_429"],
                "",
                f"<= {most_429:.2f}",
                r["ratio_429"] <= most_429,
            ),
            Figure(
                f"{label}: wall / what the limit allows ({r['wall_s']:.1f} vs "
                f"{r['allowed_s']:.1f} s)",
                r["wall_over_allowed"],
                "x",
                f"<= {most_wall:.2f}",
                r["wall_over_allowed"] <= most_wall,
            ),
        ]
    figures.append(
        Figure(
            f"owner B's 1 report behind owner A's {turns['backlog']}: wall / critical path "
            f"({turns['b_wall_s']:.2f} vs {turns['critical_path_s']:.2f} s)",
            turns["ratio"],
            "x",
            "<= 4",
            turns["ratio"] <= 4,
        )
    )
    return figures


def _figures_gate(r: dict[str, Any]) -> list[Figure]:
    per_s, cpu = r["per_s"], r["cpu_us_per_step"]
    return [
        Figure(
            f"queue throughput, no-op steps taking quota of a model without limits / taking "
            f"none, median of paired rounds ({per_s['unlimited']:,.0f} vs {per_s['none']:,.0f} "
            f"rows/s; worker CPU {cpu['unlimited']:.0f} vs {cpu['none']:.0f} µs a step)",
            r["unlimited_ratio"],
            "x",
            ">= 0.90",
            r["unlimited_ratio"] >= 0.90,
        ),
        Figure(
            f"queue throughput, no-op steps taking quota under a configured limit / taking "
            f"none, median of paired rounds ({per_s['configured']:,.0f} vs "
            f"{per_s['none']:,.0f} rows/s; worker CPU {cpu['configured']:.0f} vs "
            f"{cpu['none']:.0f} µs a step)",
            r["configured_ratio"],
            "x",
            ">= 0.90",
            r["configured_ratio"] >= 0.90,
        ),
    ]


def _figures_sources(quality: dict[str, Any], search: dict[str, Any]) -> list[Figure]:
    k, stored = quality["k"], search["stored"]
    spread, largest, single = search["per_report"], search["largest_allowed"], search["one_job"]
    return [
        Figure(
            f"sources: sections given their planted fact's passage (recall@{k})",
            quality["recall_at_k"],
            "",
            ">= 0.9",
            quality["recall_at_k"] >= 0.9,
        ),
        Figure(
            "sources: citations naming a passage given, after cleaning",
            quality["citation_validity"],
            "",
            "= 1.0",
            quality["citation_validity"] == 1.0,
        ),
        *(
            Figure(
                f"sources: section search, {stored} passages stored, {label}",
                value,
                "ms",
                "<= 20 ms",
                value <= 20,
            )
            for label, value in (
                (f"a job of {spread['passages']}, median", spread["median_ms"]),
                (f"a job of {spread['passages']}, p95", spread["p95_ms"]),
                (f"the largest job allowed ({largest['passages']}), median", largest["median_ms"]),
                (f"the largest job allowed ({largest['passages']}), p95", largest["p95_ms"]),
            )
        ),
        # Far beyond SOURCES_MAX_CHARACTERS' default: how the search grows, not a target.
        *(
            Figure(
                f"sources: section search, all {single['passages']} passages in one job, {q}",
                single[f"{q}_ms"],
                "ms",
                "(for comparison)",
                ok=True,
            )
            for q in ("median", "p95")
        ),
    ]


async def run(server_url: str, sizes: Sizes, only: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    figures: list[Figure] = []

    async def step(name: str, work: Callable[[], Awaitable[None]]) -> None:
        if only and name not in only:
            return
        started = time.perf_counter()
        print(f"... {name}", file=sys.stderr, flush=True)
        await work()
        print(f"    {name} took {time.perf_counter() - started:.0f} s", file=sys.stderr)

    async def do_pickup() -> None:
        async with scratch_database(server_url) as url:
            results["pickup"] = await pickup.measure(url, reports=sizes.pickup_reports)
        figures.extend(_figures_pickup(results["pickup"]))

    async def do_overhead() -> None:
        async with scratch_database(server_url) as url:
            one = await overhead.measure(url, reports=1, latency=0.5, sections=8)
        # One worker process per core: 450 concurrent model calls cost about 0.3 s of CPU in
        # the SDK, which one process can only spend serially.
        async with scratch_database(server_url) as url:
            many = await overhead.measure(url, reports=50, latency=0.5, sections=8, workers=2)
        async with scratch_database(server_url) as url:
            single = await overhead.measure(url, reports=50, latency=0.5, sections=8, workers=1)
        results["overhead"] = {"one": one, "fifty": many, "fifty_one_worker": single}
        figures.extend(_figures_overhead(one, many, single))

    async def do_throughput() -> None:
        runs = [
            await throughput.measure(
                server_url, batch=batch, rows=rows, rounds=sizes.throughput_rounds
            )
            for batch, rows in sizes.throughput_rows.items()
        ]
        results["throughput"] = runs
        figures.extend(_figures_throughput(runs))

    async def do_api() -> None:
        async with scratch_database(server_url) as url:
            results["api"] = await api.measure(
                url, seconds=sizes.api_seconds, connections=32, get_rate=200
            )
        figures.extend(_figures_api(results["api"]))

    async def do_memory() -> None:
        async with scratch_database(server_url) as url:
            results["memory"] = await memory.measure(url, sections=sizes.memory_sections)
        figures.extend(_figures_memory(results["memory"]))

    async def do_scale() -> None:
        async with scratch_database(server_url) as url:
            drain = await scale.drain(url, reports=sizes.scale_reports)
        async with scratch_database(server_url) as url:
            cost = await scale.claim_cost(url, finished=sizes.finished_rows)
        results["scale"] = {"drain": drain, "claim_cost": cost}
        figures.extend(_figures_scale(drain, cost))

    async def do_metrics() -> None:
        results["metrics"] = await metrics.measure(server_url, finished=sizes.finished_jobs)
        figures.extend(_figures_metrics(results["metrics"]))

    async def do_quota() -> None:
        spends: dict[str, dict[str, Any]] = {}
        cases: dict[str, dict[str, Any]] = {
            "configured": {"rpm": 600, "tpm": None, "configured": True},
            "headers": {"rpm": 600, "tpm": None, "configured": False},
            # Sections capped at 200 tokens so that the tokens, not the requests, bind; a
            # third of the reports, so that it takes about as long as the others.
            "tokens": {
                "rpm": None,
                "tpm": 40_000,
                "configured": True,
                "section_max_tokens": 200,
                "reports": sizes.quota_reports // 3,
            },
        }
        for case, how in cases.items():
            async with scratch_database(server_url) as url:
                spends[case] = await quota.spend(url, **{"reports": sizes.quota_reports, **how})
        async with scratch_database(server_url) as url:
            turns = await quota.turns(url, backlog=sizes.turns_backlog)
        results["quota"] = {"spend": spends, "turns": turns}
        figures.extend(_figures_quota(spends, turns))

    async def do_gate() -> None:
        results["gate"] = await quota.gate_cost(
            server_url, rows=sizes.gate_rows, rounds=sizes.gate_rounds
        )
        figures.extend(_figures_gate(results["gate"]))

    async def do_sources() -> None:
        async with scratch_database(server_url) as url:
            quality = await sources.evaluate(url)
        async with scratch_database(server_url) as url:
            search = await sources.retrieval_time(url, searches=sizes.sources_searches)
        results["sources"] = {"quality": quality, "search": search}
        figures.extend(_figures_sources(quality, search))

    await step("pickup", do_pickup)
    await step("overhead", do_overhead)
    await step("throughput", do_throughput)
    await step("api", do_api)
    await step("memory", do_memory)
    await step("scale", do_scale)
    await step("metrics", do_metrics)
    await step("quota", do_quota)
    await step("gate", do_gate)
    await step("sources", do_sources)
    return {"figures": [f.__dict__ for f in figures], "results": results}


def print_table(report: dict[str, Any]) -> None:
    rows = [
        (f["name"], f"{f['value']:.2f} {f['unit']}", f["target"], "yes" if f["ok"] else "NO")
        for f in report["figures"]
    ]
    widths = [
        max(len(r[i]) for r in [*rows, ("figure", "measured", "target", "met")]) for i in range(4)
    ]
    header = ("figure", "measured", "target", "met")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    machine = report["machine"]
    print(
        f"\n{machine.get('cpu', '?')}, {machine['cpus']} CPUs, "
        f"{machine.get('memory_gib', '?')} GiB; Python {machine['python']}; "
        f"PostgreSQL {machine['postgres']}; mode {report['mode']}"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    if not url:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="reportsvc-bench-pg-")))
        url = embedded.start()
        print("DATABASE_URL is not set: using an embedded PostgreSQL", file=sys.stderr)
    url = normalize_database_url(url)
    try:
        only = {part for part in args.only.split(",") if part} if args.only else set()
        report = await run(url, QUICK if args.quick else FULL, only)
        report["mode"] = "quick" if args.quick else "full"
        report["machine"] = {
            **machine_info(),
            "postgres": await postgres_version(url),
            "wrk": shutil.which("wrk") is not None,
        }
    finally:
        if embedded is not None:
            embedded.destroy()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--only", default="", help="comma-separated: pickup,overhead,...")
    parser.add_argument("--output", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    report = asyncio.run(main_async(args))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    sys.exit(0 if all(f["ok"] for f in report["figures"]) else 1)


if __name__ == "__main__":
    main()
