"""The settings: read once in ``main.py``, from the environment, ``.env`` and ``config/*.toml``.

Each part of the service declares its own options once, with defaults, limits and a description
(``vqa_engine.options.EngineOptions``, ``bots.options.ChatOptions``, …); ``Settings`` is those
parts side by side, so every option is a flat environment variable (``MAX_BATCH_SIZE``,
``RATE_LIMIT``) and ``settings.section(EngineOptions)`` hands each part exactly its own options.
A command reads only the parts it uses (``main.py ask`` does not care about ``RATE_LIMIT``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bots.options import DEFAULT_SHUTDOWN_TIMEOUT_S, ChatOptions, DiscordOptions, TelegramOptions
from bots.state.options import SharedStateOptions
from bots.web.options import WebOptions
from vqa_engine.checks.options import CheckOptions
from vqa_engine.options import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    EngineOptions,
    ModelOptions,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
#: ``.env`` beside main.py, then in the working directory (which wins where both set a key)
ENV_FILES = (ROOT / ".env", Path(".env"))

S = TypeVar("S", bound=BaseModel)
K = TypeVar("K", bound="_Sources")


class SettingsError(Exception):
    """A setting has a value we cannot use; the message names the variable."""


class ImageSettings(BaseModel):
    """The images the service accepts (the model's own options are ``ModelOptions``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    hf_token: SecretStr | None = Field(default=None, description="for private or gated Hub repos")
    max_image_bytes: int = Field(
        default=DEFAULT_MAX_IMAGE_BYTES, gt=0, description="larger files are refused"
    )
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS, gt=0, description="larger images are refused before decoding"
    )


class LogSettings(BaseModel):
    """Application logs (stderr)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="application log level (stderr)"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ServiceSettings(BaseModel):
    """The long-running service: its prediction log, its start and its stop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prediction_log: Path = Field(
        default=Path("predictions.jsonl"), description="one JSON line per question (rotated at 10 MB x 5)"
    )
    prediction_log_salt: SecretStr | None = Field(
        default=None, description="fixed salt for user hashes (stable across restarts); random if unset"
    )
    login_timeout_s: float = Field(
        default=30.0, gt=0, description="a platform that has not connected by then is reported and skipped"
    )
    shutdown_timeout_s: float = Field(
        default=DEFAULT_SHUTDOWN_TIMEOUT_S,
        ge=0,
        description="on SIGTERM, how long to keep answering questions already received",
    )


class _Sources(BaseSettings):
    """Where settings come from: environment > .env files > config/*.toml > defaults."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILES,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        protected_namespaces=(),
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=sorted(CONFIG_DIR.glob("*.toml")))
        return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    @property
    def secrets(self) -> list[str]:
        """Every secret value set (tokens, salts), for log redaction."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]

    def section(self, part: type[S]) -> S:
        """The options of one part of the service (e.g. ``EngineOptions``), from these settings."""
        return part.model_validate({name: getattr(self, name) for name in part.model_fields})


# pydantic keeps one validator of a name across the classes ``Settings`` inherits: two option
# classes with a validator of the same name would silently lose one (tests/test_settings.py checks).
class Settings(  # type: ignore[misc]  # the sections' configs merge (pydantic does it)
    _Sources,
    ModelOptions,
    ImageSettings,
    CheckOptions,
    EngineOptions,
    ChatOptions,
    TelegramOptions,
    DiscordOptions,
    WebOptions,
    SharedStateOptions,
    ServiceSettings,
    LogSettings,
):
    """Everything ``python main.py`` runs on."""

    model_config = _Sources.model_config  # not the sections' extra="forbid": other keys are ignored

    @property
    def secrets(self) -> list[str]:
        """Every secret value set, each API key on its own and the password inside ``REDIS_URL``
        (a log may quote one alone)."""
        password = self.redis_password
        return [*super().secrets, *self.keys, *([password] if password else [])]


class AskSettings(_Sources, ModelOptions, ImageSettings, CheckOptions, LogSettings):  # type: ignore[misc]
    """What ``python main.py ask`` uses: a bad ``RATE_LIMIT`` must not stop it."""

    model_config = _Sources.model_config


def load_settings(kind: type[K], **overrides: object) -> K:
    """Read the settings of ``kind`` (``Settings``, ``AskSettings``); raises ``SettingsError``
    naming each bad variable."""
    try:
        return kind(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            # (a rule across settings has no location: its message names them)
            f"{'.'.join(str(p) for p in err['loc']).upper() + ': ' if err['loc'] else ''}"
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


def env_files_read() -> list[Path]:
    """The ``.env`` files that exist (and so were read), for a DEBUG line at start-up."""
    seen: list[Path] = []
    for path in ENV_FILES:
        resolved = path.resolve()
        if resolved.is_file() and resolved not in seen:
            seen.append(resolved)
    return seen


def check_writable(path: Path, setting: str) -> None:
    """Raise ``SettingsError`` naming ``setting`` when ``path`` cannot be created or appended to."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a part of that path is a file, not a folder"
        raise SettingsError(f"{setting}={os.fspath(path)}: cannot write there ({reason})") from exc
