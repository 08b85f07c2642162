"""Where one client's REST calls and gateway connections go (``DISCORD_API_BASE``,
``DISCORD_GATEWAY_URL``: a proxy, or a test's loopback Discord).

discord.py keeps Discord's addresses in class attributes (``Route.BASE``,
``DiscordWebSocket.DEFAULT_GATEWAY``); setting those would move every client in the process.
Instead, each URL built on them is rewritten on its way out of this client: REST calls in its
``HTTPClient.request``, gateway connections in its ``HTTPClient.ws_connect``, and interaction
responses in a webhook adapter that discord.py takes from a context variable, set for the tasks
of this client's connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route
from discord.webhook.async_ import AsyncWebhookAdapter, async_context


@dataclass(frozen=True)
class Endpoints:
    """The REST base (``…/api/v10``) and gateway URL to use instead of Discord's; None: Discord's."""

    api_base: str | None = None
    gateway_url: str | None = None

    def rest(self, url: str) -> str:
        """``url``, built on discord.py's REST base, on ours (any other URL as it is)."""
        if not self.api_base or not url.startswith(Route.BASE + "/"):
            return url
        return self.api_base.rstrip("/") + url[len(Route.BASE) :]

    def gateway(self, url: str) -> str:
        """discord.py's default gateway (with its query) becomes ours; a resume URL that READY
        named, or the one ``/gateway/bot`` answered, is kept."""
        parsed = yarl.URL(url)
        if not self.gateway_url or parsed.with_query(None) != DiscordWebSocket.DEFAULT_GATEWAY:
            return url
        return str(yarl.URL(self.gateway_url).with_query(parsed.query))


class RoutedHTTPClient(HTTPClient):
    """discord.py's HTTP client, sending REST calls and gateway connections to ``endpoints``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, endpoints: Endpoints) -> None:
        super().__init__(loop)
        self.endpoints = endpoints

    async def request(self, route: Route, **kwargs: Any) -> Any:
        route.url = self.endpoints.rest(route.url)  # (each call builds its own Route)
        return await super().request(route, **kwargs)

    async def ws_connect(self, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        return await super().ws_connect(self.endpoints.gateway(url), compress=compress)


class RoutedWebhookAdapter(AsyncWebhookAdapter):
    """discord.py's webhook adapter (interaction responses and follow-ups), sending to ``endpoints``."""

    def __init__(self, endpoints: Endpoints) -> None:
        super().__init__()
        self.endpoints = endpoints

    async def request(self, route: Route, session: aiohttp.ClientSession, **kwargs: Any) -> Any:
        route.url = self.endpoints.rest(route.url)
        return await super().request(route, session, **kwargs)


@contextlib.contextmanager
def webhooks_via(adapter: AsyncWebhookAdapter) -> Iterator[None]:
    """Interaction responses made by this task, and by the tasks it starts, use ``adapter``."""
    token = async_context.set(adapter)
    try:
        yield
    finally:
        async_context.reset(token)
