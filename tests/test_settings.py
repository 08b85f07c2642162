"""Settings come from the environment, then .env, then config/*.toml; secrets never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import DEFAULT_MODEL_DIR, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "MODEL_REPO_ID",
        "RATE_LIMIT",
        "ADMIN_IDS",
        "TELEGRAM_TOKEN",
        "HF_TOKEN",
        "DEVICE",
        "LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = load_settings(Settings)
    assert settings.model_repo_id == str(DEFAULT_MODEL_DIR)
    assert settings.rate_limit == "10/minute"
    assert settings.device == "auto"
    assert settings.admins == frozenset()


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RATE_LIMIT=3/hour\nADMIN_IDS=telegram:12, discord:34\nLOG_LEVEL=debug\n")
    monkeypatch.setenv("RATE_LIMIT", "5/minute")
    settings = load_settings(Settings)
    assert settings.rate_limit == "5/minute"  # the environment wins over .env
    assert settings.admins == {("telegram", "12"), ("discord", "34")}
    assert settings.log_level == "DEBUG"


def test_tokens_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", "123456:very-secret-token")
    monkeypatch.setenv("HF_TOKEN", "hf_secretsecret")
    settings = load_settings(Settings)
    assert settings.telegram_token is not None
    assert settings.telegram_token.get_secret_value() == "123456:very-secret-token"
    for text in (str(settings), repr(settings), str(settings.model_dump())):
        assert "very-secret-token" not in text and "hf_secretsecret" not in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ADMIN_IDS", "alice", "ADMIN_IDS"),
        ("RATE_LIMIT", "lots", "RATE_LIMIT"),
        ("DEVICE", "tpu", "DEVICE"),
        ("MAX_IMAGE_BYTES", "-1", "MAX_IMAGE_BYTES"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings(Settings)
