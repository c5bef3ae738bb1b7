"""Configuration: typed, validated at start-up, with messages that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportsvc.errors import ConfigError
from reportsvc.settings import (
    Settings,
    load_settings,
    normalize_database_url,
    redact_database_url,
)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@db:5432/reports",
        "postgres://user:pw@db:5432/reports",
        "postgresql+asyncpg://user:pw@db:5432/reports",
    ],
)
def test_database_url_accepts_what_psql_and_sqlalchemy_users_paste(url: str) -> None:
    assert normalize_database_url(url) == "postgresql://user:pw@db:5432/reports"


def test_unix_socket_urls_pass_through() -> None:
    url = "postgresql://postgres@/reports?host=/var/run/postgresql"
    assert normalize_database_url(url) == url


def test_a_non_postgres_url_is_rejected_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/reports")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "DATABASE_URL" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_bad_numbers_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "0")
    monkeypatch.setenv("LEASE_SECONDS", "soon")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "WORKER_CONCURRENCY" in caught.value.message
    assert "LEASE_SECONDS" in caught.value.message


def test_inconsistent_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_SECTIONS", "15")
    monkeypatch.setenv("MAX_SECTIONS", "10")
    with pytest.raises(ConfigError, match="DEFAULT_SECTIONS"):
        load_settings(_env_file=None)


def test_api_key_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    settings = load_settings(_env_file=None)
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("OPENAI_BASE_URL", " ")
    monkeypatch.setenv("DATABASE_URL", "")
    settings = load_settings(_env_file=None)
    assert settings.openai_api_key is None
    assert settings.openai_base_url is None
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        settings.require_database_url()


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("OPENAI_MODEL=my-model\nWORKER_CONCURRENCY=7\n")
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    monkeypatch.delenv("WORKER_CONCURRENCY", raising=False)
    settings = load_settings(_env_file=env)
    assert settings.openai_model == "my-model"
    assert settings.worker_concurrency == 7


def test_redaction_hides_only_the_password() -> None:
    assert redact_database_url("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_database_url("postgresql://u@h/d") == "postgresql://u@h/d"


def _documented(path: Path) -> dict[str, str]:
    """NAME=value pairs in .env.example, commented-out examples included."""
    found = {}
    for line in path.read_text().splitlines():
        text = line.lstrip("# ").split("  ")[0].strip()
        name, sep, value = text.partition("=")
        if sep and name.isupper() and name.replace("_", "").isalnum():
            found[name] = value
    return found


def test_env_example_documents_every_setting_and_parses() -> None:
    example = Path(__file__).parents[1] / ".env.example"
    documented = _documented(example)
    fields = {name.upper() for name in Settings.model_fields}
    assert fields <= set(documented), fields - set(documented)
    assert set(documented) <= fields, set(documented) - fields
    load_settings(_env_file=example)


def test_direct_connections_prepare_statements_and_listen() -> None:
    settings = load_settings(_env_file=None, database_url="postgresql://db/reports")
    assert settings.prepared_statements
    assert settings.listens
    assert settings.require_listen_url() == "postgresql://db/reports"


def test_behind_pgbouncer_nothing_is_prepared_by_name_and_everything_polls() -> None:
    settings = load_settings(
        _env_file=None, database_url="postgresql://pgbouncer/reports", database_pooler="pgbouncer"
    )
    assert not settings.prepared_statements
    assert not settings.listens


def test_a_listen_url_keeps_listen_beside_pgbouncer() -> None:
    settings = load_settings(
        _env_file=None,
        database_url="postgresql://pgbouncer:6432/reports",
        database_pooler="pgbouncer",
        database_listen_url="postgres://db:5432/reports",
    )
    assert not settings.prepared_statements
    assert settings.listens
    assert settings.require_listen_url() == "postgresql://db:5432/reports"


def test_listen_through_pgbouncer_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_POOLER", "pgbouncer")
    monkeypatch.setenv("LISTEN_NOTIFY", "true")
    with pytest.raises(ConfigError, match="DATABASE_LISTEN_URL"):
        load_settings(_env_file=None)


def test_listen_can_be_turned_off_on_a_direct_connection() -> None:
    settings = load_settings(_env_file=None, listen_notify=False)
    assert not settings.listens


@pytest.mark.parametrize(
    ("env", "api", "worker"),
    [
        ({}, 11, 7),
        ({"DATABASE_POOL_SIZE": "4", "WORKER_POOL_SIZE": "3"}, 5, 4),
        ({"DATABASE_POOLER": "pgbouncer"}, 10, 6),
        ({"DATABASE_POOLER": "pgbouncer", "DATABASE_LISTEN_URL": "postgresql://db/r"}, 11, 7),
    ],
)
def test_connections_per_process_follow_the_pool_sizes(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], api: int, worker: int
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert (settings.api_connections, settings.worker_connections) == (api, worker)


def test_multi_host_urls_pass_through_for_failover() -> None:
    url = "postgresql://app:pw@db1:5432,db2:5432/reports?target_session_attrs=read-write"
    assert normalize_database_url(url) == url
    assert redact_database_url(url) == (
        "postgresql://app:***@db1:5432,db2:5432/reports?target_session_attrs=read-write"
    )
