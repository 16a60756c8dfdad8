"""Configuration: secrets, production refusal, masking."""

import json

import pytest

from common.config import ConfigError, load_config


def test_development_generates_secrets_once_and_keeps_them(tmp_path):
    first = load_config(data_dir=str(tmp_path))
    second = load_config(data_dir=str(tmp_path))
    assert len(first.jwt_secret) >= 32 and first.jwt_secret != first.encryption_key
    assert (first.jwt_secret, first.encryption_key) == (second.jwt_secret, second.encryption_key)
    stored = json.loads((tmp_path / "secrets.json").read_text())
    assert stored["jwt_secret"] == first.jwt_secret
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", ["", "secret", "changeme", "short-but-random-9f8a"])
def test_production_refuses_a_missing_or_weak_jwt_secret(tmp_path, secret):
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_config(data_dir=str(tmp_path), app_env="production", jwt_secret=secret, encryption_key="k" * 40)


def test_production_refuses_a_missing_encryption_key(tmp_path):
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        load_config(data_dir=str(tmp_path), app_env="production", jwt_secret="j" * 40, encryption_key="")


def test_production_with_strong_secrets_starts_and_writes_no_secret_file(tmp_path):
    config = load_config(data_dir=str(tmp_path), app_env="production", jwt_secret="j" * 40, encryption_key="k" * 40)
    assert config.is_production
    assert not (tmp_path / "secrets.json").exists()


def test_environment_variables_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("COOKIE_SECURE", "true")
    monkeypatch.setenv("CORS_ORIGIN", "https://chat.example")
    config = load_config(data_dir=str(tmp_path))
    assert (config.port, config.cookie_secure, config.cors_origin) == (9123, True, "https://chat.example")


def test_a_non_integer_port_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT must be an integer"):
        load_config(data_dir=str(tmp_path))


def test_dotenv_file_gives_values(tmp_path, monkeypatch):
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    (tmp_path / ".env").write_text("LOG_LEVEL=debug\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(data_dir=str(tmp_path)).log_level == "DEBUG"
    monkeypatch.delenv("LOG_LEVEL", raising=False)


def test_masked_configuration_hides_secrets_and_database_password(tmp_path):
    config = load_config(data_dir=str(tmp_path), database_url="postgresql+psycopg://app:hunter2@db/parley")
    shown = json.dumps(config.masked())
    assert config.jwt_secret not in shown and config.encryption_key not in shown
    assert "hunter2" not in shown and "app:***@db" in shown
