"""Shared state's options, declared once: ``config.Settings`` reads them from the environment.

Torch- and redis-free, so the settings can import it cheaply. Each field is the setting of the
same name in upper case (``redis_url`` is ``REDIS_URL``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from vqa_engine.option_types import OptionalSecret

#: the URL schemes redis-py opens
REDIS_SCHEMES = ("redis", "rediss", "unix")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

# The defaults that ``RedisLink`` shares with the settings, each written here once:
DEFAULT_REDIS_PREFIX = "vqa"
DEFAULT_REDIS_TIMEOUT_S = 0.5
DEFAULT_REDIS_RETRY_MAX_S = 10.0


class SharedStateOptions(BaseModel):
    """Shared state (``bots.state``): rate limits, queue counts, follow-up images, cached answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: OptionalSecret = Field(
        default=None,
        description="e.g. redis://:PASSWORD@redis:6379/0; every process with the same URL shares rate "
        "limits, per-user counts, follow-up images, cached answers and Telegram update ids; unset: this "
        "process only",
    )
    redis_prefix: str = Field(
        default=DEFAULT_REDIS_PREFIX,
        description="the namespace of every key (several deployments may share one Redis)",
    )
    redis_timeout_s: float = Field(
        default=DEFAULT_REDIS_TIMEOUT_S,
        gt=0,
        le=30,
        description="a Redis call slower than this counts as Redis being down",
    )
    redis_retry_max_s: float = Field(
        default=DEFAULT_REDIS_RETRY_MAX_S,
        gt=0,
        le=600,
        description="while Redis is down, the longest wait between two reconnects",
    )
    redis_cache_size: int = Field(
        default=100_000, ge=0, description="answers kept in the shared cache at most (0: no shared cache)"
    )
    redis_cache_ttl_s: int = Field(
        default=86_400, ge=1, description="how long an answer stays in the shared cache (seconds)"
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # never echo the URL: it may hold a password
        try:
            parts = urlsplit(value.get_secret_value().strip())
            _ = parts.port  # raises ValueError when it is not a port number
        except ValueError:
            raise ValueError("not a URL like redis://HOST:6379/0 (the port must be a number)") from None
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(f"the scheme must be one of {', '.join(REDIS_SCHEMES)} (redis://HOST:6379/0)")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("the URL needs a host, e.g. redis://localhost:6379/0")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("redis_prefix")
    @classmethod
    def _check_redis_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError("1 to 32 letters, digits, _ . or -")
        return value

    @property
    def redis_password(self) -> str | None:
        """The password inside ``REDIS_URL`` (for log redaction: a library may print it alone)."""
        if self.redis_url is None:
            return None
        password = urlsplit(self.redis_url.get_secret_value()).password
        return unquote(password) if password else None
