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
