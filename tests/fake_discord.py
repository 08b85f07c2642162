"""A loopback Discord (gateway websocket, REST API, CDN) that the real, unmodified discord.py talks to.

Point discord.py 2.7.1 at it with :meth:`FakeDiscord.patch_discord` (two class attributes:
``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``), then run a
``discord.Client`` / ``commands.Bot`` with :attr:`FakeDiscord.token`. A child process cannot be
patched from outside: :meth:`FakeDiscord.env` proposes ``DISCORD_API_BASE`` and
``DISCORD_GATEWAY_URL``, which the app would have to honour itself (it does not yet).

It speaks what discord.py uses (see /work/shared/notes/loopback-fakes.md):

- the gateway: HELLO (op 10) -> IDENTIFY (op 2) -> READY -> GUILD_CREATE per guild; heartbeat
  (op 1) -> ACK (op 11); RESUME (op 6) -> replay of the events the client missed -> RESUMED.
  Frames are plain JSON text, although the client asks for zlib-stream (it reads text as JSON).
  Intents are honoured: no guild messages without GUILD_MESSAGES, no DMs without DIRECT_MESSAGES,
  and without MESSAGE_CONTENT a guild message that does not mention the bot arrives with empty
  ``content``/``attachments``/``embeds`` (as Discord does). A privileged intent the application
  was not granted (``privileged=``) closes the gateway with 4014; a wrong token with 4004.
- REST under ``/api/v10`` (``Content-Type: application/json`` exactly: aiohttp's ``json_response``
  adds a charset and discord.py then cannot parse the body): the log-in calls, messages (create,
  fetch, edit, delete; JSON or multipart with files), typing, reactions, DM channels, interaction
  callbacks (type 4 answer, 5 defer; ``?with_response=``), webhook follow-ups and ``@original``
  edits, application commands (``tree.sync()``). Errors are Discord's JSON errors: 401 for a wrong
  token, 404 ``{"message": "Unknown", "code": 0}`` for a route the fake does not know, Unknown
  Channel (10003), Cannot send an empty message (50006), Invalid Form Body (50035, e.g. content over
  2000 characters), Unknown interaction (10062, a first response after 3 s), Interaction has
  already been acknowledged (40060). :meth:`FakeDiscord.fail_next` injects more (429, 500...).
- a CDN for attachments (``url`` and ``proxy_url`` point back at the fake); an attachment may
  declare a ``size`` larger than the bytes it serves, so a "30 MB" file costs nothing, and every
  download is recorded (:attr:`FakeDiscord.downloads`), so a test can assert one never happened.

Tests inject users' actions with plain sync functions (:meth:`~FakeDiscord.send_message`,
:meth:`~FakeDiscord.interaction`, :meth:`~FakeDiscord.add_guild`...): each builds a valid payload
and dispatches it to the connected client, or queues it until the client identifies (or, while it
is disconnected, until it resumes). Then they wait for what the bot did with deadlines, never
sleeps (:meth:`~FakeDiscord.wait_for_message`, :meth:`~FakeDiscord.wait_for_interaction_response`...).

Everything runs on the event loop that called :meth:`~FakeDiscord.start`; the injection helpers may
also be called from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import yarl
from aiohttp import BodyPartReader, WSMsgType, web

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # what an interaction allows a bot to upload
INTERACTION_RESPONSE_DEADLINE = 3.0  # seconds Discord waits for the first interaction response

# gateway opcodes
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = (
    6,
    7,
    8,
    9,
    10,
    11,
)

# intents (https://discord.com/developers/docs/events/gateway#gateway-intents)
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = {
    "members": INTENT_GUILD_MEMBERS,
    "presences": INTENT_GUILD_PRESENCES,
    "message_content": INTENT_MESSAGE_CONTENT,
}
# application flags telling the client which privileged intents it was granted ("limited": unverified)
_APP_FLAG_FOR_INTENT = {"presences": 1 << 13, "members": 1 << 15, "message_content": 1 << 19}

# message flags and types
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
TYPE_DEFAULT, TYPE_REPLY, TYPE_CHAT_INPUT_COMMAND = 0, 19, 20

# what a member may do by default (view, send, embed, attach, history, reactions, app commands)
DEFAULT_MEMBER_PERMISSIONS = (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
ADMINISTRATOR = 1 << 3

# slash command option types
OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP, OPTION_STRING, OPTION_INTEGER, OPTION_BOOLEAN = 1, 2, 3, 4, 5
OPTION_NUMBER, OPTION_ATTACHMENT = 10, 11
_COMMAND_NAME_RE = re.compile(r"^[-_a-z0-9]{1,32}$")
_USER_MENTION_RE = re.compile(r"<@!?(\d+)>")


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # not web.json_response: its "application/json; charset=utf-8" makes discord.py read a str
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers
    )


def _no_content() -> web.Response:
    return web.Response(status=204)


def _snowflake_str(value: Any) -> str:
    return str(int(value))


# -- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request (``files[n]``)."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Request:
    """One REST request: route template (e.g. ``POST /channels/{channel_id}/messages``), HTTP status."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float


@dataclass
class SentMessage:
    """A message the bot created (``POST /channels/{id}/messages``) and the JSON it got back."""

    channel_id: int
    content: str | None
    message_reference: JSON | None  # as sent (discord.py sends integer ids)
    flags: int
    embeds: list[JSON]
    allowed_mentions: JSON | None
    files: list[UploadedFile]
    message: JSON  # the Message JSON returned to the bot
    payload: JSON  # the request body (payload_json for multipart)
    at: float

    @property
    def id(self) -> int:
        return int(self.message["id"])

    @property
    def reply_to(self) -> int | None:
        """The id of the message this one replies to, if any."""
        ref = self.message_reference
        return int(ref["message_id"]) if ref and ref.get("message_id") is not None else None


@dataclass
class InteractionResponse:
    """A response to an interaction (``POST /interactions/{id}/{token}/callback``)."""

    interaction_id: int
    type: int  # 4: message, 5: deferred ("thinking..."), 6/7: component updates, 9: modal
    content: str | None
    flags: int
    data: JSON
    files: list[UploadedFile]
    with_response: bool
    at: float

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)


@dataclass
class Followup:
    """A follow-up message (``POST /webhooks/{app_id}/{token}``) or an edit of the original response."""

    interaction_id: int
    content: str | None
    flags: int
    payload: JSON
    files: list[UploadedFile]
    message: JSON
    at: float
    edit_of: str | None = None  # "@original" or a message id for a PATCH, None for a new follow-up

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)


@dataclass
class Edit:
    """A message edit (``PATCH /channels/{id}/messages/{id}``)."""

    channel_id: int
    message_id: int
    payload: JSON
    message: JSON
    at: float


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
    created: float | None  # when INTERACTION_CREATE was written to the client (None: not yet)
    responded: InteractionResponse | None = None
    original: JSON | None = None  # the original response message
    expired: bool = False  # past the 3 s for a first response
    token_expired: bool = False  # past the 15 min a token lives


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    # (seq, frame, called once written) for every event ever dispatched, for RESUME replays
    events: list[tuple[int, str, Callable[[], None] | None]] = field(default_factory=list)
    connection: _Connection | None = None

    @property
    def seq(self) -> int:
        return self.events[-1][0] if self.events else 0

    def replay(self, after_seq: int) -> Iterable[str | Callable[[], None]]:
        for seq, frame, on_written in self.events:
            if seq > after_seq:
                yield frame
                if on_written is not None:
                    yield on_written


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    path: str
    outbox: asyncio.Queue[str | Callable[[], None] | None]
    session: _Session | None = None
    live: bool = True


