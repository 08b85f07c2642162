"""The web front end's options, declared once: ``config.Settings`` reads them from the environment.

Torch- and Gradio-free, so the settings can import it cheaply. Each field is the setting of the
same name in upper case (``web_port`` is ``WEB_PORT``; ``port`` is ``PORT``, as hosts set it).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bots.web.proxies import parse_trusted
from vqa_engine.option_types import OptionalInt, OptionalSecret

#: where ``python main.py web`` listens when neither ``--port``, ``WEB_PORT`` nor ``PORT`` says
DEFAULT_PORT = 7860  # what Hugging Face Spaces expects
MIN_KEY_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class WebOptions(BaseModel):
    """The HTTP server (``bots.web``): the web app, ``/api/v1/answer``, health and metrics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: OptionalInt = Field(
        default=None,
        ge=0,
        le=65535,
        description="HTTP port of the web app and API, as hosts set it; python main.py serves HTTP "
        "only when PORT or WEB_PORT is set (python main.py web: 7860 by default)",
    )
    web_port: OptionalInt = Field(
        default=None,
        ge=0,
        le=65535,
        description="the HTTP port when PORT means something else (wins over PORT)",
    )
    web_host: str = Field(
        default="0.0.0.0", description="address the HTTP server listens on (127.0.0.1: this machine only)"
    )
    api_keys: OptionalSecret = Field(
        default=None,
        description="name:key pairs, e.g. alice:KEY1,bob:KEY2; when set, POST /api/v1/answer needs one "
        "(Authorization: Bearer KEY) and limits each name; unset: the API is open, limited per client IP",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="addresses or networks of the proxies in front of the server (* on a Space, where "
        "every request comes through its proxy); only their X-Forwarded-For is believed",
    )
    proxy_hops: int = Field(
        default=1,
        ge=1,
        le=16,
        description="how many proxies in front of the server append to X-Forwarded-For; the client is "
        "the entry that many places from the right (never the leftmost, which the client writes)",
    )
    web_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="seconds a request body may take to arrive; after that it is answered 408",
    )
    web_queue_size: int = Field(
        default=64,
        ge=1,
        description="web app questions waiting in Gradio's queue; beyond it the page says busy",
    )
    web_concurrency_limit: int = Field(
        default=16, ge=1, description="web app questions handled at once (the rest wait in the queue)"
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        parse_trusted(value)  # (its ProxyAddressError is a ValueError: the setting is named)
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        names: set[str] = set()
        for item in filter(None, (part.strip() for part in value.get_secret_value().split(","))):
            name, colon, key = item.partition(":")
            if not colon or not _NAME.match(name):
                # never echo the item: it may be a key
                raise ValueError("each item must be name:key (the name: letters, digits, _ . @ -)")
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"the key of {name!r} is shorter than {MIN_KEY_LENGTH} characters; make one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
                )
            if name in names:
                raise ValueError(f"the name {name!r} is used twice")
            names.add(name)
        return value if names else None

    @property
    def http_port(self) -> int | None:
        """The port to serve HTTP on, or None when neither WEB_PORT nor PORT is set."""
        return self.web_port if self.web_port is not None else self.port

    @property
    def keys(self) -> dict[str, str]:
        """``{key: name}`` for every API key (empty: the API is open)."""
        if self.api_keys is None:
            return {}
        items = (part.strip() for part in self.api_keys.get_secret_value().split(","))
        return {key: name for name, _, key in (item.partition(":") for item in items if item)}
