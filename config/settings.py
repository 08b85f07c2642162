"""The one settings object, read once in ``main.py`` and passed to whatever needs it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vqa_engine.options import BackendName, ModelOptions, Quantize  # issue 11

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DEFAULT_MODEL_DIR = ROOT / "models" / "easy-vqa-film"
_ADMIN = re.compile(r"^(telegram|discord):\d+$")
_RATE = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*$", re.IGNORECASE)


class SettingsError(Exception):
    """A setting has a value we cannot use; the message names the variable."""


class Settings(BaseSettings):
    """Every knob of the service. Secrets are ``SecretStr``: printing settings never shows them."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        protected_namespaces=(),
    )

    # the model
    model_repo_id: str = Field(default=str(DEFAULT_MODEL_DIR), description="Hub repo id or local folder")
    model_revision: str | None = Field(default=None, description="branch, tag or commit on the Hub")
    hf_token: SecretStr | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # the engine: micro-batching, backpressure, cache (see vqa_engine.options.EngineOptions)
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    max_queue: int = Field(default=512, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    cache_size: int = Field(default=1024, ge=0)
    preprocess_threads: int = Field(default=1, ge=1, le=64)
    torch_threads: int = Field(default=0, ge=0, description="intra-op threads; 0: torch's default")
    # issue 11: how the model runs (declared once in vqa_engine.options.ModelOptions)
    model_backend: BackendName = ModelOptions.setting("model_backend")
    quantize: Quantize = ModelOptions.setting("quantize")
    num_beams: int = ModelOptions.setting("num_beams")
    # chat platforms
    discord_token: SecretStr | None = None
    telegram_token: SecretStr | None = None
    discord_message_content: bool = Field(
        default=False, description="the privileged message-content intent was granted to the bot"
    )
    discord_api_base: str | None = None  # another Discord REST base (a proxy; tests)
    discord_gateway_url: str | None = None  # another gateway URL (a proxy; tests)
    telegram_base_url: str | None = None
    telegram_base_file_url: str | None = None
    admin_ids: str = Field(default="", description="e.g. telegram:123,discord:456")
    rate_limit: str = "10/minute"
    max_in_flight_per_user: int = Field(default=2, ge=1)
    follow_up_minutes: float = Field(
        default=10.0, gt=0, description="how long an image is kept for follow-ups"
    )
    # logs
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    prediction_log: Path = Path("predictions.jsonl")
    prediction_log_salt: SecretStr | None = None  # fixed salt: a user hashes the same across restarts

    @property
    def secrets(self) -> list[str]:
        """Every secret value set, for log redaction."""
        values = (self.telegram_token, self.discord_token, self.hf_token, self.prediction_log_salt)
        return [v.get_secret_value() for v in values if v is not None]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_files = sorted(CONFIG_DIR.glob("*.toml"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_files)
        return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    @field_validator("log_level", "device", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return (
            value.upper()
            if value.lower() in ("debug", "info", "warning", "error", "critical")
            else value.lower()
        )

    @field_validator("admin_ids")
    @classmethod
    def _check_admins(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            if not _ADMIN.match(item):
                raise ValueError(f"{item!r} is not platform:id (e.g. telegram:123 or discord:456)")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        if not _RATE.match(value):
            raise ValueError(f"{value!r} is not a rate like 10/minute or 100/hour")
        return value

    @field_validator(
        "model_revision",
        "telegram_base_url",
        "telegram_base_file_url",
        "discord_api_base",
        "discord_gateway_url",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def admins(self) -> frozenset[tuple[str, str]]:
        """``{("telegram", "123"), ...}`` parsed from ``ADMIN_IDS``."""
        items = (part.strip() for part in self.admin_ids.split(","))
        return frozenset(tuple(item.split(":", 1)) for item in items if item)  # type: ignore[misc]


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raises ``SettingsError`` naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
