"""Settings come from the environment, then .env, then config/*.toml; secrets never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.options import ChatOptions
from config import DEFAULT_MODEL_DIR, AskSettings, Settings, SettingsError, load_settings
from config import settings as settings_module
from vqa_engine.options import EngineOptions


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


def test_messages_name_the_variable_without_pydantic_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT", "lots")
    with pytest.raises(SettingsError) as error:
        load_settings(Settings)
    assert str(error.value) == "invalid settings: RATE_LIMIT: 'lots' is not a rate like 10/minute or 100/hour"


def test_ask_reads_only_the_settings_it_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT", "lots")
    monkeypatch.setenv("ADMIN_IDS", "alice")
    monkeypatch.setenv("DEVICE", "CPU")
    assert load_settings(AskSettings).device == "cpu"


def test_a_dotenv_beside_main_py_is_read_and_the_working_directorys_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # by default the first place is the folder of main.py, wherever the service is started from
    assert settings_module.ENV_FILES[0] == Path(settings_module.__file__).parent.parent / ".env"
    beside = tmp_path / "install"
    beside.mkdir()
    (beside / ".env").write_text("RATE_LIMIT=3/hour\nADMIN_IDS=telegram:1\n")
    (tmp_path / ".env").write_text("RATE_LIMIT=4/hour\n")  # the working directory (see the fixture)
    monkeypatch.setattr(settings_module, "ENV_FILES", (beside / ".env", Path(".env")))
    settings = load_settings(Settings, _env_file=settings_module.ENV_FILES)
    assert (settings.rate_limit, settings.admin_ids) == ("4/hour", "telegram:1")
    assert settings_module.env_files_read() == [beside / ".env", tmp_path / ".env"]


def test_each_part_gets_exactly_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("MAX_QUEUED_PER_USER", "0")
    settings = load_settings(Settings)
    assert settings.section(EngineOptions) == EngineOptions(max_batch_size=7)
    assert settings.section(ChatOptions).max_queued_per_user == 0


def test_blank_urls_and_revision_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TELEGRAM_BASE_URL", "DISCORD_API_BASE", "MODEL_REVISION", "PORT"):
        monkeypatch.setenv(name, "  ")
    settings = load_settings(Settings)
    assert settings.telegram_base_url is None and settings.discord_api_base is None
    assert settings.model_revision is None and settings.port is None
