"""A loopback Discord (gateway, REST API, CDN) that the real, unmodified discord.py (2.7.1) talks to.

The adapter is pointed at it by its REST base and gateway URL (:attr:`FakeDiscord.api_base`,
:attr:`FakeDiscord.gateway_url`: ``DiscordAdapter(api_base=..., gateway_url=...)``, or the
variables of :meth:`FakeDiscord.env` for a ``python main.py`` child); a bare discord.py client, by
two class attributes that :meth:`FakeDiscord.patch_discord` sets for a while:
``discord.http.Route.BASE`` (REST) and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``. A plain
``Client`` never asks ``/gateway/bot``; it resumes at READY's ``resume_gateway_url``. What it
speaks, and so what the fake speaks:

- shards: an ``AutoShardedClient`` without a shard count asks ``GET /gateway/bot`` (the fake
  recommends :attr:`~FakeDiscord.recommended_shards`), then opens one connection per shard, each
  IDENTIFYing with ``shard: [id, count]``; READY echoes it and lists that shard's guilds only
  (``(guild_id >> 22) % count``, as Discord assigns them), and each event goes to its guild's
  shard (DMs to shard 0), queued until that shard has identified. Unsharded clients are shard 0 of 1.

- start-up: ``GET /users/@me`` (a wrong token: 401, ``LoginFailure``), ``GET
  /oauth2/applications/@me``; then the gateway: HELLO (op 10) -> IDENTIFY (op 2) -> READY ->
  GUILD_CREATE per guild; heartbeat (op 1) -> ACK (op 11). The client asks for zlib-stream but
  reads text frames as plain JSON, so the fake sends plain text. ``on_ready`` fires
  ``guild_ready_timeout`` after the last GUILD_CREATE (2 s by default: lower it in tests).
- intents, as Discord applies them: no guild messages without GUILD_MESSAGES, no DMs without
  DIRECT_MESSAGES; without MESSAGE_CONTENT a guild message from someone else that does not
  mention the bot arrives with empty content, attachments, embeds and components (its
  referenced message too; REST redacts the same way unless the application was granted the
  intent). A privileged intent the application was not granted (``privileged=``) closes the
  gateway with 4014, a wrong token with 4004.
- reconnects: after a close with 4000 (:meth:`~FakeDiscord.drop_connection`) the client RESUMEs
  and the fake replays the events it missed, then RESUMED; an unknown session gets op 9, after
  which the client IDENTIFYs again once its ``before_identify_hook`` (5 s by default) returns.
- payloads carry what discord.py parses (an exception while it parses a dispatched event kills
  its connection task): INTERACTION_CREATE needs ``attachment_size_limit``; ids in
  ``message_reference`` arrive as integers.
- REST under ``/api/v10``, always ``Content-Type: application/json`` exactly (aiohttp's
  ``json_response`` adds ``; charset=utf-8`` and discord.py then reads the body as a str):
  ``POST /channels/{id}/messages`` (JSON or multipart with ``payload_json``; ``message_reference``
  with ``fail_if_not_exists``, ``allowed_mentions``, ``components``), ``POST
  /channels/{id}/typing``, ``GET /channels/{id}/messages/{id}``, ``POST
  /interactions/{id}/{token}/callback`` (types 4 answer, 5 defer, 6 deferred update, 7 update the
  clicked message; ``?with_response=``), ``POST /webhooks/{app}/{token}`` (a follow-up; the first
  after a defer replaces the "thinking..." message), ``PATCH /webhooks/{app}/{token}/messages/@original``,
  ``GET`` and ``PUT /applications/{app}/commands`` (``tree.sync()``). Errors are Discord's JSON
  (``{"message", "code"}``): 401, Unknown Channel (10003), Unknown Message (10008), Cannot send an
  empty message (50006), Invalid Form Body (50035: content over 2000 characters, a reply to a
  missing message with ``fail_if_not_exists``), Unknown interaction (10062: a first response
  after 3 s), Interaction has already been acknowledged (40060), Invalid Webhook Token (50027: a
  follow-up after the token's 15 minutes). Any other route: 404 ``{"message": "404: Not Found"}``.
- a CDN for attachments; an attachment may declare a ``size`` larger than the bytes it serves.

Users act through :meth:`~FakeDiscord.send_message`, :meth:`~FakeDiscord.interaction` (a slash
command; an attachment option resolves through ``data.resolved.attachments``),
:meth:`~FakeDiscord.click` (a button: INTERACTION_CREATE type 3) and
:meth:`~FakeDiscord.delete_message`. Each builds a valid payload and dispatches it, or queues it
until the client identifies (or, while it is disconnected, until it resumes).

Faults (see ``tests/loopback.py``): ``fail_next(CREATE_MESSAGE, status=503)``; a 429 carries
``retry_after`` and the ``Via`` header discord.py wants before it waits and retries (it retries
500/502/504 itself after 1, 3, 5... s); ``hang("GET /users/@me")`` for a login that never
returns, ``hang(GATEWAY)`` for a gateway that accepts the websocket and never says HELLO;
:meth:`~FakeDiscord.expire_interaction`. Gateway events are recorded too (``GATEWAY``,
``IDENTIFY``, ``RESUME``, ``READY``, ``RESUMED``, ``CLOSE``...), so ``wait_for`` covers them.
Everything runs on the event loop that started the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yarl
from aiohttp import BodyPartReader, WSMsgType, web

from tests import loopback
from tests.loopback import DIRECT, DOWNLOAD, Failure, LoopbackServer, Outbox, UploadedFile

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # what an interaction allows a bot to upload
INTERACTION_DEADLINE = 3.0  # seconds Discord waits for an interaction's first response
TOKEN_LIFETIME = 15 * 60.0  # seconds an interaction token takes follow-ups

# routes and gateway records
CREATE_MESSAGE = "POST /channels/{channel_id}/messages"
TYPING = "POST /channels/{channel_id}/typing"
CALLBACK = "POST /interactions/{id}/{token}/callback"
GATEWAY = "gateway"  # a websocket accepted (params: its path)
IDENTIFY, RESUME, HEARTBEAT = "gateway IDENTIFY", "gateway RESUME", "gateway HEARTBEAT"  # params: "d"
READY = "gateway READY"  # READY and every GUILD_CREATE written
RESUMED = "gateway RESUMED"  # the missed events replayed and RESUMED written
CLOSE = "gateway close"  # the fake closed a connection (params: the code)

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11
INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES, INTENT_MESSAGE_CONTENT = 1 << 9, 1 << 12, 1 << 15
PRIVILEGED_INTENTS = {"members": 1 << 1, "presences": 1 << 8, "message_content": INTENT_MESSAGE_CONTENT}
# the application flags that tell the client which privileged intents it was granted
_APP_FLAGS = {"presences": 1 << 13, "members": 1 << 15, "message_content": 1 << 19}
FLAG_EPHEMERAL, FLAG_LOADING = 1 << 6, 1 << 7
TYPE_DEFAULT, TYPE_REPLY, TYPE_CHAT_INPUT_COMMAND = 0, 19, 20
# view, send, embed, attach, history, reactions, application commands
MEMBER_PERMISSIONS = (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
_OPTION_TYPES = ((bool, 5), (int, 4), (float, 10), (str, 3))
_USER_MENTION_RE = re.compile(r"<@!?(\d+)>")
_COMMAND_NAME_RE = re.compile(r"^[-_a-z0-9]{1,32}$")
_DEFAULT_MESSAGES = {
    401: "401: Unauthorized",
    403: "Missing Permissions",
    404: "404: Not Found",
    429: "You are being rate limited.",
}


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # not web.json_response: its "application/json; charset=utf-8" makes discord.py read a str
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers
    )


@dataclass
class SentMessage(loopback.SentMessage):
    """A message the bot created (``POST /channels/{id}/messages``); ``message`` is the JSON it got back."""

    channel_id: int
    payload: JSON  # the request body (``payload_json`` for multipart)
    files: list[UploadedFile]

    @property
    def id(self) -> int:
        return int(self.message["id"])

    @property
    def content(self) -> str | None:
        return self.payload.get("content")

    @property
    def message_reference(self) -> JSON | None:
        """As sent (discord.py sends integer ids)."""
        return self.payload.get("message_reference")

    @property
    def reply_to(self) -> int | None:
        """The id of the message this one replies to, if it does."""
        ref = self.message_reference
        return int(ref["message_id"]) if ref and ref.get("message_id") is not None else None


@dataclass
class InteractionResponse:
    """A first response to an interaction (``POST /interactions/{id}/{token}/callback``)."""

    interaction_id: int
    type: int  # 4 message, 5 deferred ("thinking..."), 6 deferred update, 7 update the message
    data: JSON
    at: float
    files: list[UploadedFile] = field(default_factory=list)  # uploaded with a type 4 response

    @property
    def content(self) -> str | None:
        return self.data.get("content")

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)


@dataclass
class Followup:
    """A follow-up (``POST /webhooks/{app}/{token}``) or an edit of the original response (``PATCH``)."""

    interaction_id: int
    payload: JSON
    message: JSON
    at: float
    edit_of: str | None = None  # "@original" for a PATCH, None for a follow-up

    @property
    def content(self) -> str | None:
        return self.payload.get("content")

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.message.get("flags") or 0) & FLAG_EPHEMERAL)


@dataclass
class FakeAttachment:
    """The bytes behind an attachment; ``size`` (declared) may exceed ``len(data)``."""

    id: int
    filename: str
    content_type: str | None
    data: bytes
    size: int


@dataclass
class _Interaction:
    id: int
    token: str
    payload: JSON
    delivered: float | None = None  # when INTERACTION_CREATE was written to the client
    responded: InteractionResponse | None = None
    original: JSON | None = None  # the message the response made (or, type 7, updated)
    expired: bool = False  # past the 3 s for a first response
    token_expired: bool = False  # past the 15 min a token lives


Outgoing = str | Callable[[], object] | None  # a frame, something to run once written, or "stop"


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[Outgoing]
    session: _Session | None = None
    live: bool = True


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    # (seq, frame, run once written) for every event dispatched, for RESUME replays
    events: list[tuple[int, str, Callable[[], None] | None]] = field(default_factory=list)
    connection: _Connection | None = None


class _ApiError(Exception):
    """Becomes a Discord JSON error response."""

    def __init__(
        self, status: int, message: str, code: int = 0, *, errors: JSON | None = None, retry_after: float = 0
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors, self.retry_after = (
            status,
            message,
            code,
            errors,
            retry_after,
        )

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        headers = None
        if self.status == 429:  # a Discord 429 (with Via), not a Cloudflare one
            body.update(retry_after=self.retry_after, **{"global": False})
            headers = {"Via": "1.1 google", "Retry-After": str(self.retry_after), "X-RateLimit-Scope": "user"}
        return _json(body, self.status, headers)


def _form_error(field_name: str, code: str, message: str) -> _ApiError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return _ApiError(400, "Invalid Form Body", 50035, errors=errors)


def _injected(failure: Failure) -> _ApiError:
    message = failure.message or _DEFAULT_MESSAGES.get(failure.status, f"{failure.status}: Error")
    retry_after = failure.retry_after if failure.retry_after is not None else 0.05
    return _ApiError(failure.status, message, failure.code, retry_after=retry_after)


Handler = Callable[[web.Request, Any, list[UploadedFile]], web.Response]


class FakeDiscord(LoopbackServer):
    """Discord on 127.0.0.1 (a free port): ``async with FakeDiscord() as fake: ...``."""

    def __init__(
        self,
        token: str = "ZmFrZS1kaXNjb3Jk.fake.token",
        *,
        bot_id: int = 1_100_000_000_000_000_001,
        owner_id: int = 1_100_000_000_000_000_002,
        privileged: Iterable[str] = ("members", "presences", "message_content"),
        heartbeat_interval: float = 41.25,
    ) -> None:
        super().__init__()
        unknown = set(privileged) - set(PRIVILEGED_INTENTS)
        if unknown:
            raise ValueError(
                f"unknown privileged intents {sorted(unknown)}; known: {sorted(PRIVILEGED_INTENTS)}"
            )
        self.token = token
        self.bot_id = self.application_id = bot_id
        self.owner_id = owner_id
        #: privileged intents the application was granted in the developer portal
        self.privileged = frozenset(privileged)
        self.heartbeat_interval = heartbeat_interval
        #: seconds within which an interaction must get its first response (None: no deadline)
        self.interaction_deadline: float | None = INTERACTION_DEADLINE
        self.bot_user: JSON = {
            "id": str(bot_id),
            "username": "vqa-test-bot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
        }
        self.outbox: Outbox[SentMessage] = Outbox(self.recorder)
        self.interaction_responses: list[InteractionResponse] = []
        self.followups: list[Followup] = []
        self.commands: list[JSON] = []  # the global application commands
        self.guilds: dict[int, JSON] = {}
        self.users: dict[int, JSON] = {}
        self.channels: dict[int, JSON] = {}
        self.messages: dict[int, JSON] = {}  # every message (users' and the bot's) by id
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, _Interaction] = {}
        self._dm_by_user: dict[int, int] = {}
        #: what ``GET /gateway/bot`` recommends (an AutoShardedClient without a count runs that many)
        self.recommended_shards = 1
        self.shard_count = 1  # as the clients identified
        # events for shards that have not identified yet
        self._pending: list[tuple[str, JSON, Callable[[], None] | None]] = []
        self._sessions: dict[int, _Session] = {}  # by shard id
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_snowflake = 0
        self._counter = itertools.count()

    # -- lifetime and addresses --------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/", self._handle_gateway)
        router.add_get("/resume", self._handle_gateway)
        router.add_get("/attachments/{channel}/{id}/{filename}", self._handle_cdn)
        routes: list[tuple[str, Handler, bool]] = [
            ("GET /users/@me", self._get_me, True),
            ("GET /gateway/bot", self._get_gateway_bot, True),
            ("GET /oauth2/applications/@me", self._get_application, True),
            (CREATE_MESSAGE, self._create_message, True),
            ("GET /channels/{channel_id}/messages/{message_id}", self._get_message, True),
            (TYPING, self._typing, True),
            (CALLBACK, self._interaction_callback, False),
            ("POST /webhooks/{app_id}/{token}", self._create_followup, False),
            ("PATCH /webhooks/{app_id}/{token}/messages/@original", self._edit_original, False),
            ("GET /applications/{app_id}/commands", self._get_commands, True),
            ("PUT /applications/{app_id}/commands", self._put_commands, True),
        ]
        for route, handler, auth in routes:
            method, path = route.split(" ", 1)
            router.add_route(method, API_PREFIX + path, self._endpoint(route, handler, auth))
        router.add_route("*", API_PREFIX + "/{tail:.*}", self._unknown)

    async def on_stop(self) -> None:
        for conn in list(self._connections):
            self._close(conn, 1001, record=False)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=3)

    @property
    def api_base(self) -> str:
        """The REST base (``DISCORD_API_BASE``; for a bare client, ``discord.http.Route.BASE``)."""
        return f"{self.root}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The gateway (``DISCORD_GATEWAY_URL``; for a bare client, ``DiscordWebSocket.DEFAULT_GATEWAY``)."""
        return f"ws://127.0.0.1:{self.port}/"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py (in this process) at the fake while the ``with`` block runs."""
        import discord.gateway
        import discord.http

        old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old

    def env(self) -> dict[str, str]:
        """Environment for a ``python main.py`` child process talking to this fake."""
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            **DIRECT,
        }

    # -- ids, users, guilds, channels, attachments -------------------------------------------------

    def snowflake(self) -> int:
        """A fresh, increasing Discord id whose timestamp is now."""
        value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._counter) & 0xFFF)
        self._last_snowflake = value = max(value, self._last_snowflake + 1)
        return value

    def add_user(self, user_id: int, username: str | None = None) -> JSON:
        """Register (or rename) a user; unknown users become ``user<id>`` on first use."""
        name = username or f"user{user_id}"
        user: JSON = {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name}
        self.users[user_id] = {**user, "avatar": None, "bot": False}
        return self.users[user_id]

    def user(self, user_id: int) -> JSON:
        if user_id == self.bot_id:
            return self.bot_user
        return self.users.get(user_id) or self.add_user(user_id)

    def add_guild(
        self, guild_id: int, name: str = "Test Guild", channels: Iterable[int | tuple[int, str]] = ()
    ) -> JSON:
        """A guild with text channels (ids, or ``(id, name)``) in which the bot is a member.

        Added after the client identified, it arrives as a GUILD_CREATE (the bot joined it).
        """
        everyone = {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": str(MEMBER_PERMISSIONS),
            "position": 0,
        }
        self.guilds[guild_id] = {
            "id": str(guild_id),
            "name": name,
            "owner_id": str(self.owner_id),
            "roles": [{**everyone, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "features": [],
            "emojis": [],
            "stickers": [],
            "joined_at": _now_iso(),
        }
        for position, channel in enumerate(channels):
            channel_id, channel_name = (
                channel if isinstance(channel, tuple) else (channel, f"channel-{channel}")
            )
            self.channels[channel_id] = {
                "id": str(channel_id),
                "type": 0,
                "guild_id": str(guild_id),
                "name": channel_name,
                "position": position,
                "permission_overwrites": [],
            }
        if self._sessions:  # before the first IDENTIFY, READY lists every guild
            self._dispatch("GUILD_CREATE", self._guild_create(guild_id, joined=True))
        return self.guilds[guild_id]

    def dm_channel(self, user_id: int) -> int:
        """The id of the DM channel between ``user_id`` and the bot (made on first use)."""
        channel_id = self._dm_by_user.get(user_id)
        if channel_id is None:
            channel_id = self._dm_by_user[user_id] = self.snowflake()
            self.channels[channel_id] = {"id": str(channel_id), "type": 1, "recipients": [self.user(user_id)]}
        return channel_id

    def attachment(
        self,
        data: bytes,
        *,
        filename: str = "image.png",
        content_type: str | None = "image/png",
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> JSON:
        """An attachment the CDN serves, for :meth:`send_message` or :meth:`interaction`.

        ``size`` may declare more than ``len(data)`` (never allocated); ``content_type=None``
        leaves the type out, as Discord does when it could not tell.
        """
        attachment_id = self.snowflake()
        declared = len(data) if size is None else size
        self.attachments[attachment_id] = FakeAttachment(
            attachment_id, filename, content_type, data, declared
        )
        url = f"{self.root}/attachments/0/{attachment_id}/{filename}?ex={secrets.token_hex(4)}&"
        payload: JSON = {"id": str(attachment_id), "filename": filename, "size": declared, "url": url}
        payload["proxy_url"] = url
        if content_type is not None:
            payload["content_type"] = content_type
        if width is not None and height is not None:
            payload["width"], payload["height"] = width, height
        return payload

    def _guild_of(self, channel_id: int, user_id: int) -> int | None:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ValueError(
                f"unknown channel {channel_id}: add_guild(channels=...) or dm_channel(user) first"
            )
        if "guild_id" in channel:
            return int(channel["guild_id"])
        if channel["recipients"][0]["id"] != str(user_id):
            raise ValueError(f"DM channel {channel_id} belongs to another user than {user_id}")
        return None

    def _guild_create(self, guild_id: int, *, joined: bool = False) -> JSON:
        """GUILD_CREATE: ``unavailable: false`` for a guild listed in READY, no such key for one the
        bot just joined (discord.py then fires ``on_guild_join``)."""
        guild = dict(self.guilds[guild_id])
        if not joined:
            guild["unavailable"] = False
        guild["channels"] = [
            {k: v for k, v in c.items() if k != "guild_id"}
            for c in self.channels.values()
            if c.get("guild_id") == str(guild_id)
        ]
        guild["members"] = [{**_member(), "user": self.bot_user}]  # without the members intent
        guild["member_count"] = 1
        return guild

    # -- users' actions ----------------------------------------------------------------------------

    def send_message(
        self,
        channel_id: int,
        user_id: int,
        content: str = "",
        *,
        mentions_bot: bool = False,
        attachments: Iterable[JSON] = (),
        reference: int | None = None,
    ) -> JSON:
        """A user's message (MESSAGE_CREATE); returns the full, unredacted message JSON.

        ``mentions_bot`` puts ``<@bot_id>`` in front of the content; ``reference`` (a message id)
        makes it a reply, which pings the author of the message it answers (the Discord client's
        default), so a reply to the bot mentions the bot.
        """
        guild_id = self._guild_of(channel_id, user_id)
        mentioned: list[int] = []
        if mentions_bot:
            content = f"<@{self.bot_id}> {content}".rstrip()
            mentioned.append(self.bot_id)
        message = self._new_message(channel_id, guild_id, user_id, content)
        if reference is not None:
            target = self.messages.get(reference)
            if target is None:
                raise ValueError(f"no message {reference} to reply to")
            self._make_reply(message, target)
            if target["author"]["id"] != str(user_id):
                mentioned.append(int(target["author"]["id"]))
        message["mentions"] = [self._mention(m, guild_id) for m in dict.fromkeys(mentioned)]
        for attachment in attachments:
            if int(attachment["id"]) not in self.attachments:
                raise ValueError(f"attachment {attachment['id']} was not made by fake.attachment()")
        message["attachments"] = list(attachments)
        self._store(message)
        return message

    def delete_message(self, message_id: int) -> None:
        """A user (or a moderator) deletes a message: replying to it then fails."""
        message = self.messages.pop(message_id, None)
        if message is None:
            raise ValueError(f"no message {message_id} to delete")
        event: JSON = {k: message[k] for k in ("id", "channel_id", "guild_id") if k in message}
        self._dispatch("MESSAGE_DELETE", event)

    def interaction(
        self,
        command_name: str,
        user_id: int,
        *,
        channel_id: int,
        options: Mapping[str, Any] | None = None,
        attachments: Mapping[str, JSON] | None = None,
    ) -> JSON:
        """A user runs ``/command_name`` (INTERACTION_CREATE type 2); returns its payload.

        Option types come from the synced command when there is one, else from the values;
        ``attachments`` are type-11 options resolved through ``data.resolved.attachments``.
        """
        command = next((c for c in self.commands if c["name"] == command_name), None)
        declared = {o["name"]: o["type"] for o in (command or {}).get("options", [])}
        data_options = [
            {"name": name, "type": declared.get(name) or _option_type(value), "value": value}
            for name, value in (options or {}).items()
        ]
        resolved: dict[str, JSON] = {}
        for name, attachment in (attachments or {}).items():
            resolved[attachment["id"]] = {**attachment, "ephemeral": True}
            data_options.append({"name": name, "type": 11, "value": attachment["id"]})
        data: JSON = {
            "id": command["id"] if command is not None else str(self.snowflake()),
            "name": command_name,
            "type": 1,
            "options": data_options,
        }
        if resolved:
            data["resolved"] = {"attachments": resolved}
        return self._interact(2, user_id, channel_id, data)

    def click(self, channel_id: int, user_id: int, message_id: int, custom_id: str) -> JSON:
        """A user presses the button ``custom_id`` under a bot's message (INTERACTION_CREATE type 3)."""
        message = self.messages.get(message_id)
        if message is None or message["channel_id"] != str(channel_id):
            raise ValueError(f"no message {message_id} in channel {channel_id}")
        buttons = [c for row in message.get("components", []) for c in row.get("components", [])]
        if custom_id not in [b.get("custom_id") for b in buttons]:
            raise ValueError(f"message {message_id} has no button {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interact(3, user_id, channel_id, data, message=message)

    def expire_interaction(self, interaction_id: int | str, *, token: bool = False) -> None:
        """Make an interaction miss its 3 s to respond (10062), with ``token`` its 15 minutes too (50027)."""
        state = self.interactions[int(interaction_id)]
        state.expired = True
        state.token_expired = state.token_expired or token

    def drop_connection(self, code: int = 4000) -> None:
        """Close the client's live websocket with ``code`` (4000: it RESUMEs; 4004: it gives up).

        Events dispatched from now on are replayed when it resumes. While the client is still
        reconnecting there is nothing to drop: wait for the resume first.
        """
        for conn in list(self._connections):
            self._close(conn, code)

    def _new_message(self, channel_id: int, guild_id: int | None, author_id: int, content: str) -> JSON:
        message: JSON = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": self.user(author_id),
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": TYPE_DEFAULT,
            "flags": 0,
        }
        if guild_id is not None:
            message["guild_id"] = str(guild_id)
            if author_id != self.bot_id:
                message["member"] = _member()
        return message

    @staticmethod
    def _make_reply(message: JSON, target: JSON) -> None:
        message["type"] = TYPE_REPLY
        message["message_reference"] = {
            "type": 0,
            "message_id": target["id"],
            "channel_id": target["channel_id"],
            **({"guild_id": target["guild_id"]} if "guild_id" in target else {}),
        }
        message["referenced_message"] = {k: v for k, v in target.items() if k != "referenced_message"}

    def _mention(self, user_id: int, guild_id: int | None) -> JSON:
        return {**self.user(user_id), **({"member": _member()} if guild_id is not None else {})}

    def _store(self, message: JSON, event: str = "MESSAGE_CREATE") -> None:
        """Keep a message and tell the client, as Discord does for every non-ephemeral message
        (the bot's own included)."""
        self.messages[int(message["id"])] = message
        if not int(message.get("flags") or 0) & FLAG_EPHEMERAL:
            self._dispatch(event, message)

    def _interact(
        self, kind: int, user_id: int, channel_id: int, data: JSON, message: JSON | None = None
    ) -> JSON:
        guild_id = self._guild_of(channel_id, user_id)
        interaction_id = self.snowflake()
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "token": f"aW50ZXJhY3Rpb24.{secrets.token_urlsafe(32)}",
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self.channels[channel_id],
            "locale": "en-US",
            "app_permissions": str(MEMBER_PERMISSIONS),
            "entitlements": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if message is not None:
            payload["message"] = message
        if guild_id is not None:
            payload.update(guild_id=str(guild_id), guild_locale="en-US", context=0)
            payload["member"] = {
                **_member(),
                "user": self.user(user_id),
                "permissions": str(MEMBER_PERMISSIONS),
            }
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
        else:
            payload.update(user=self.user(user_id), context=1, authorizing_integration_owners={"0": "0"})
        state = self.interactions[interaction_id] = _Interaction(interaction_id, payload["token"], payload)

        def delivered() -> None:  # Discord's 3 s start when the client gets the event
            state.delivered = state.delivered or time.monotonic()

        self._dispatch("INTERACTION_CREATE", payload, delivered)
        return payload

    # -- reading and waiting -----------------------------------------------------------------------

    @property
    def typing(self) -> list[int]:
        """The channel of every typing request, oldest first."""
        return [int(c.path.split("/")[-2]) for c in self.calls_of(TYPING) if c.status == 204]

    @property
    def sent(self) -> list[SentMessage]:
        """Every message the bot created, oldest first."""
        return self.outbox.messages

    def messages_to(self, channel_id: int) -> list[SentMessage]:
        """Everything the bot sent to ``channel_id``, oldest first."""
        return self.outbox.to(channel_id)

    def response_to(self, interaction_id: int | str) -> InteractionResponse | None:
        state = self.interactions.get(int(interaction_id))
        return state.responded if state is not None else None

    async def wait_for_message(
        self, channel_id: int, count: int = 1, *, timeout: float = 10
    ) -> list[SentMessage]:
        """The next ``count`` messages the bot sends to ``channel_id`` that no earlier call returned.

        Each channel has a cursor, so successive calls return successive messages and a message
        sent before the call is not missed.
        """
        return await self.outbox.next(
            channel_id,
            count,
            timeout=timeout,
            what=lambda unread: f"channel {channel_id}: {[s.content for s in unread]!r} of {count} messages",
        )

    async def wait_for_interaction_response(
        self, interaction_id: int | str, *, timeout: float = 10
    ) -> InteractionResponse:
        """The first response to an interaction."""
        return await self.wait_for(
            lambda _: self.response_to(interaction_id),
            timeout=timeout,
            what=f"a response to interaction {interaction_id}",
        )

    async def wait_for_followup(
        self, interaction_id: int | str, count: int = 1, *, timeout: float = 10
    ) -> list[Followup]:
        """An interaction's follow-ups and original-response edits, once there are ``count``."""
        key = int(interaction_id)

        def arrived(_: object) -> list[Followup] | None:
            found = [f for f in self.followups if f.interaction_id == key]
            return found if len(found) >= count else None

        return await self.wait_for(arrived, timeout=timeout, what=f"{count} follow-ups to interaction {key}")

    # -- dispatching -------------------------------------------------------------------------------

    def _dispatch(self, event: str, data: JSON, on_written: Callable[[], None] | None = None) -> None:
        """Send an event to its shard now if connected, on RESUME if disconnected, after READY if
        that shard never identified."""
        session = self._sessions.get(self._shard_of(event, data))
        if session is None:
            self._pending.append((event, data, on_written))
        else:
            self._append_event(session, event, data, on_written)

    def _shard_of(self, event: str, data: JSON) -> int:
        """The shard Discord sends an event to: its guild's (DMs: shard 0)."""
        guild_id = data.get("id") if event == "GUILD_CREATE" else data.get("guild_id")
        return (int(guild_id) >> 22) % self.shard_count if guild_id is not None else 0

    def _append_event(
        self, session: _Session, event: str, data: JSON, on_written: Callable[[], None] | None = None
    ) -> None:
        shaped = self._shape_for(session.intents, event, data)
        if shaped is None:
            return  # the client's intents exclude this event
        seq = len(session.events) + 1
        frame = json.dumps({"op": OP_DISPATCH, "d": shaped, "s": seq, "t": event})
        session.events.append((seq, frame, on_written))
        conn = session.connection
        if conn is not None and conn.live:
            conn.outbox.put_nowait(frame)
            if on_written is not None:
                conn.outbox.put_nowait(on_written)

    def _shape_for(self, intents: int, event: str, data: JSON) -> JSON | None:
        """The event as a client with ``intents`` receives it, or None if it gets none."""
        if not event.startswith("MESSAGE_"):
            return data
        if not intents & (INTENT_GUILD_MESSAGES if "guild_id" in data else INTENT_DIRECT_MESSAGES):
            return None
        if event == "MESSAGE_DELETE":
            return data
        return self._redact(data, content_intent=bool(intents & INTENT_MESSAGE_CONTENT))

    def _redact(self, message: JSON, *, content_intent: bool) -> JSON:
        """Without MESSAGE_CONTENT, a guild message from someone else that does not mention the
        bot has no content, embeds, attachments or components (its referenced message neither)."""
        if content_intent:
            return message
        visible = (
            "guild_id" not in message
            or message["author"]["id"] == str(self.bot_id)
            or any(m["id"] == str(self.bot_id) for m in message.get("mentions", []))
        )
        shaped = dict(message)
        if not visible:
            shaped.update(content="", embeds=[], attachments=[], components=[])
        if isinstance(message.get("referenced_message"), dict):
            shaped["referenced_message"] = self._redact(message["referenced_message"], content_intent=False)
        return shaped

    # -- gateway -----------------------------------------------------------------------------------

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        failure = self.take_failure(GATEWAY)
        if failure is not None and not failure.hang:
            self.record(GATEWAY, request.path, failure.status, request.path)
            return _injected(failure).response()
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws, asyncio.Queue())
        self._connections.add(conn)
        if failure is not None:  # accepted, then silence: no HELLO until released
            await self.held(GATEWAY, request.path, request.path)
            if self.closing:
                return ws
        self.record(GATEWAY, request.path, 101, request.path)
        writer = asyncio.create_task(self._writer(conn))
        hello = {"op": OP_HELLO, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}}
        conn.outbox.put_nowait(json.dumps(hello))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_gateway_message(conn, json.loads(msg.data))
                if not conn.live:
                    break
        finally:
            conn.live = False
            conn.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            self._connections.discard(conn)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2)
        return ws

    @staticmethod
    async def _writer(conn: _Connection) -> None:
        while (item := await conn.outbox.get()) is not None:
            if callable(item):
                item()
            elif not conn.ws.closed:
                try:
                    await conn.ws.send_str(item)
                except (ConnectionError, RuntimeError):
                    return

    def _close(self, conn: _Connection, code: int, *, record: bool = True) -> None:
        """Stop delivering on ``conn`` at once and close it with ``code``."""
        if not conn.live:
            return
        conn.live = False
        if record:
            self.record(CLOSE, code)
        if conn.session is not None and conn.session.connection is conn:
            conn.session.connection = None

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=code, message=b"fake-discord"), 2)

        task = asyncio.get_running_loop().create_task(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_gateway_message(self, conn: _Connection, payload: JSON) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            self.record(HEARTBEAT, data)
            conn.outbox.put_nowait(json.dumps({"op": OP_HEARTBEAT_ACK}))
        elif op == OP_IDENTIFY:
            self.record(IDENTIFY, data)
            self._identify(conn, data or {})
        elif op == OP_RESUME:
            self.record(RESUME, data)
            self._resume(conn, data or {})

    def _identify(self, conn: _Connection, data: JSON) -> None:
        if data.get("token") != self.token:
            self._close(conn, 4004)  # authentication failed
            return
        intents = int(data.get("intents", 0))
        if any(intents & bit and name not in self.privileged for name, bit in PRIVILEGED_INTENTS.items()):
            self._close(conn, 4014)  # disallowed intent(s)
            return
        shard = data.get("shard")
        if shard is not None and not (
            isinstance(shard, list) and len(shard) == 2 and 0 <= int(shard[0]) < int(shard[1])
        ):
            self._close(conn, 4010)  # invalid shard
            return
        shard_id, self.shard_count = (int(shard[0]), int(shard[1])) if shard is not None else (0, 1)
        session = _Session(secrets.token_hex(16), intents, connection=conn)
        self._sessions[shard_id] = session
        conn.session = session
        application = {"id": str(self.application_id), "flags": self._application_flags()}
        guilds = [gid for gid in self.guilds if self._shard_of("GUILD_CREATE", {"id": gid}) == shard_id]
        ready: JSON = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(gid), "unavailable": True} for gid in guilds],
            "session_id": session.id,
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume",
            "application": application,
            "private_channels": [],
            "relationships": [],
        }
        if shard is not None:
            ready["shard"] = [shard_id, self.shard_count]
        self._append_event(session, "READY", ready)
        for guild_id in guilds:
            self._append_event(session, "GUILD_CREATE", self._guild_create(guild_id))
        pending, self._pending = self._pending, []
        for event, event_data, on_written in pending:
            if self._shard_of(event, event_data) != shard_id:
                self._pending.append((event, event_data, on_written))  # another shard's
            elif event != "GUILD_CREATE":  # every known guild was just sent
                self._append_event(session, event, event_data, on_written)
        conn.outbox.put_nowait(lambda: self.record(READY))

    def _resume(self, conn: _Connection, data: JSON) -> None:
        session = next((s for s in self._sessions.values() if s.id == data.get("session_id")), None)
        if session is None or data.get("token") != self.token:
            conn.outbox.put_nowait(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            return
        if session.connection is not None and session.connection is not conn:
            self._close(session.connection, 4000, record=False)
        after = int(data.get("seq") or 0)
        for seq, frame, on_written in session.events:
            if seq > after:
                conn.outbox.put_nowait(frame)
                if on_written is not None:
                    conn.outbox.put_nowait(on_written)
        session.connection, conn.session = conn, session
        self._append_event(session, "RESUMED", {})
        conn.outbox.put_nowait(lambda: self.record(RESUMED))

    def _application_flags(self) -> int:
        flags = 0
        for name in self.privileged:
            flags |= _APP_FLAGS[name]
        return flags

    # -- REST --------------------------------------------------------------------------------------

    def _endpoint(self, route: str, handler: Handler, auth: bool) -> Callable[[web.Request], Any]:
        async def endpoint(request: web.Request) -> web.Response:
            body, files = await _read_body(request)
            try:
                if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                    raise _ApiError(401, "401: Unauthorized")
                failure = self.take_failure(route)
                if failure is not None and failure.hang:
                    await self.held(route, body, request.path)
                elif failure is not None:
                    raise _injected(failure)
                response = handler(request, body, files)
            except _ApiError as exc:
                response = exc.response()
            except Exception as exc:  # a bug, or a body the fake did not expect: say so at once
                # (a 500 would make discord.py retry for about 16 s before it gives up)
                response = _ApiError(400, f"fake-discord failed on this request: {exc!r}").response()
            self.record(route, body, response.status, request.path)
            return response

        return endpoint

    async def _unknown(self, request: web.Request) -> web.Response:
        self.record(f"{request.method} {request.path}", None, 404, request.path)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _get_me(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json(self.bot_user)

    def _get_gateway_bot(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        gateway = {"url": self.gateway_url.rstrip("/"), "shards": self.recommended_shards}
        return _json({**gateway, "session_start_limit": limit})

    def _get_application(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.user(self.owner_id),
                "flags": self._application_flags(),
            }
        )

    def _channel(self, request: web.Request) -> tuple[int, JSON]:
        channel_id = int(request.match_info["channel_id"])
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _ApiError(404, "Unknown Channel", 10003)
        return channel_id, channel

    @staticmethod
    def _checked(body: Any, files: list[UploadedFile], *, edit: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise _ApiError(400, "Cannot send an empty message", 50006)
        content = body.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
        if not edit and not (
            (content or "").strip() or body.get("embeds") or files or body.get("components")
        ):
            raise _ApiError(400, "Cannot send an empty message", 50006)
        return body

    def _uploaded(self, files: list[UploadedFile]) -> list[JSON]:
        return [
            self.attachment(f.data, filename=f.filename or "file", content_type=f.content_type) for f in files
        ]

    def _create_message(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, channel = self._channel(request)
        payload = self._checked(body, files)
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        message = self._new_message(channel_id, guild_id, self.bot_id, payload.get("content") or "")
        message.update(
            embeds=payload.get("embeds") or [],
            components=payload.get("components") or [],
            flags=int(payload.get("flags") or 0),
            attachments=self._uploaded(files),
        )
        reference = payload.get("message_reference")
        if reference:
            target = self.messages.get(int(reference.get("message_id") or 0))
            if target is not None:
                self._make_reply(message, target)
            elif reference.get("fail_if_not_exists", True):
                raise _form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        message["mentions"] = [
            self._mention(int(uid), guild_id)
            for uid in dict.fromkeys(_USER_MENTION_RE.findall(message["content"]))
        ]
        self._store(message)
        self.outbox.add(channel_id, SentMessage(message, time.monotonic(), channel_id, payload, files))
        return _json(self._rest_view(message))

    def _rest_view(self, message: JSON) -> JSON:
        """A message as REST returns it: redacted unless the app was granted message content."""
        return self._redact(message, content_intent="message_content" in self.privileged)

    def _get_message(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, _ = self._channel(request)
        message = self.messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != str(channel_id):
            raise _ApiError(404, "Unknown Message", 10008)
        return _json(self._rest_view(message))

    def _typing(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    # interactions

    def _interaction_callback(
        self, request: web.Request, body: Any, files: list[UploadedFile]
    ) -> web.Response:
        state = self.interactions.get(int(request.match_info["id"]))
        if state is None or state.token != request.match_info["token"]:
            raise _ApiError(404, "Unknown interaction", 10062)
        if state.responded is not None:
            raise _ApiError(400, "Interaction has already been acknowledged.", 40060)
        deadline = self.interaction_deadline
        late = (
            deadline is not None
            and state.delivered is not None
            and time.monotonic() - state.delivered > deadline
        )
        if state.expired or late:
            raise _ApiError(404, "Unknown interaction", 10062)
        if not isinstance(body, dict) or body.get("type") not in (4, 5, 6, 7):
            raise _form_error("type", "BASE_TYPE_CHOICES", "Value must be one of (4, 5, 6, 7).")
        kind, data = int(body["type"]), body.get("data") or {}
        if kind == 4:
            self._checked(data, files)
        response = state.responded = InteractionResponse(state.id, kind, data, time.monotonic(), files)
        if kind in (4, 5):
            original = self._interaction_message(state, data if kind == 4 else {}, files)
            if kind == 5:
                original["flags"] = FLAG_LOADING | (response.flags & FLAG_EPHEMERAL)
            state.original = original
            self._store(original)
        elif kind == 7:  # the clicked message, updated
            clicked = state.payload["message"]
            state.original = self._edited(self.messages.get(int(clicked["id"])) or clicked, data)
        self.interaction_responses.append(response)
        if request.query.get("with_response", "false").lower() not in ("1", "true"):
            return web.Response(status=204)
        interaction: JSON = {
            "id": str(state.id),
            "type": state.payload["type"],
            "response_message_loading": kind == 5,
            "response_message_ephemeral": response.ephemeral,
        }
        resource: JSON = {"type": kind}
        if state.original is not None and kind != 6:
            interaction["response_message_id"] = state.original["id"]
            resource["message"] = state.original
        return _json({"interaction": interaction, "resource": resource})

    def _interaction_message(self, state: _Interaction, data: JSON, files: list[UploadedFile]) -> JSON:
        payload = state.payload
        guild_id = int(payload["guild_id"]) if "guild_id" in payload else None
        channel_id = int(payload["channel_id"])
        message = self._new_message(channel_id, guild_id, self.bot_id, data.get("content") or "")
        message.update(
            type=TYPE_CHAT_INPUT_COMMAND if payload["type"] == 2 else TYPE_REPLY,
            flags=int(data.get("flags") or 0),
            embeds=data.get("embeds") or [],
            components=data.get("components") or [],
            attachments=self._uploaded(files),
            webhook_id=str(self.application_id),
            application_id=str(self.application_id),
            interaction_metadata={
                "id": str(state.id),
                "type": payload["type"],
                "user": payload.get("member", {}).get("user") or payload.get("user"),
                "authorizing_integration_owners": payload["authorizing_integration_owners"],
            },
        )
        return message

    def _edited(self, message: JSON, data: JSON) -> JSON:
        edited = {**message, "edited_timestamp": _now_iso()}
        edited.update(
            {k: v for k, v in data.items() if k in ("content", "embeds", "components") and v is not None}
        )
        edited["flags"] = int(message.get("flags") or 0) & ~FLAG_LOADING
        self._store(edited, "MESSAGE_UPDATE")
        return edited

    def _token_state(self, request: web.Request) -> _Interaction:
        if int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(404, "Unknown Webhook", 10015)
        token = request.match_info["token"]
        state = next((i for i in self.interactions.values() if i.token == token), None)
        lifetime_over = (
            state is not None and time.monotonic() - (state.delivered or time.monotonic()) > TOKEN_LIFETIME
        )
        if state is None or state.token_expired or lifetime_over:
            raise _ApiError(401, "Invalid Webhook Token", 50027)
        if state.responded is None:
            raise _ApiError(404, "Unknown Webhook", 10015)
        return state

    def _create_followup(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        state = self._token_state(request)
        payload = self._checked(body, files)
        original = state.original
        if original is not None and int(original["flags"]) & FLAG_LOADING:
            # the first follow-up after a defer replaces "thinking...", keeping its visibility
            message = {**self._interaction_message(state, payload, files), "id": original["id"]}
            message["flags"] = int(original["flags"]) & FLAG_EPHEMERAL
            state.original = message
            self._store(message, "MESSAGE_UPDATE")
        else:
            message = self._interaction_message(state, payload, files)
            self._store(message)
        self.followups.append(Followup(state.id, payload, message, time.monotonic()))
        if request.query.get("wait", "false").lower() in ("1", "true"):
            return _json(message)
        return web.Response(status=204)

    def _edit_original(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        state = self._token_state(request)
        if state.original is None:
            raise _ApiError(404, "Unknown Message", 10008)
        payload = self._checked(body, files, edit=True)
        state.original = edited = self._edited(state.original, payload)
        self.followups.append(Followup(state.id, payload, edited, time.monotonic(), edit_of="@original"))
        return _json(edited)

    # application commands

    def _check_app(self, request: web.Request) -> None:
        if int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(403, "Missing Access", 50001)

    def _get_commands(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        self._check_app(request)
        return _json(self.commands)

    def _put_commands(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        self._check_app(request)
        if not isinstance(body, list):
            raise _form_error("_", "BASE_TYPE_ARRAY", "Must be an array.")
        ids = {c["name"]: c["id"] for c in self.commands}
        for index, command in enumerate(body):
            if not _COMMAND_NAME_RE.match(command.get("name", "")):
                raise _form_error(
                    f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            if not 1 <= len(command.get("description", "")) <= 100:
                raise _form_error(
                    f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100."
                )
        self.commands = [
            {
                **command,
                "id": ids.get(command["name"]) or str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": command.get("type", 1),
            }
            for command in body
        ]
        return _json(self.commands)

    # CDN

    async def _handle_cdn(self, request: web.Request) -> web.Response:
        attachment = self.attachments.get(int(request.match_info["id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        failure = self.take_failure(DOWNLOAD)
        if failure is not None and failure.hang:
            await self.held(DOWNLOAD, attachment.id, request.path)
        elif failure is not None:
            self.record(DOWNLOAD, attachment.id, failure.status, request.path)
            return web.Response(status=failure.status, text=failure.message or "Error")
        await self.download_gate(attachment.id)
        self.record(DOWNLOAD, attachment.id, 200, request.path)
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )


def _member() -> JSON:
    return {"roles": [], "joined_at": _now_iso(), "deaf": False, "mute": False, "flags": 0}


def _option_type(value: Any) -> int:
    for kind, option_type in _OPTION_TYPES:
        if isinstance(value, kind):
            return option_type
    raise TypeError(f"cannot tell the option type of {value!r}")


async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    if not request.can_read_body:
        return None, []
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files: list[UploadedFile] = []
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: discord.py never sends one
            if part.name == "payload_json":
                body = json.loads(await part.text())
            else:
                files.append(
                    UploadedFile(part.filename, part.headers.get("Content-Type"), bytes(await part.read()))
                )
        return body, files
    raw = await request.read()
    return (json.loads(raw) if raw else None), []
