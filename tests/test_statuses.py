"""Statuses and kinds are defined once (`reportsvc.domain`): the database's CHECK
constraints and every literal in the queue's SQL must agree with those enums."""

from __future__ import annotations

import re
from importlib.resources import files

import asyncpg
import pytest

from reportsvc.domain import ACTIVE_JOB_STATUSES, JobStatus, StepKind, StepStatus
from reportsvc.queue.sql import parse_queries

SQL_FILES = sorted(p.name for p in files("reportsvc.queue").iterdir() if p.name.endswith(".sql"))
STATUSES = {s.value for s in JobStatus} | {s.value for s in StepStatus}
KINDS = {k.value for k in StepKind}

_COMPARED = re.compile(r"\b(status|kind)\s*(?:=|<>)\s*'(\w+)'")
_LISTED = re.compile(r"\b(status|kind)\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_ASSIGNED = re.compile(r"\b(status)\s*=\s*CASE\b(.*?)\bEND\b", re.DOTALL)
_LITERAL = re.compile(r"'(\w+)'")


def _literals(sql: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"status": set(), "kind": set()}
    for column, value in _COMPARED.findall(sql):
        found[column].add(value)
    for column, listed in _LISTED.findall(sql):
        found[column.lower()] |= set(_LITERAL.findall(listed))
    for column, case in _ASSIGNED.findall(sql):
        # Only the values assigned, not the ones compared inside the CASE's conditions.
        found[column] |= set(re.findall(r"\b(?:THEN|ELSE)\s+'(\w+)'", case))
    return found


@pytest.mark.parametrize("filename", SQL_FILES)
def test_every_status_and_kind_in_the_sql_is_one_the_enums_define(filename: str) -> None:
    text = files("reportsvc.queue").joinpath(filename).read_text("utf-8")
    for name, sql in parse_queries(text).items():
        found = _literals(sql)
        assert found["status"] <= STATUSES, (filename, name, found["status"] - STATUSES)
        assert found["kind"] <= KINDS, (filename, name, found["kind"] - KINDS)


def test_the_scanner_sees_literals() -> None:
    found = _literals(
        "UPDATE steps SET status = CASE WHEN j.status IN ('outlining') THEN 'running' "
        "ELSE 'cancelled' END WHERE kind = 'outline' AND status <> 'done'"
    )
    assert found == {"status": {"outlining", "running", "cancelled", "done"}, "kind": {"outline"}}


async def test_check_constraints_match_the_enums(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint
           WHERE conname IN ('jobs_status_check', 'steps_status_check', 'steps_kind_check')"""
    )
    allowed = {r["conname"]: set(_LITERAL.findall(r["definition"])) for r in rows}
    assert allowed == {
        "jobs_status_check": {s.value for s in JobStatus},
        "steps_status_check": {s.value for s in StepStatus},
        "steps_kind_check": KINDS,
    }


async def test_the_admission_function_counts_the_active_statuses(pool: asyncpg.Pool) -> None:
    """reportsvc_admit (migration 0005) spells the active set in its queries: it must be
    the one the enums define."""
    definition = await pool.fetchval("SELECT pg_get_functiondef('reportsvc_admit'::regproc)")
    listed = [set(_LITERAL.findall(group)) for _, group in _LISTED.findall(definition)]
    assert listed
    assert all(group == {s.value for s in ACTIVE_JOB_STATUSES} for group in listed)