class _ApiError(Exception):
    """Becomes a Discord JSON error response."""

    def __init__(
        self, status: int, message: str, code: int = 0, errors: JSON | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors, self.extra = status, message, code, errors, extra

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code, **self.extra}
        if self.errors is not None:
            body["errors"] = self.errors
        headers = {"Via": "1.1 google"} if self.status == 429 else None  # a Discord 429, not Cloudflare
        if self.status == 429:
            headers = {**(headers or {}), "Retry-After": str(self.extra.get("retry_after", 1))}
        return _json_response(body, status=self.status, headers=headers)


def _form_error(field_name: str, code: str, message: str) -> _ApiError:
    return _ApiError(
        400,
        "Invalid Form Body",
        50035,
        errors={field_name: {"_errors": [{"code": code, "message": message}]}},
    )


@dataclass
class _Failure:
    status: int
    message: str
    code: int
    retry_after: float | None


class _Patch:
    """Undo for :meth:`FakeDiscord.patch_discord`: call it, or use the patch as a context manager."""

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo: Callable[[], None] | None = undo

    def __call__(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def __enter__(self) -> _Patch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self()


# -- the fake --------------------------------------------------------------------------------------


class FakeDiscord:
    """Discord on 127.0.0.1 (a free port): ``async with FakeDiscord() as fake: ...``."""

    def __init__(
        self,
        token: str = "ZmFrZS1kaXNjb3Jk.fake.token",
        *,
        bot_id: int = 1_100_000_000_000_000_001,
        application_id: int | None = None,
        bot_username: str = "vqa-test-bot",
        owner_id: int = 1_100_000_000_000_000_002,
        privileged: Iterable[str] = ("members", "presences", "message_content"),
        heartbeat_interval: float = 41.25,
        interaction_deadline: float | None = INTERACTION_RESPONSE_DEADLINE,
    ) -> None:
        unknown = set(privileged) - set(PRIVILEGED_INTENTS)
        if unknown:
            raise ValueError(
                f"unknown privileged intents {sorted(unknown)}; known: {sorted(PRIVILEGED_INTENTS)}"
            )
        self.token = token
        self.bot_id = bot_id
        self.application_id = application_id if application_id is not None else bot_id
        self.owner_id = owner_id
        #: privileged intents the application was granted in the developer portal
        self.privileged = frozenset(privileged)
        self.heartbeat_interval = heartbeat_interval
        #: seconds within which an interaction must get its first response (None: no deadline)
        self.interaction_deadline = interaction_deadline
        self.bot_user: JSON = {
            "id": str(bot_id),
            "username": bot_username,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
        }
        # records
        self.requests: list[Request] = []
        self.unknown_routes: list[str] = []  # "METHOD /path" of every request no route matched
        self.errors: list[str] = []  # requests the fake itself failed on (answered 400, not 500)
        self.sent: list[SentMessage] = []
        self.edits: list[Edit] = []
        self.deleted: list[tuple[int, int]] = []  # (channel_id, message_id)
        self.typing: list[int] = []  # channel ids, one per typing request
        self.reactions: list[tuple[int, int, str]] = []  # (channel_id, message_id, emoji)
        self.interaction_responses: list[InteractionResponse] = []
        self.followups: list[Followup] = []
        self.downloads: list[int] = []  # attachment ids, one per download served
        self.held_downloads: list[int] = []
        self.identifies: list[JSON] = []  # IDENTIFY payloads ("d"), token included
        self.resumes: list[JSON] = []  # RESUME payloads ("d")
        self.heartbeats: list[int | None] = []  # the sequence each heartbeat carried
        self.presences: list[JSON] = []  # op 3 presence updates
        self.gateway_connections: list[str] = []  # the path each websocket connected to
        self.close_codes: list[int] = []  # codes the fake closed the gateway with
        self.commands: dict[int | None, list[JSON]] = {}  # guild id (None: global) -> commands
        self.dispatched: list[tuple[str, JSON]] = []  # every event queued for the client, in order
        # state
        self.guilds: dict[int, JSON] = {}
        self.users: dict[int, JSON] = {}
        self.channels: dict[int, JSON] = {}
        self.messages: dict[int, JSON] = {}  # every message (users' and the bot's) by id
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, _Interaction] = {}
        self._dm_by_user: dict[int, int] = {}
        self._guild_members: dict[int, dict[int, JSON]] = {}
        # events before the first IDENTIFY: (event, data, called once written)
        self._pending: list[tuple[str, JSON, Callable[[], None] | None]] = []
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None  # the latest session
        self._connections: set[_Connection] = set()
        self._ready_count = 0
        self._resumed_count = 0
        self._failures: dict[str, list[_Failure]] = {}
        self._last_snowflake = 0
        self._counter = itertools.count()
        self._message_cursor: dict[int, int] = {}
        self._download_gate: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._lock = threading.RLock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._nonces: dict[tuple[int, Any], JSON] = {}

    # -- lifetime ----------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        """Listen on a free loopback port; returns self."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._middleware])
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Close every gateway connection (1001) and the server; bounded, never hangs."""
        self.release_downloads()
        for conn in list(self._connections):
            self._kill(conn, 1001, record=False)
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return self._port

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connected(self) -> bool:
        """Whether a client holds a live, identified (or resumed) gateway connection."""
        return any(conn.live and conn.session is not None for conn in self._connections)

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"{self.root}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` must be (as a ``yarl.URL``)."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        """READY's ``resume_gateway_url``: a different path, so tests can tell a resume happened there."""
        return f"ws://127.0.0.1:{self.port}/resume"

    def patch_discord(self) -> _Patch:
        """Point discord.py (this process) at the fake; call the result, or leave its ``with``, to undo."""
        import discord.gateway
        import discord.http

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

        def undo() -> None:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

        return _Patch(undo)

    def env(self) -> dict[str, str]:
        """Environment for a child process (``python main.py``) talking to this fake.

        A child cannot be monkeypatched from here: the app has to read ``DISCORD_API_BASE`` and
        ``DISCORD_GATEWAY_URL`` itself and apply them as :meth:`patch_discord` does (a proposal:
        no app code honours them yet).
        """
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- ids, users, guilds, channels --------------------------------------------------------------

    def snowflake(self) -> int:
        """A fresh, increasing Discord id whose timestamp is now."""
        with self._lock:
            value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._counter) & 0xFFF)
            self._last_snowflake = value = max(value, self._last_snowflake + 1)
            return value

    def add_user(self, user_id: int, username: str | None = None, *, bot: bool = False) -> JSON:
        """Register (or rename) a user; unknown users get ``user<id>`` on first use."""
        name = username or f"user{user_id}"
        user: JSON = {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "bot": bot,
        }
        self.users[user_id] = user
        return user

    def user(self, user_id: int) -> JSON:
        if user_id == self.bot_id:
            return self.bot_user
        return self.users.get(user_id) or self.add_user(user_id)

    def add_guild(
        self,
        guild_id: int,
        name: str = "Test Guild",
        channels: Iterable[int | tuple[int, str]] = (),
        *,
        owner_id: int | None = None,
        bot_permissions: int = DEFAULT_MEMBER_PERMISSIONS,
    ) -> JSON:
        """A guild with text channels (ids, or ``(id, name)``); the bot is a member.

        Added after the client identified, it arrives as a GUILD_CREATE (the bot joined a guild).
        Returns the GUILD_CREATE payload.
        """
        members = self._guild_members.setdefault(guild_id, {})
        members[self.bot_id] = self._member(self.bot_id, permissions=None)
        guild: JSON = {
            "id": str(guild_id),
            "name": name,
            "icon": None,
            "owner_id": str(owner_id if owner_id is not None else self.owner_id),
            "features": [],
            "roles": [
                {
                    "id": str(guild_id),  # @everyone has the guild's id
                    "name": "@everyone",
                    "permissions": str(bot_permissions),
                    "position": 0,
                    "colors": {"primary_color": 0},
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "channels": [],
            "threads": [],
            "members": [],
            "member_count": 1,
            "large": False,
            "joined_at": _now_iso(),
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_flags": 0,
        }
        self.guilds[guild_id] = guild
        for position, channel in enumerate(channels):
            channel_id, channel_name = (
                channel if isinstance(channel, tuple) else (channel, f"channel-{channel}")
            )
            self.add_channel(guild_id, channel_id, channel_name, position=position, announce=False)
        if self._session is not None:  # before the first IDENTIFY, READY lists every guild
            self._dispatch("GUILD_CREATE", self._guild_create(guild_id, joined=True))
        return self._guild_create(guild_id)

    def add_channel(
        self,
        guild_id: int,
        channel_id: int,
        name: str | None = None,
        *,
        position: int = 0,
        announce: bool = True,
    ) -> JSON:
        """A text channel in a known guild (a CHANNEL_CREATE once the client is connected)."""
        if guild_id not in self.guilds:
            raise ValueError(f"unknown guild {guild_id}: add_guild first")
        channel: JSON = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild_id),
            "name": name or f"channel-{channel_id}",
            "position": position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }
        self.channels[channel_id] = channel
        if announce and self._session is not None:
            self._dispatch("CHANNEL_CREATE", channel)
        return channel

    def dm_channel(self, user_id: int) -> int:
        """The id of the DM channel between ``user_id`` and the bot (created on first use)."""
        channel_id = self._dm_by_user.get(user_id)
        if channel_id is None:
            channel_id = self._dm_by_user[user_id] = self.snowflake()
            self.channels[channel_id] = {
                "id": str(channel_id),
                "type": 1,
                "last_message_id": None,
                "recipients": [self.user(user_id)],
                "flags": 0,
            }
        return channel_id

    def add_member(
        self, guild_id: int, user_id: int, *, roles: Iterable[int] = (), nick: str | None = None
    ) -> JSON:
        """Make ``user_id`` a member of the guild (users who post in a guild become members anyway)."""
        if guild_id not in self.guilds:
            raise ValueError(f"unknown guild {guild_id}: add_guild first")
        member = self._member(user_id, roles=roles, nick=nick, permissions=None)
        self._guild_members.setdefault(guild_id, {})[user_id] = member
        return member

    def _member(
        self,
        user_id: int,
        *,
        roles: Iterable[int] = (),
        nick: str | None = None,
        permissions: int | None = None,
        with_user: bool = True,
    ) -> JSON:
        member: JSON = {
            "roles": [str(r) for r in roles],
            "nick": nick,
            "avatar": None,
            "joined_at": _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
        }
        if with_user:
            member["user"] = self.user(user_id)
        if permissions is not None:
            member["permissions"] = str(permissions)
        return member

    def _guild_member(self, guild_id: int, user_id: int) -> JSON:
        members = self._guild_members.setdefault(guild_id, {})
        member = members.get(user_id)
        if member is None:
            member = members[user_id] = self._member(user_id)
        return member

    def _guild_create(self, guild_id: int, *, joined: bool = False) -> JSON:
        """GUILD_CREATE: ``unavailable: false`` for a guild listed in READY, no such key for a guild
        the bot just joined (discord.py then fires ``on_guild_available`` / ``on_guild_join``)."""
        guild = dict(self.guilds[guild_id])
        if not joined:
            guild["unavailable"] = False
        channels = [
            {k: v for k, v in c.items() if k != "guild_id"}
            for c in self.channels.values()
            if c.get("guild_id") == str(guild_id)
        ]
        guild["channels"] = channels
        # a small guild without the members intent: Discord sends only the bot's own member
        guild["members"] = [self._guild_members[guild_id][self.bot_id]]
        guild["member_count"] = len(self._guild_members[guild_id])
        return guild

    def _guild_of(self, channel_id: int) -> int | None:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ValueError(
                f"unknown channel {channel_id}: add_guild(channels=...) or dm_channel(user) first"
            )
        guild_id = channel.get("guild_id")
        return int(guild_id) if guild_id is not None else None

    # -- attachments -------------------------------------------------------------------------------

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
        """An attachment the CDN serves; ``size`` may declare more than ``len(data)`` (never allocated).

        Pass it to :meth:`send_message` or :meth:`interaction`; its ``url``/``proxy_url`` get the
        channel (or interaction) path there. ``content_type=None`` leaves the type out, as Discord
        does when it could not tell.
        """
        attachment_id = self.snowflake()
        declared = len(data) if size is None else size
        self.attachments[attachment_id] = FakeAttachment(
            attachment_id, filename, content_type, data, declared
        )
        payload: JSON = {
            "id": str(attachment_id),
            "filename": filename,
            "size": declared,
            "url": "",
            "proxy_url": "",
            "flags": 0,
        }
        if content_type is not None:
            payload["content_type"] = content_type
        if width is not None and height is not None:
            payload["width"], payload["height"] = width, height
        return self._with_urls(payload, f"attachments/0/{attachment_id}")

    def _with_urls(self, attachment: JSON, prefix: str) -> JSON:
        attachment = dict(attachment)
        filename = attachment["filename"]
        expires = int(time.time()) + 24 * 3600
        query = f"?ex={expires:x}&is={int(time.time()):x}&hm={secrets.token_hex(32)}&"
        if self._port is not None:
            attachment["url"] = f"{self.root}/{prefix}/{filename}{query}"
            attachment["proxy_url"] = f"{self.root}/media/{prefix}/{filename}{query}"
        return attachment

    def hold_downloads(self) -> None:
        """Make CDN downloads wait (request received, no bytes sent) until :meth:`release_downloads`."""
        if self._download_gate is None or self._download_gate.is_set():
            self._download_gate = asyncio.Event()

    def release_downloads(self) -> None:
        """Let held downloads (and later ones) go through."""
        gate, self._download_gate = self._download_gate, None
        if gate is not None:
            gate.set()

    # -- users' actions ----------------------------------------------------------------------------

    def send_message(
        self,
        channel_id: int,
        user_id: int,
        content: str = "",
        *,
        guild_id: int | None = None,
        mentions_bot: bool = False,
        attachments: Iterable[JSON] = (),
        reference: int | None = None,
        reply_ping: bool = True,
        mentions: Iterable[int] = (),
    ) -> JSON:
        """A user's message (MESSAGE_CREATE); returns the full, unredacted message JSON.

        ``mentions_bot`` puts ``<@bot_id>`` in front of the content and the bot in ``mentions``;
        ``reference`` (a message id) makes it a reply, with ``message_reference`` and
        ``referenced_message``; a reply to the bot pings it (bot in ``mentions``) unless
        ``reply_ping=False``, as the Discord client does by default. What the client receives
        depends on its intents (see the module docstring).
        """
        channel_guild = self._guild_of(channel_id)
        if guild_id is not None and guild_id != channel_guild:
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        guild_id = channel_guild
        if guild_id is None and self.channels[channel_id]["recipients"][0]["id"] != str(user_id):
            raise ValueError(f"DM channel {channel_id} belongs to another user than {user_id}")
        mentioned = [int(m) for m in mentions]
        if mentions_bot:
            content = (
                f"<@{self.bot_id}> {content}".rstrip() if f"<@{self.bot_id}>" not in content else content
            )
            mentioned.append(self.bot_id)
        message = self._new_message(channel_id, guild_id, user_id, content)
        if reference is not None:
            target = self.messages.get(reference)
            if target is None:
                raise ValueError(f"no message {reference} to reply to")
            message["type"] = TYPE_REPLY
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reference),
                "channel_id": target["channel_id"],
                **({"guild_id": target["guild_id"]} if "guild_id" in target else {}),
            }
            message["referenced_message"] = {k: v for k, v in target.items() if k != "referenced_message"}
            if reply_ping and target["author"]["id"] != str(user_id):
                mentioned.append(int(target["author"]["id"]))
        seen: set[int] = set()
        mention_list = []
        for mention_id in mentioned:
            if mention_id not in seen:
                seen.add(mention_id)
                mention_list.append(self._mention(mention_id, guild_id))
        message["mentions"] = mention_list
        message["attachments"] = [
            self._with_urls(a, f"attachments/{channel_id}/{a['id']}") for a in attachments
        ]
        for attachment in message["attachments"]:
            if int(attachment["id"]) not in self.attachments:
                raise ValueError(f"attachment {attachment['id']} was not made by fake.attachment()")
        self._store(message)
        return message

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
                member = self._guild_member(guild_id, author_id)
                message["member"] = {k: v for k, v in member.items() if k != "user"}
        return message

    def _store(self, message: JSON, event: str = "MESSAGE_CREATE") -> None:
        """Keep a message and tell the client, as Discord does for every non-ephemeral message
        (the bot's own included: a bot that does not ignore itself answers itself)."""
        self.messages[int(message["id"])] = message
        if not int(message.get("flags") or 0) & FLAG_EPHEMERAL:
            self._dispatch(event, message)

    def _forget(self, message: JSON) -> None:
        self.messages.pop(int(message["id"]), None)
        if not int(message.get("flags") or 0) & FLAG_EPHEMERAL:
            event = {"id": message["id"], "channel_id": message["channel_id"]}
            if "guild_id" in message:
                event["guild_id"] = message["guild_id"]
            self._dispatch("MESSAGE_DELETE", event)

    def edit_message(self, message_id: int, content: str) -> JSON:
        """A user edits their message (MESSAGE_UPDATE: ``on_message_edit``, not ``on_message``)."""
        message = self.messages.get(message_id)
        if message is None or message["author"]["id"] == str(self.bot_id):
            raise ValueError(f"no user message {message_id} to edit")
        edited = {**message, "content": content, "edited_timestamp": _now_iso()}
        self._store(edited, "MESSAGE_UPDATE")
        return edited

    def delete_message(self, message_id: int) -> None:
        """A user (or a moderator) deletes a message (MESSAGE_DELETE); replying to it then fails."""
        message = self.messages.get(message_id)
        if message is None:
            raise ValueError(f"no message {message_id} to delete")
        self._forget(message)

    def _mention(self, user_id: int, guild_id: int | None) -> JSON:
        mention = dict(self.user(user_id))
        if guild_id is not None:
            member = self._guild_member(guild_id, user_id)
            mention["member"] = {k: v for k, v in member.items() if k != "user"}
        return mention

    def interaction(
        self,
        command_name: str,
        user_id: int,
        *,
        channel_id: int,
        guild_id: int | None = None,
        options: Mapping[str, Any] | None = None,
        attachments: Mapping[str, JSON] | None = None,
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        locale: str = "en-US",
    ) -> JSON:
        """A user runs ``/command_name`` (INTERACTION_CREATE type 2); returns the interaction payload.

        ``payload["id"]`` and ``payload["token"]`` identify it. Option types come from the synced
        command when there is one (``tree.sync()``), else from the values (str 3, int 4, bool 5,
        float 10); ``attachments`` are type-11 options resolved through ``data.resolved.attachments``.
        ``permissions`` are the member's in the channel (e.g. ``ADMINISTRATOR``).
        """
        channel_guild = self._guild_of(channel_id)
        if guild_id is not None and guild_id != channel_guild:
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        guild_id = channel_guild
        if guild_id is None and self.channels[channel_id]["recipients"][0]["id"] != str(user_id):
            raise ValueError(f"DM channel {channel_id} belongs to another user than {user_id}")
        interaction_id = self.snowflake()
        token = f"aW50ZXJhY3Rpb24.{secrets.token_urlsafe(32)}"
        command = self._registered_command(command_name, guild_id)
        declared = {o["name"]: o for o in (command or {}).get("options", [])}
        values: dict[str, Any] = dict(options or {})
        data_options: list[JSON] = []
        for name, value in values.items():
            option_type = declared.get(name, {}).get("type") or self._option_type(value)
            data_options.append({"name": name, "type": option_type, "value": value})
        resolved: dict[str, JSON] = {}
        for name, attachment in (attachments or {}).items():
            if int(attachment["id"]) not in self.attachments:
                raise ValueError(f"attachment {attachment['id']} was not made by fake.attachment()")
            prefix = f"ephemeral-attachments/{self.application_id}/{interaction_id}/{attachment['id']}"
            resolved[attachment["id"]] = {**self._with_urls(attachment, prefix), "ephemeral": True}
            data_options.append({"name": name, "type": OPTION_ATTACHMENT, "value": attachment["id"]})
        if command is not None:
            given = {o["name"] for o in data_options}
            missing = [n for n, o in declared.items() if o.get("required") and n not in given]
            unknown = sorted(given - set(declared))
            if missing or unknown:
                raise ValueError(f"/{command_name}: missing required {missing}, unknown {unknown}")
        data: JSON = {
            "id": command["id"] if command is not None else str(self.snowflake()),
            "name": command_name,
            "type": 1,
            "options": data_options,
        }
        if resolved:
            data["resolved"] = {"attachments": resolved}
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 2,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self.channels[channel_id],
            "locale": locale,
            "app_permissions": str(DEFAULT_MEMBER_PERMISSIONS),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": DEFAULT_ATTACHMENT_SIZE_LIMIT,
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            member = dict(self._guild_member(guild_id, user_id))
            member["user"] = self.user(user_id)
            member["permissions"] = str(permissions)
            payload["member"] = member
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
        else:
            payload["user"] = self.user(user_id)
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": "0"}
        state = self.interactions[interaction_id] = _Interaction(interaction_id, token, payload, None)

        def delivered() -> None:  # Discord's 3 s start when the client gets the event
            state.created = state.created or time.monotonic()

        self._dispatch("INTERACTION_CREATE", payload, delivered)
        return payload

    def expire_interaction(self, interaction_id: int | str, *, token: bool = False) -> None:
        """Make the interaction miss its 3 s response window (10062), and with ``token`` its follow-ups."""
        state = self.interactions[int(interaction_id)]
        state.expired = True
        state.token_expired = state.token_expired or token

    def _registered_command(self, name: str, guild_id: int | None) -> JSON | None:
        for scope in (guild_id, None) if guild_id is not None else (None,):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    @staticmethod
    def _option_type(value: Any) -> int:
        if isinstance(value, bool):
            return OPTION_BOOLEAN
        if isinstance(value, int):
            return OPTION_INTEGER
        if isinstance(value, float):
            return OPTION_NUMBER
        if isinstance(value, str):
            return OPTION_STRING
        raise TypeError(f"cannot tell the option type of {value!r}")

    # -- gateway control ---------------------------------------------------------------------------

    def drop_connection(self, code: int = 4000) -> None:
        """Close the client's live websocket, if any, with ``code`` (4000: the client RESUMEs;
        4004: it gives up). Events dispatched from now until it resumes are replayed on RESUME.
        While the client is still reconnecting there is nothing to drop: wait for the resume first.
        """
        self._call_on_loop(self._drop_now, code)

    def _drop_now(self, code: int) -> None:
        for conn in list(self._connections):
            self._kill(conn, code)

    def send_reconnect(self) -> None:
        """Ask the client to reconnect (op 7): it closes and RESUMEs."""
        self._call_on_loop(self._send_op, OP_RECONNECT, None)

    def invalidate_session(self, *, resumable: bool = False) -> None:
        """Op 9: with ``resumable=False`` the client drops its session and IDENTIFYs again
        (after its ``before_identify_hook``, 5 s by default); events not yet delivered are lost,
        as on Discord."""
        self._call_on_loop(self._send_op, OP_INVALID_SESSION, resumable)

    def _send_op(self, op: int, data: Any) -> None:
        for conn in list(self._connections):
            if conn.live:
                conn.outbox.put_nowait(json.dumps({"op": op, "d": data, "s": None, "t": None}))

    # -- dispatching -------------------------------------------------------------------------------

    def _dispatch(self, event: str, data: JSON, on_written: Callable[[], None] | None = None) -> None:
        """Queue a dispatch for the client: now if connected, on RESUME if disconnected, after
        READY if it never identified. ``on_written`` runs once the frame is on the socket."""
        self._call_on_loop(self._dispatch_now, event, data, on_written)

    def _call_on_loop(self, func: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread and not loop.is_closed():
            loop.call_soon_threadsafe(func, *args)
        else:
            func(*args)

    def _dispatch_now(self, event: str, data: JSON, on_written: Callable[[], None] | None = None) -> None:
        self.dispatched.append((event, data))
        session = self._session
        if session is None:
            self._pending.append((event, data, on_written))
            return
        self._append_event(session, event, data, on_written)

    def _append_event(
        self, session: _Session, event: str, data: JSON, on_written: Callable[[], None] | None = None
    ) -> None:
        shaped = self._shape_for(session, event, data)
        if shaped is None:
            return  # the client's intents exclude this event
        seq = session.seq + 1
        frame = json.dumps({"op": OP_DISPATCH, "d": shaped, "s": seq, "t": event})
        session.events.append((seq, frame, on_written))
        conn = session.connection
        if conn is not None and conn.live:
            conn.outbox.put_nowait(frame)
            if on_written is not None:
                conn.outbox.put_nowait(on_written)

    def _shape_for(self, session: _Session, event: str, data: JSON) -> JSON | None:
        """The event as a client with ``session.intents`` receives it, or None if it gets none."""
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            return data
        intents = session.intents
        is_dm = "guild_id" not in data
        if not intents & (INTENT_DIRECT_MESSAGES if is_dm else INTENT_GUILD_MESSAGES):
            return None
        if event == "MESSAGE_DELETE":
            return data
        return self._redact(data, content_intent=bool(intents & INTENT_MESSAGE_CONTENT))

    def _redact(self, message: JSON, *, content_intent: bool) -> JSON:
        """Without MESSAGE_CONTENT, a guild message from someone else that does not mention the bot
        has no content, embeds, attachments, components or poll (the referenced message too)."""
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
            shaped.pop("poll", None)
        referenced = message.get("referenced_message")
        if isinstance(referenced, dict):
            shaped["referenced_message"] = self._redact(referenced, content_intent=False)
        return shaped

    # -- gateway -----------------------------------------------------------------------------------

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws, request.path, asyncio.Queue())
        self._connections.add(conn)
        self.gateway_connections.append(request.path)
        writer = asyncio.create_task(self._writer(conn))
        conn.outbox.put_nowait(
            json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}})
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    self._kill(conn, 4002)  # decode error
                    break
                await self._on_gateway_message(conn, payload)
                if not conn.live:
                    break
        finally:
            conn.live = False
            conn.outbox.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2):
                    await writer
            writer.cancel()
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            self._connections.discard(conn)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await ws.close()
            self._notify()
        return ws

    async def _writer(self, conn: _Connection) -> None:
        while True:
            item = await conn.outbox.get()
            if item is None:
                return
            if callable(item):
                item()
                continue
            if conn.ws.closed:
                continue
            try:
                await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    def _kill(self, conn: _Connection, code: int, *, record: bool = True) -> None:
        """Stop delivering on ``conn`` at once and close it with ``code``."""
        if not conn.live:
            return
        conn.live = False
        if record:
            self.close_codes.append(code)
        if conn.session is not None and conn.session.connection is conn:
            conn.session.connection = None

        async def close() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await conn.ws.close(code=code, message=b"fake-discord")

        task = (self._loop or asyncio.get_running_loop()).create_task(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_gateway_message(self, conn: _Connection, payload: JSON) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeats.append(data)
            conn.outbox.put_nowait(json.dumps({"op": OP_HEARTBEAT_ACK}))
        elif op == OP_IDENTIFY:
            self._identify(conn, data or {})
        elif op == OP_RESUME:
            self._resume(conn, data or {})
        elif op == OP_PRESENCE:
            self.presences.append(data or {})
        elif op == OP_REQUEST_MEMBERS:
            self._request_members(conn, data or {})
        elif op == OP_VOICE:
            pass
        else:
            self._kill(conn, 4001)  # unknown opcode
        self._notify()

    def _identify(self, conn: _Connection, data: JSON) -> None:
        self.identifies.append(data)
        if conn.session is not None:
            self._kill(conn, 4005)  # already authenticated
            return
        if data.get("token") != self.token:
            self._kill(conn, 4004)  # authentication failed
            return
        intents = int(data.get("intents", 0))
        for name, bit in PRIVILEGED_INTENTS.items():
            if intents & bit and name not in self.privileged:
                self._kill(conn, 4014)  # disallowed intent(s)
                return
        session = _Session(secrets.token_hex(16), intents, data.get("shard"))
        self._sessions[session.id] = session
        self._session = session
        session.connection = conn
        conn.session = session
        ready: JSON = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(gid), "unavailable": True} for gid in self.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        self._append_event(session, "READY", ready)
        for guild_id in self.guilds:
            self._append_event(session, "GUILD_CREATE", self._guild_create(guild_id))
        pending, self._pending = self._pending, []
        for event, event_data, on_written in pending:
            if event == "GUILD_CREATE":
                continue  # every known guild was just sent
            self._append_event(session, event, event_data, on_written)
        conn.outbox.put_nowait(self._mark_ready)

    def _mark_ready(self) -> None:
        self._ready_count += 1
        self._notify()

    def _mark_resumed(self) -> None:
        self._resumed_count += 1
        self._notify()

    def _resume(self, conn: _Connection, data: JSON) -> None:
        self.resumes.append(data)
        session = self._sessions.get(str(data.get("session_id")))
        if data.get("token") != self.token or session is None or session is not self._session:
            conn.outbox.put_nowait(json.dumps({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None}))
            return
        old = session.connection
        if old is not None and old is not conn:
            self._kill(old, 4000, record=False)
        for item in session.replay(int(data.get("seq") or 0)):
            conn.outbox.put_nowait(item)
        session.connection = conn
        conn.session = session
        self._append_event(session, "RESUMED", {})
        conn.outbox.put_nowait(self._mark_resumed)

    def _request_members(self, conn: _Connection, data: JSON) -> None:
        guild_id = int(data.get("guild_id", 0))
        if guild_id not in self.guilds or conn.session is None:
            return
        chunk: JSON = {
            "guild_id": str(guild_id),
            "members": list(self._guild_members[guild_id].values()),
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        self._append_event(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        flags = 0
        for name in self.privileged:
            flags |= _APP_FLAG_FOR_INTENT[name]
        return flags

    # -- waiting -----------------------------------------------------------------------------------

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            changed.set()

    async def wait_until(
        self, check: Callable[[], Any], timeout: float = 10, what: str | Callable[[], str] = "condition"
    ) -> Any:
        """``check()``'s first truthy result, re-checked on every change in the fake and every 10 ms
        (for conditions on the bot's side); TimeoutError naming ``what`` after ``timeout`` seconds."""
        return await self._wait_until(check, timeout, what if callable(what) else lambda: what, poll=0.01)

    async def _wait_until(
        self,
        check: Callable[[], Any],
        timeout: float,
        describe: Callable[[], str],
        *,
        poll: float | None = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{describe()} within {timeout} s")
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, poll or remaining))

    async def wait_until_ready(self, timeout: float = 10, *, count: int = 1) -> None:
        """Until the client has IDENTIFYed ``count`` times in all and READY plus every GUILD_CREATE
        went out (discord.py itself fires ``on_ready`` ``guild_ready_timeout`` later)."""
        await self._wait_until(
            lambda: self._ready_count >= count,
            timeout,
            lambda: (
                f"{self._ready_count} of {count} READY (identifies: {len(self.identifies)}, "
                f"close codes: {self.close_codes})"
            ),
        )

    async def wait_for_resume(self, timeout: float = 10, *, count: int = 1) -> None:
        """Until ``count`` RESUMEs in all were answered: missed events replayed, then RESUMED sent."""
        await self._wait_until(
            lambda: self._resumed_count >= count,
            timeout,
            lambda: f"{self._resumed_count} of {count} resumes ({len(self.resumes)} RESUME requests)",
        )

    async def wait_for_message(
        self, channel_id: int, count: int = 1, timeout: float = 10
    ) -> list[SentMessage]:
        """The next ``count`` messages the bot sends to ``channel_id`` not returned by an earlier call.

        Each channel has a cursor, so successive calls return successive messages and a message
        sent before the call is not missed. Raises TimeoutError (saying what did arrive).
        """
        start = self._message_cursor.get(channel_id, 0)

        def check() -> list[SentMessage] | None:
            sent = self.messages_to(channel_id)
            return sent[start : start + count] if len(sent) >= start + count else None

        got = await self._wait_until(
            check,
            timeout,
            lambda: (
                f"channel {channel_id}: {len(self.messages_to(channel_id)) - start} of {count} "
                f"messages {[s.content for s in self.messages_to(channel_id)[start:]]!r}"
            ),
        )
        self._message_cursor[channel_id] = start + count
        return got

    async def wait_for_interaction_response(
        self, interaction_id: int | str, timeout: float = 10
    ) -> InteractionResponse:
        """The (first successful) response to an interaction."""
        key = int(interaction_id)
        return await self._wait_until(
            lambda: next((r for r in self.interaction_responses if r.interaction_id == key), None),
            timeout,
            lambda: f"no response to interaction {key} (callback statuses: {self._callback_statuses()})",
        )

    def _callback_statuses(self) -> list[int]:
        return [r.status for r in self.requests_to("POST /interactions/{id}/{token}/callback")]

    async def wait_for_followup(
        self, interaction_id: int | str, count: int = 1, timeout: float = 10
    ) -> list[Followup]:
        """The follow-ups and original-response edits of an interaction, once there are ``count``."""
        key = int(interaction_id)

        def check() -> list[Followup] | None:
            found = [f for f in self.followups if f.interaction_id == key]
            return found if len(found) >= count else None

        return await self._wait_until(
            check, timeout, lambda: f"fewer than {count} follow-ups to interaction {key}"
        )

    async def wait_for_requests(self, route: str, count: int = 1, timeout: float = 10) -> list[Request]:
        """All requests to ``route`` (e.g. ``POST /channels/{channel_id}/typing``), once ``count``."""
        return await self._wait_until(
            lambda: self.requests_to(route) if len(self.requests_to(route)) >= count else None,
            timeout,
            lambda: f"{len(self.requests_to(route))} of {count} {route} requests",
        )

    async def wait_for_typing(self, channel_id: int, count: int = 1, timeout: float = 10) -> None:
        await self._wait_until(
            lambda: self.typing.count(channel_id) >= count,
            timeout,
            lambda: f"{self.typing.count(channel_id)} of {count} typing requests in {channel_id}",
        )

    async def wait_for_held_downloads(self, count: int = 1, timeout: float = 10) -> list[int]:
        await self._wait_until(
            lambda: len(self.held_downloads) >= count,
            timeout,
            lambda: f"{len(self.held_downloads)} of {count} held downloads",
        )
        return list(self.held_downloads)

    def messages_to(self, channel_id: int) -> list[SentMessage]:
        """Everything the bot sent to ``channel_id``, oldest first."""
        return [s for s in self.sent if s.channel_id == channel_id]

    def requests_to(self, route: str) -> list[Request]:
        """Every recorded request to a route template, oldest first."""
        return [r for r in self.requests if r.route == route]

    def fail_next(
        self,
        route: str,
        *,
        status: int = 500,
        code: int = 0,
        message: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` requests to ``route`` (a template as in :attr:`requests`) fail.

        A 429 carries ``retry_after`` (default 0.05 s) and ``Via``, so discord.py waits and retries;
        a 5xx makes discord.py retry after 1, 3, 5... s.
        """
        if status == 429 and retry_after is None:
            retry_after = 0.05
        text = message or {
            400: "Bad Request",
            401: "401: Unauthorized",
            403: "Missing Permissions",
            404: "Unknown",
            429: "You are being rate limited.",
        }.get(status, f"{status}: Server Error")
        self._failures.setdefault(route, []).extend([_Failure(status, text, code, retry_after)] * times)

    def clear_records(self) -> None:
        """Forget recorded requests, messages, responses and downloads (state is kept)."""
        for records in (
            self.requests,
            self.unknown_routes,
            self.sent,
            self.edits,
            self.deleted,
            self.typing,
            self.reactions,
            self.interaction_responses,
            self.followups,
            self.downloads,
            self.held_downloads,
            self.errors,
        ):
            records.clear()
        self._message_cursor.clear()

    # -- REST --------------------------------------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._handle_gateway)
        router.add_get("/resume", self._handle_gateway)
        router.add_get("/{kind:attachments|ephemeral-attachments}/{path:.+}", self._handle_cdn)
        router.add_get("/media/{kind:attachments|ephemeral-attachments}/{path:.+}", self._handle_cdn)
        p = API_PREFIX
        routes: list[tuple[str, str, Callable[..., Any], bool]] = [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._add_reaction,
                True,
            ),
            ("POST", "/interactions/{id}/{token}/callback", self._interaction_callback, False),
            ("POST", "/webhooks/{app_id}/{token}", self._create_followup, False),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._get_webhook_message, False),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._edit_webhook_message, False),
            (
                "DELETE",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._delete_webhook_message,
                False,
            ),
            ("GET", "/applications/{app_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{app_id}/commands", self._put_commands, True),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands, True),
        ]
        for method, path, handler, auth in routes:
            router.add_route(method, p + path, self._endpoint(f"{method} {path}", handler, auth))
        router.add_route("*", p + "/{tail:.*}", self._unknown)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return await self._unknown(request)
        except web.HTTPMethodNotAllowed:
            return await self._unknown(request)

    async def _unknown(self, request: web.Request) -> web.Response:
        self.unknown_routes.append(f"{request.method} {request.path}")
        self._notify()
        return _json_response({"message": "Unknown", "code": 0}, status=404)

    def _endpoint(self, route: str, handler: Callable[..., Any], auth: bool) -> Callable[..., Any]:
        async def endpoint(request: web.Request) -> web.Response:
            try:
                body, files = await self._read_body(request)
            except ValueError:
                body, files = None, []
            try:
                if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                    raise _ApiError(401, "401: Unauthorized")
                failures = self._failures.get(route)
                if failures:
                    failure = failures.pop(0)
                    extra: JSON = {}
                    if failure.status == 429:
                        extra = {"retry_after": failure.retry_after, "global": False}
                    raise _ApiError(failure.status, failure.message, failure.code, None, **extra)
                response = handler(request, body, files)
                if asyncio.iscoroutine(response):
                    response = await response
            except _ApiError as exc:
                response = exc.response()
            except Exception as exc:  # a bug or a body the fake did not expect: say so, fast
                # (a 500 would make discord.py retry for ~16 s before it gives up)
                self.errors.append(f"{route}: {exc!r}")
                response = _ApiError(400, f"fake-discord failed on this request: {exc!r}", 50035).response()
            self.requests.append(
                Request(
                    route,
                    request.method,
                    request.path,
                    dict(request.query),
                    body,
                    response.status,
                    time.monotonic(),
                )
            )
            self._notify()
            return response

        return endpoint

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if not request.can_read_body:
            return None, []
        if request.content_type == "application/json":
            return await request.json(), []
        if request.content_type.startswith("multipart/"):
            body: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: discord.py never sends one
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                else:
                    data = await part.read()
                    content_type = part.headers.get("Content-Type")
                    files.append(UploadedFile(part.filename, content_type, bytes(data)))
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    # log-in and gateway discovery

    def _get_gateway(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response({"url": self.gateway_url.rstrip("/")})

    def _get_gateway_bot(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response(
            {
                "url": self.gateway_url.rstrip("/"),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    def _get_me(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response(self.bot_user)

    def _get_application(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "owner": self.user(self.owner_id),
                "team": None,
                "flags": self._application_flags(),
                "bot": self.bot_user,
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
            }
        )

    # channels and messages

    def _channel(self, request: web.Request) -> tuple[int, JSON]:
        channel_id = int(request.match_info["channel_id"])
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _ApiError(404, "Unknown Channel", 10003)
        return channel_id, channel

    def _get_channel(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response(self._channel(request)[1])

    def _create_dm(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        recipient = int((body or {}).get("recipient_id", 0))
        if recipient == 0:
            raise _form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        return _json_response(self.channels[self.dm_channel(recipient)])

    def _message_from_body(self, body: Any, files: list[UploadedFile], where: str) -> JSON:
        if not isinstance(body, dict):
            raise _ApiError(400, "Cannot send an empty message", 50006)
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise _form_error("content", "BASE_TYPE_STRING", "Must be a string")
        if content is not None and len(content) > MAX_CONTENT:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
        has_content = (content or "").strip() or body.get("embeds") or files or body.get("components")
        if not has_content and where != "edit":
            raise _ApiError(400, "Cannot send an empty message", 50006)
        return body

    def _uploaded_attachments(self, channel_id: int, files: list[UploadedFile]) -> list[JSON]:
        out = []
        for upload in files:
            payload = self.attachment(
                upload.data, filename=upload.filename or "file", content_type=upload.content_type
            )
            out.append(self._with_urls(payload, f"attachments/{channel_id}/{payload['id']}"))
        return out

    def _create_message(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, channel = self._channel(request)
        payload = self._message_from_body(body, files, "create")
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce") and (channel_id, nonce) in self._nonces:
            # Discord answers a retried send (same nonce, e.g. after a 5xx) with the first message
            return _json_response(self._rest_view(self._nonces[(channel_id, nonce)]))
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        message = self._new_message(channel_id, guild_id, self.bot_id, payload.get("content") or "")
        if nonce is not None:
            message["nonce"] = nonce
            self._nonces[(channel_id, nonce)] = message
        message["embeds"] = payload.get("embeds") or []
        message["flags"] = int(payload.get("flags") or 0)
        message["attachments"] = self._uploaded_attachments(channel_id, files)
        reference = payload.get("message_reference")
        if reference:
            target = self.messages.get(int(reference.get("message_id") or 0))
            if target is None and reference.get("fail_if_not_exists", True):
                raise _form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            if target is not None:
                message["type"] = TYPE_REPLY
                message["message_reference"] = {
                    "type": 0,
                    "message_id": target["id"],
                    "channel_id": target["channel_id"],
                    **({"guild_id": target["guild_id"]} if "guild_id" in target else {}),
                }
                message["referenced_message"] = {k: v for k, v in target.items() if k != "referenced_message"}
        message["mentions"] = [
            self._mention(int(uid), guild_id)
            for uid in dict.fromkeys(_USER_MENTION_RE.findall(message["content"]))
        ]
        self._store(message)
        self.sent.append(
            SentMessage(
                channel_id,
                payload.get("content"),
                reference,
                message["flags"],
                message["embeds"],
                payload.get("allowed_mentions"),
                files,
                message,
                payload,
                time.monotonic(),
            )
        )
        return _json_response(self._rest_view(message))

    def _rest_view(self, message: JSON) -> JSON:
        """A message as REST returns it: redacted unless the app was granted message content."""
        return self._redact(message, content_intent="message_content" in self.privileged)

    def _stored_message(self, request: web.Request) -> tuple[int, JSON]:
        channel_id, _ = self._channel(request)
        message = self.messages.get(int(request.match_info["message_id"]))
        if message is None or message["channel_id"] != str(channel_id):
            raise _ApiError(404, "Unknown Message", 10008)
        return channel_id, message

    def _get_message(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response(self._rest_view(self._stored_message(request)[1]))

    def _edit_message(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, message = self._stored_message(request)
        if message["author"]["id"] != str(self.bot_id):
            raise _ApiError(403, "Cannot edit a message authored by another user", 50005)
        payload = self._message_from_body(body, files, "edit")
        edited = self._apply_edit(message, payload)
        self.edits.append(Edit(channel_id, int(message["id"]), payload, edited, time.monotonic()))
        return _json_response(edited)

    def _apply_edit(self, message: JSON, payload: JSON) -> JSON:
        edited = dict(message)
        for key in ("content", "embeds", "flags", "components"):
            if key in payload and payload[key] is not None:
                edited[key] = payload[key]
        edited["edited_timestamp"] = _now_iso()
        self._store(edited, "MESSAGE_UPDATE")
        return edited

    def _delete_message(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, message = self._stored_message(request)
        self._forget(message)
        self.deleted.append((channel_id, int(message["id"])))
        return _no_content()

    def _typing(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, _ = self._channel(request)
        self.typing.append(channel_id)
        return _no_content()

    def _add_reaction(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        channel_id, message = self._stored_message(request)
        self.reactions.append((channel_id, int(message["id"]), request.match_info["emoji"]))
        return _no_content()

    # interactions

    def _interaction_by_token(self, request: web.Request) -> _Interaction:
        token = request.match_info["token"]
        state = next((i for i in self.interactions.values() if i.token == token), None)
        if state is None or state.token_expired:
            raise _ApiError(401, "Invalid Webhook Token", 50027)
        return state

    def _interaction_callback(
        self, request: web.Request, body: Any, files: list[UploadedFile]
    ) -> web.Response:
        state = self.interactions.get(int(request.match_info["id"]))
        if state is None or state.token != request.match_info["token"]:
            raise _ApiError(404, "Unknown interaction", 10062)
        if state.responded is not None:
            raise _ApiError(400, "Interaction has already been acknowledged.", 40060)
        late = (
            self.interaction_deadline is not None
            and state.created is not None
            and time.monotonic() - state.created > self.interaction_deadline
        )
        if state.expired or late:
            raise _ApiError(404, "Unknown interaction", 10062)
        if not isinstance(body, dict) or "type" not in body:
            raise _form_error("type", "BASE_TYPE_REQUIRED", "This field is required")
        kind = int(body["type"])
        data = body.get("data") or {}
        if kind == 4:
            self._message_from_body(data, files, "create")
        flags = int(data.get("flags") or 0)
        with_response = request.query.get("with_response", "false").lower() in ("1", "true")
        response = InteractionResponse(
            state.id, kind, data.get("content"), flags, data, files, with_response, time.monotonic()
        )
        state.responded = response
        self.interaction_responses.append(response)
        resource: JSON = {"type": kind}
        channel_id = int(state.payload["channel_id"])
        if kind in (4, 5):
            original = self._interaction_message(state, data if kind == 4 else {}, files, channel_id)
            if kind == 5:
                original["flags"] = FLAG_LOADING | (flags & FLAG_EPHEMERAL)
            state.original = original
            self._store(original)
            resource["message"] = original
        if not with_response:
            return _no_content()
        callback: JSON = {
            "interaction": {
                "id": str(state.id),
                "type": state.payload["type"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & FLAG_EPHEMERAL),
            },
            "resource": resource,
        }
        if state.original is not None:
            callback["interaction"]["response_message_id"] = state.original["id"]
        return _json_response(callback)

    def _interaction_message(
        self, state: _Interaction, data: JSON, files: list[UploadedFile], channel_id: int
    ) -> JSON:
        guild_id = int(state.payload["guild_id"]) if "guild_id" in state.payload else None
        message = self._new_message(channel_id, guild_id, self.bot_id, data.get("content") or "")
        user = state.payload.get("member", {}).get("user") or state.payload.get("user")
        message.update(
            type=TYPE_CHAT_INPUT_COMMAND,
            flags=int(data.get("flags") or 0),
            embeds=data.get("embeds") or [],
            webhook_id=str(self.application_id),
            application_id=str(self.application_id),
            interaction_metadata={
                "id": str(state.id),
                "type": 2,
                "user": user,
                "authorizing_integration_owners": state.payload.get("authorizing_integration_owners", {}),
                "name": state.payload["data"]["name"],
                "command_type": 1,
            },
            attachments=self._uploaded_attachments(channel_id, files),
        )
        return message

    def _check_app(self, request: web.Request) -> None:
        if int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(404, "Unknown Webhook", 10015)

    def _create_followup(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        self._check_app(request)
        state = self._interaction_by_token(request)
        if state.responded is None:
            raise _ApiError(404, "Unknown Webhook", 10015)
        payload = self._message_from_body(body, files, "create")
        flags = int(payload.get("flags") or 0)
        channel_id = int(state.payload["channel_id"])
        original = state.original
        if state.responded.type == 5 and original is not None and original["flags"] & FLAG_LOADING:
            # the first follow-up after a defer replaces the "thinking..." message, keeping its visibility
            message = {**self._interaction_message(state, payload, files, channel_id), "id": original["id"]}
            message["flags"] = original["flags"] & FLAG_EPHEMERAL
            state.original = message
            self._store(message, "MESSAGE_UPDATE")
        else:
            message = self._interaction_message(state, payload, files, channel_id)
            self._store(message)
        self.followups.append(
            Followup(
                state.id,
                payload.get("content"),
                int(message["flags"]) | flags,
                payload,
                files,
                message,
                time.monotonic(),
            )
        )
        if request.query.get("wait", "false").lower() in ("1", "true"):
            return _json_response(message)
        return _no_content()

    def _webhook_message(self, request: web.Request) -> tuple[_Interaction, JSON]:
        self._check_app(request)
        state = self._interaction_by_token(request)
        message_id = request.match_info["message_id"]
        if message_id == "@original":
            message = state.original
        else:
            message = self.messages.get(int(message_id))
            if message is not None and message.get("interaction_metadata", {}).get("id") != str(state.id):
                message = None
        if message is None:
            raise _ApiError(404, "Unknown Message", 10008)
        return state, message

    def _get_webhook_message(
        self, request: web.Request, body: Any, files: list[UploadedFile]
    ) -> web.Response:
        return _json_response(self._webhook_message(request)[1])

    def _edit_webhook_message(
        self, request: web.Request, body: Any, files: list[UploadedFile]
    ) -> web.Response:
        state, message = self._webhook_message(request)
        payload = self._message_from_body(body, files, "edit")
        loaded = {**message, "flags": int(message.get("flags") or 0) & ~FLAG_LOADING}
        edited = self._apply_edit(loaded, payload)
        if state.original is not None and state.original["id"] == edited["id"]:
            state.original = edited
        self.followups.append(
            Followup(
                state.id,
                payload.get("content"),
                int(edited["flags"]),
                payload,
                files,
                edited,
                time.monotonic(),
                edit_of=request.match_info["message_id"],
            )
        )
        return _json_response(edited)

    def _delete_webhook_message(
        self, request: web.Request, body: Any, files: list[UploadedFile]
    ) -> web.Response:
        state, message = self._webhook_message(request)
        self._forget(message)
        if state.original is message:
            state.original = None
        self.deleted.append((int(message["channel_id"]), int(message["id"])))
        return _no_content()

    # application commands

    def _commands_scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(403, "Missing Access", 50001)
        guild = request.match_info.get("guild_id")
        if guild is not None and int(guild) not in self.guilds:
            raise _ApiError(403, "Missing Access", 50001)
        return int(guild) if guild is not None else None

    def _get_commands(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        return _json_response(self.commands.get(self._commands_scope(request), []))

    def _put_commands(self, request: web.Request, body: Any, files: list[UploadedFile]) -> web.Response:
        scope = self._commands_scope(request)
        if not isinstance(body, list) or len(body) > 100:
            raise _form_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        previous = {c["name"]: c["id"] for c in self.commands.get(scope, [])}
        stored = []
        for index, command in enumerate(body):
            self._check_command(index, command)
            entry = {
                **command,
                "id": previous.get(command["name"]) or str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": command.get("type", 1),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        self.commands[scope] = stored
        return _json_response(stored)

    @staticmethod
    def _check_command(index: int, command: JSON) -> None:
        name = command.get("name", "")
        chat_input = command.get("type", 1) == 1
        if chat_input and not _COMMAND_NAME_RE.match(name):
            raise _form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if chat_input and not 1 <= len(command.get("description", "")) <= 100:
            raise _form_error(
                f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        options = command.get("options") or []
        if len(options) > 25:
            raise _form_error(f"{index}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        optional_seen = False
        for option in options:
            if option.get("type") in (OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP):
                continue
            if not _COMMAND_NAME_RE.match(option.get("name", "")):
                raise _form_error(
                    f"{index}.options", "APPLICATION_COMMAND_INVALID_NAME", "Option name is invalid"
                )
            if option.get("required"):
                if optional_seen:
                    raise _form_error(
                        f"{index}.options",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                optional_seen = True

    # CDN

    async def _handle_cdn(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].split("/")
        try:
            attachment = self.attachments[int(parts[-2])]
        except (ValueError, IndexError, KeyError):
            return web.Response(status=404, text="Not Found")
        if parts[-1] != attachment.filename:
            return web.Response(status=404, text="Not Found")
        gate = self._download_gate
        if gate is not None:
            self.held_downloads.append(attachment.id)
            self._notify()
            await gate.wait()
        self.downloads.append(attachment.id)
        self._notify()
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )
