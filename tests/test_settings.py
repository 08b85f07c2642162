"""Settings come from the environment, then .env, then config/*.toml; secrets never print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

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
        "REDIS_URL",
        "DISCORD_SHARD_COUNT",
        "DISCORD_SHARD_IDS",
        "TELEGRAM_WEBHOOK_URL",
        "TELEGRAM_WEBHOOK_SECRET",
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


# -- scaling: shared state, webhooks, shards --------------------------------------------------------

WEBHOOK = {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram"}
WEBHOOK_SECRET = {"TELEGRAM_WEBHOOK_SECRET": "a-secret-of-24-characters"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL: the scheme must be one of redis, rediss, unix"),
        ({"REDIS_URL": "redis://:hunter2-pass@cache:port"}, "REDIS_URL: not a URL like redis://HOST:6379/0"),
        ({"REDIS_URL": "redis://:hunter2-pass@/0"}, "REDIS_URL: the URL needs a host"),
        ({"REDIS_PREFIX": "my app"}, "REDIS_PREFIX: 1 to 32 letters"),
        ({"REDIS_TIMEOUT_S": "0"}, "REDIS_TIMEOUT_S"),
        ({"DISCORD_SHARD_IDS": "0,1"}, "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (a number)"),
        (
            {"DISCORD_SHARD_COUNT": "auto", "DISCORD_SHARD_IDS": "0"},
            "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT",
        ),
        (
            {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "1,2"},
            "DISCORD_SHARD_IDS: shard 2 does not exist with DISCORD_SHARD_COUNT=2",
        ),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "1,1"}, "DISCORD_SHARD_IDS names a shard twice"),
        ({"DISCORD_SHARD_COUNT": "0"}, "DISCORD_SHARD_COUNT: at least 1"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "one"}, "DISCORD_SHARD_IDS: 'one' is not a shard"),
        (WEBHOOK, "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET"),
        (
            {"TELEGRAM_WEBHOOK_URL": "ftp://bot.example.com/telegram", **WEBHOOK_SECRET},
            "TELEGRAM_WEBHOOK_URL: 'ftp://bot.example.com/telegram' is not a URL",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/api/v1/answer", **WEBHOOK_SECRET},
            "the path /api/v1/answer is taken by the HTTP API",
        ),
        (
            {**WEBHOOK, "TELEGRAM_WEBHOOK_SECRET": "hunter2 pass with spaces"},
            "TELEGRAM_WEBHOOK_SECRET: only letters, digits, _ and -",
        ),
    ],
)
def test_scaling_settings_that_cannot_work_are_named_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings(Settings)
    assert message in str(error.value)
    assert "hunter2" not in str(error.value)


def test_scaling_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", " redis://:p%40ss-w0rd@cache:6380/2 ")
    monkeypatch.setenv("DISCORD_SHARD_COUNT", " AUTO ")
    for name, value in {**WEBHOOK, **WEBHOOK_SECRET}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(Settings)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://:p%40ss-w0rd@cache:6380/2"
    assert settings.redis_password == "p@ss-w0rd"
    assert {"redis://:p%40ss-w0rd@cache:6380/2", "p@ss-w0rd", "a-secret-of-24-characters"} <= set(
        settings.secrets
    )
    assert settings.discord_shard_count == "auto" and settings.shard_ids is None
    assert settings.webhook_path == "/telegram"
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "2, 3")
    settings = load_settings(Settings)
    assert (settings.discord_shard_count, settings.shard_ids) == (4, [2, 3])


def test_without_redis_url_nothing_is_shared() -> None:
    settings = load_settings(Settings)
    assert settings.redis_url is None and settings.redis_password is None
    assert settings.discord_shard_count is None and settings.telegram_webhook_url is None


def test_blank_tokens_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """So that one service of a deployment can leave a platform to another (compose.yaml)."""
    monkeypatch.setenv("TELEGRAM_TOKEN", "")
    monkeypatch.setenv("DISCORD_TOKEN", "  ")
    settings = load_settings(Settings)
    assert settings.telegram_token is None and settings.discord_token is None


BLANK_MEANS_UNSET = (
    "TELEGRAM_TOKEN",
    "TELEGRAM_BASE_URL",
    "TELEGRAM_BASE_FILE_URL",
    "TELEGRAM_WEBHOOK_URL",
    "TELEGRAM_WEBHOOK_SECRET",
    "DISCORD_TOKEN",
    "DISCORD_API_BASE",
    "DISCORD_GATEWAY_URL",
    "REDIS_URL",
    "MODEL_REVISION",
    "PORT",
    "WEB_PORT",
    "API_KEYS",
)


def test_every_optional_setting_is_unset_when_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BLANK_MEANS_UNSET:
        monkeypatch.setenv(name, " ")
    settings = load_settings(Settings)
    assert {name: getattr(settings, name.lower()) for name in BLANK_MEANS_UNSET} == dict.fromkeys(
        BLANK_MEANS_UNSET
    )


def test_settings_keep_every_validator_of_their_parts() -> None:
    """pydantic keeps one validator of a name across the classes a model inherits: two option
    classes with a validator of the same name would silently lose one."""

    def function(decorator: Any) -> object:
        return getattr(decorator.func, "__func__", decorator.func)

    for kind in (Settings, AskSettings):
        kept = kind.__pydantic_decorators__
        for part in kind.__mro__[1:]:
            if part is BaseModel or not (isinstance(part, type) and issubclass(part, BaseModel)):
                continue
            for group in ("field_validators", "model_validators"):
                for name, decorator in getattr(part.__pydantic_decorators__, group).items():
                    assert function(getattr(kept, group)[name]) is function(decorator), (
                        f"{part.__name__}.{name}"
                    )
