"""The deployment files stay consistent with the code (no Docker engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from reportsvc.cli import main
from reportsvc.settings import Settings

ROOT = Path(__file__).parents[1]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_postgres_migrate_api_and_workers() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "api", "worker"}
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
    for name in ("postgres", "api", "worker"):
        assert "healthcheck" in services[name], name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_compose_commands_exist_and_settings_are_known() -> None:
    runner = CliRunner()
    fields = {name.upper() for name in Settings.model_fields}
    for service in compose()["services"].values():
        command = service.get("command")
        if command and command[0] == "reportsvc":
            result = runner.invoke(main, [*command[1:2], "--help"])
            assert result.exit_code == 0, result.output
        for name in service.get("environment", {}):
            if not name.startswith("POSTGRES_"):
                assert name in fields, name
