"""The chat layer's options, declared once: ``config.Settings`` reads them from the environment.

Each field is the setting of the same name in upper case (``rate_limit`` is ``RATE_LIMIT``).
"""

from __future__ import annotations

import re

from limits import parse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_ADMIN = re.compile(r"^(telegram|discord|web):\d+$")


# Validator names are unique across the option models: ``config.Settings`` inherits them all, and
# pydantic keeps only one validator of a name.


class ChatOptions(BaseModel):
    """How the conversation core treats users (``bots.core.ChatCore``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_limit: str = Field(
        default="10/minute", description="questions per user (moving window), e.g. 10/minute, 100/hour"
    )
    max_in_flight_per_user: int = Field(default=2, ge=1, description="questions of one user answered at once")
    max_queued_per_user: int = Field(
        default=5, ge=0, description="more questions of one user waiting in order; beyond it, refused"
    )
    follow_up_minutes: float = Field(
        default=10.0, gt=0, description="how long a user's last image is kept for follow-up questions"
    )
    admin_ids: str = Field(
        default="", description="who may use /health and /stats, e.g. telegram:123,discord:456"
    )

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like 10/minute or 100/hour") from None
        return value

    @field_validator("admin_ids")
    @classmethod
    def _check_admins(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            if not _ADMIN.match(item):
                raise ValueError(f"{item!r} is not platform:id (e.g. telegram:123 or discord:456)")
        return value

    @property
    def admins(self) -> frozenset[tuple[str, str]]:
        """``{("telegram", "123"), ...}``."""
        items = (part.strip() for part in self.admin_ids.split(","))
        return frozenset((p, i) for p, _, i in (item.partition(":") for item in items if item))


class TelegramOptions(BaseModel):
    """The Telegram bot (``bots.telegram_bot``); it runs when ``TELEGRAM_TOKEN`` is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    telegram_token: SecretStr | None = Field(default=None, description="from @BotFather")
    telegram_base_url: str | None = Field(
        default=None, description="a self-hosted Bot API server, e.g. http://localhost:8081/bot"
    )
    telegram_base_file_url: str | None = Field(
        default=None, description="its file URL, e.g. http://localhost:8081/file/bot"
    )

    @field_validator("telegram_base_url", "telegram_base_file_url", mode="before")
    @classmethod
    def _blank_telegram_url_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class DiscordOptions(BaseModel):
    """The Discord bot (``bots.discord_bot``); it runs when ``DISCORD_TOKEN`` is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    discord_token: SecretStr | None = Field(default=None, description="from the Discord developer portal")
    discord_message_content: bool = Field(
        default=False, description="the privileged message-content intent was granted to the bot"
    )
    discord_sync_commands: bool = Field(
        default=False,
        description="register the slash commands on every start (by default only when they changed)",
    )
    discord_api_base: str | None = Field(default=None, description="another Discord REST base (a proxy)")
    discord_gateway_url: str | None = Field(default=None, description="another gateway URL (a proxy)")

    @field_validator("discord_api_base", "discord_gateway_url", mode="before")
    @classmethod
    def _blank_discord_url_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
