"""The chat layer's options, declared once: ``config.Settings`` reads them from the environment.

Each field is the setting of the same name in upper case (``rate_limit`` is ``RATE_LIMIT``).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from limits import parse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from vqa_engine.option_types import OptionalSecret, OptionalStr

_ADMIN = re.compile(r"^(telegram|discord|web):\d+$")
#: what Telegram accepts as a webhook's secret token
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
#: a webhook secret shorter than this is refused (Telegram allows 1 character; a guessable one
#: would let anyone post updates as Telegram)
MIN_WEBHOOK_SECRET = 16

# The defaults that constructors share with the settings (``UserQueue()``, ``ImageMemory()``, the
# adapters), each written here once:
DEFAULT_MAX_IN_FLIGHT_PER_USER = 2
DEFAULT_MAX_QUEUED_PER_USER = 5
DEFAULT_FOLLOW_UP_MINUTES = 10.0
#: earlier question/answer pairs kept per chat image for a model that writes answers (0: none)
DEFAULT_CONVERSATION_TURNS = 4
#: the most characters of those earlier turns a follow-up carries (the oldest go first)
DEFAULT_CONVERSATION_CHARS = 2000
#: messages a second to all chats together: Telegram's limit for a bot (a self-hosted Bot API
#: server, or a bot with paid broadcasts, may allow more)
DEFAULT_TELEGRAM_FLOOD_LIMIT = 30.0
#: ``SHUTDOWN_TIMEOUT_S`` (``config.settings.ServiceSettings``): how long a stopping front end
#: keeps answering the questions it already received
DEFAULT_SHUTDOWN_TIMEOUT_S = 8.0


class ChatOptions(BaseModel):
    """How the conversation core treats users (``bots.core.ChatCore``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_limit: str = Field(
        default="10/minute", description="questions per user (moving window), e.g. 10/minute, 100/hour"
    )
    max_in_flight_per_user: int = Field(
        default=DEFAULT_MAX_IN_FLIGHT_PER_USER, ge=1, description="questions of one user answered at once"
    )
    max_queued_per_user: int = Field(
        default=DEFAULT_MAX_QUEUED_PER_USER,
        ge=0,
        description="more questions of one user waiting in order; beyond it, refused",
    )
    follow_up_minutes: float = Field(
        default=DEFAULT_FOLLOW_UP_MINUTES,
        gt=0,
        description="how long a user's last image is kept for follow-up questions",
    )
    conversation_turns: int = Field(
        default=DEFAULT_CONVERSATION_TURNS,
        ge=0,
        description=(
            "earlier question/answer pairs about a chat's last image that a model writing answers "
            "reads before a follow-up question; 0: each question alone"
        ),
    )
    conversation_chars: int = Field(
        default=DEFAULT_CONVERSATION_CHARS,
        ge=0,
        description="the most characters of those earlier turns a follow-up carries; the oldest go first",
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

    telegram_token: OptionalSecret = Field(default=None, description="from @BotFather")
    telegram_base_url: OptionalStr = Field(
        default=None, description="a self-hosted Bot API server, e.g. http://localhost:8081/bot"
    )
    telegram_base_file_url: OptionalStr = Field(
        default=None, description="its file URL, e.g. http://localhost:8081/file/bot"
    )
    telegram_flood_limit: float = Field(
        default=DEFAULT_TELEGRAM_FLOOD_LIMIT,
        gt=0,
        description="messages a second this process sends at most, to all chats together; Telegram allows "
        "about 30 per bot, so with N replicas give each 30/N",
    )
    telegram_webhook_url: OptionalStr = Field(
        default=None,
        description="receive updates by webhook at this public HTTPS URL (its path is served by the HTTP "
        "server, so PORT or WEB_PORT must be set) instead of long polling; unset: long polling",
    )
    telegram_webhook_secret: OptionalSecret = Field(
        default=None,
        description=f"the webhook's secret token ({MIN_WEBHOOK_SECRET} to 256 letters, digits, _ or -): "
        "Telegram sends it with every update, anything else gets 403",
    )

    @field_validator("telegram_webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} is not a URL like https://bot.example.com/telegram")
        if parts.path in ("", "/"):
            raise ValueError(
                "the URL needs a path for the webhook route, e.g. https://bot.example.com/telegram"
            )
        if parts.path.startswith("/api/") or parts.path in ("/healthz", "/readyz", "/metrics"):
            raise ValueError(f"the path {parts.path} is taken by the HTTP API; use another, e.g. /telegram")
        return value.strip()

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        # never echo it
        if not _WEBHOOK_SECRET.match(secret):
            raise ValueError("only letters, digits, _ and - (at most 256), as Telegram allows")
        if len(secret) < MIN_WEBHOOK_SECRET:
            raise ValueError(
                f"shorter than {MIN_WEBHOOK_SECRET} characters; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramOptions:
        if self.telegram_webhook_url is not None and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET: without it anyone could post updates"
            )
        return self

    @property
    def webhook_path(self) -> str | None:
        """The HTTP route the webhook's updates arrive on: the path of ``TELEGRAM_WEBHOOK_URL``."""
        return urlsplit(self.telegram_webhook_url).path if self.telegram_webhook_url else None


class DiscordOptions(BaseModel):
    """The Discord bot (``bots.discord_bot``); it runs when ``DISCORD_TOKEN`` is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    discord_token: OptionalSecret = Field(default=None, description="from the Discord developer portal")
    discord_message_content: bool = Field(
        default=False, description="the privileged message-content intent was granted to the bot"
    )
    discord_sync_commands: bool = Field(
        default=False,
        description="register the slash commands on every start (by default only when they changed)",
    )
    discord_api_base: OptionalStr = Field(default=None, description="another Discord REST base (a proxy)")
    discord_gateway_url: OptionalStr = Field(default=None, description="another gateway URL (a proxy)")
    discord_shard_count: int | Literal["auto"] | None = Field(
        default=None,
        description="shards of the whole bot (Discord requires them from 2,500 servers); auto: as many as "
        "Discord recommends, all in this process; unset: no sharding",
    )
    discord_shard_ids: str = Field(
        default="",
        description="the shards this process runs, e.g. 0,1 (needs DISCORD_SHARD_COUNT); empty: all of them",
    )

    @field_validator("discord_shard_count", mode="before")
    @classmethod
    def _shard_count_text(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("discord_shard_count")
    @classmethod
    def _check_shard_count(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("at least 1 (or auto)")
        return value

    @field_validator("discord_shard_ids")
    @classmethod
    def _check_shard_ids(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            if not item.isdigit():
                raise ValueError(f"{item!r} is not a shard number (e.g. 0,1)")
        return value

    @model_validator(mode="after")
    def _shard_ids_within_count(self) -> DiscordOptions:
        ids = self.shard_ids
        if not ids:
            return self
        if not isinstance(self.discord_shard_count, int):
            raise ValueError(
                "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (a number): the shards of the whole bot"
            )
        beyond = [i for i in ids if i >= self.discord_shard_count]
        if beyond:
            raise ValueError(
                f"DISCORD_SHARD_IDS: shard {beyond[0]} does not exist with DISCORD_SHARD_COUNT="
                f"{self.discord_shard_count} (shards are numbered from 0)"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("DISCORD_SHARD_IDS names a shard twice")
        return self

    @property
    def shard_ids(self) -> list[int] | None:
        """The shards this process runs (None: every shard of the count, or no sharding)."""
        ids = [int(part) for part in (p.strip() for p in self.discord_shard_ids.split(",")) if part]
        return ids or None
