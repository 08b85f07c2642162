"""A loopback Telegram Bot API that the real, unmodified python-telegram-bot talks to.

Point PTB at it with ``ApplicationBuilder().base_url(fake.base_url).base_file_url(fake.base_file_url)``
(or, for ``python main.py``, the env vars from :meth:`FakeTelegram.env`). It speaks what PTB 22.8
uses (see /work/shared/notes/loopback-fakes.md): ``POST {base_url}{token}/{method}`` with
form-urlencoded, JSON or multipart bodies; ``getUpdates`` long polling with ``offset``
confirmation; file downloads from ``{base_file_url}{token}/{file_path}``.

Tests inject user messages with :meth:`FakeTelegram.send_text`, :meth:`~FakeTelegram.send_photo`,
:meth:`~FakeTelegram.send_document` (each validated with ``telegram.Update.de_json``, because an
update PTB cannot parse is re-polled in a hot loop), then wait for what the bot did with
:meth:`~FakeTelegram.wait_for_reply` / :meth:`~FakeTelegram.wait_for_calls` -- deadlines, never
sleeps. Every call is recorded (:attr:`~FakeTelegram.calls`), every message the bot sent
(:attr:`~FakeTelegram.sent`), every file download (:attr:`~FakeTelegram.downloads`), so tests can
also assert what did NOT happen. :meth:`~FakeTelegram.hold_downloads` keeps file downloads waiting
until :meth:`~FakeTelegram.release_downloads`, to hold a question in flight (e.g. across a
SIGTERM). Errors the real API gives are reproduced where a bot could get them wrong: unknown chat,
reply to a missing message, empty or too long text, unparseable HTML / MarkdownV2 (approximate),
a file over the 20 MB getFile limit, a wrong token (401), a second concurrent getUpdates (409);
:meth:`~FakeTelegram.fail_next` injects more (429 with ``retry_after``, 500...).

Everything runs on the event loop that called :meth:`~FakeTelegram.start`; bookkeeping is O(1) per
call (per-chat and per-method indexes), so 200 chats and thousands of updates are cheap.
"""

from __future__ import annotations

import asyncio
import html.parser
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import telegram
from aiohttp import web

JSON = dict[str, Any]

DEFAULT_PHOTO_SIZES: tuple[tuple[int, int], ...] = ((90, 90), (320, 320), (800, 800))
GET_FILE_LIMIT = 20 * 1024 * 1024  # the cloud Bot API refuses getFile above this
MAX_TEXT = 4096  # UTF-16 code units after entity parsing
MAX_CAPTION = 1024
CHAT_ACTIONS = frozenset(
    {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice"}
    | {"upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"}
)
# Form values arrive as strings, with every non-string JSON-encoded; these stay strings.
_TEXT_FIELDS = frozenset(
    {"text", "caption", "parse_mode", "action", "file_id", "photo", "document", "language_code"}
    | {"description", "short_description", "name", "title", "query", "url", "emoji"}
    | {"callback_query_id", "inline_message_id", "business_connection_id", "message_effect_id"}
)
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,32})(@[A-Za-z0-9_]{3,32})?(?=\s|$)")
_MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}\b")
_BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram entity offsets and text limits."""
    return len(text.encode("utf-16-le")) // 2


def detect_entities(text: str) -> list[JSON]:
    """The entities Telegram would attach: a leading ``/command[@bot]`` and ``@username`` mentions."""
    entities: list[JSON] = []
    match = _COMMAND_RE.match(text)
    if match:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))})
    for mention in _MENTION_RE.finditer(text):
        if match and mention.start() < match.end():
            continue  # the @bot suffix of the command is part of the command entity
        entities.append(
            {
                "type": "mention",
                "offset": utf16_len(text[: mention.start()]),
                "length": utf16_len(mention.group(0)),
            }
        )
    return entities


# -- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request (e.g. ``sendPhoto`` with bytes)."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Call:
    """One request to the API: its method as sent, decoded params, monotonic time, HTTP status."""

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200


@dataclass
class SentMessage:
    """A message the bot sent (``sendMessage`` / ``sendPhoto``) and the Message JSON it got back."""

    method: str
    chat_id: int
    text: str | None  # the text (or the caption of a photo) exactly as sent, markup included
    reply_to_message_id: int | None  # from reply_to_message_id or reply_parameters
    parse_mode: str | None
    message: JSON
    params: dict[str, Any]
    at: float
    photo: bytes | None = None

    @property
    def message_id(self) -> int:
        return int(self.message["message_id"])


@dataclass(frozen=True)
class ChatActionRecord:
    """A ``sendChatAction`` (e.g. "typing") the bot sent."""

    chat_id: int
    action: str
    at: float


@dataclass
class FakeFile:
    """A file the fake serves: ``file_size`` may be declared larger than ``data`` (never allocated)."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_size: int
    file_path: str


class _ApiError(Exception):
    """Becomes a Bot API error response."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def response(self) -> web.Response:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return _json_response(body, status=self.code)


@dataclass
class _Failure:
    code: int
    description: str
    parameters: JSON | None


@dataclass
class _Waiter:
    target: int
    future: asyncio.Future[None] = field(compare=False)


def _json_response(body: JSON, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def _ok(result: Any) -> web.Response:
    return _json_response({"ok": True, "result": result})


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _default_description(code: int, retry_after: int | None) -> str:
    return {
        400: "Bad Request: injected failure",
        401: "Unauthorized",
        403: "Forbidden: bot was blocked by the user",
        404: "Not Found",
        409: "Conflict: terminated by other getUpdates request",
        429: f"Too Many Requests: retry after {retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(code, f"Error {code}")


# -- markup checks (approximate: catch what breaks for real, not every corner) ---------------------

_HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre"}
    | {"blockquote", "tg-emoji", "br"}
)


class _HtmlChecker(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.plain: list[str] = []
        self.error: str | None = None

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            self._fail(f'Unsupported start tag "{tag}"')
        elif tag != "br":
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self._fail(f'Unexpected end tag "{tag}"')
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data:
            self._fail("Unsupported start tag")  # a bare "<" that is not a tag
        self.plain.append(data)

    def handle_entityref(self, name: str) -> None:
        self.plain.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.plain.append(html.unescape(f"&#{name};"))


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_FORMATTING = frozenset("_*[]()~`|>")  # may legitimately appear unescaped as markup


def check_markup(text: str, parse_mode: str | None) -> tuple[str | None, str]:
    """``(error, plain_text)`` for ``text`` under ``parse_mode``; ``error`` is None when it parses."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        checker = _HtmlChecker()
        checker.feed(text)
        checker.close()
        if checker.error is None and checker.stack:
            checker.error = f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"'
        return checker.error, "".join(checker.plain)
    if mode == "markdownv2":
        in_code = False
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "`":
                in_code = not in_code
            elif not in_code and text.startswith("](", i):
                end = text.find(")", i)  # a link's URL: only ")" and "\\" need escaping there
                i = end + 1 if end > 0 else len(text)
                continue
            elif not in_code and ch in _MDV2_RESERVED and ch not in _MDV2_FORMATTING:
                return f"Character '{ch}' is reserved and must be escaped with the preceding '\\'", text
            i += 1
        return None, text
    return None, text


# -- the fake --------------------------------------------------------------------------------------


class FakeTelegram:
    """A Bot API server on 127.0.0.1 (a free port): ``async with FakeTelegram() as fake: ...``."""

    def __init__(
        self,
        token: str = "123:TEST",
        *,
        bot_id: int | None = None,
        bot_username: str = "vqa_test_bot",
        bot_first_name: str = "VQA Test Bot",
    ) -> None:
        self.token = token
        self.bot_id = bot_id if bot_id is not None else int(token.split(":", 1)[0] or 1)
        self.bot_username = bot_username
        self.bot_user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        #: parse every injected update as PTB would (a benchmark sending only well-formed
        #: updates may turn this off: it is the fake's most expensive step)
        self.validate_updates = True
        # records
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []
        self.edits: list[SentMessage] = []
        self.chat_actions: list[ChatActionRecord] = []
        self.downloads: list[str] = []  # file_ids, one per successful download
        self.held_downloads: list[str] = []  # file_ids whose download waited at the hold
        self.updates: list[JSON] = []  # every update injected, in order
        self.files: dict[str, FakeFile] = {}
        self.chats: dict[int, JSON] = {}
        self.users: dict[int, JSON] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}  # (scope JSON, language) -> commands
        self.latency: dict[str, float] = {}  # lower-case method -> seconds added before answering
        # state
        self._files_by_path: dict[str, str] = {}
        self._messages: dict[int, dict[int, JSON]] = {}  # chat -> message_id -> message
        self._bot_messages: set[tuple[int, int]] = set()
        self._last_message_id: dict[int, int] = {}  # per chat, shared by users and the bot
        self._injected_at: dict[tuple[int, int], float] = {}
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._pending: deque[tuple[int, str]] = deque()  # (update_id, update JSON text)
        self._min_offset = 0
        self._pollers: set[asyncio.Future[str]] = set()
        self._failures: dict[str, deque[_Failure]] = {}
        self._calls_by_method: dict[str, list[Call]] = {}
        self._sent_by_chat: dict[int, list[SentMessage]] = {}
        self._reply_cursor: dict[int, int] = {}
        self._chat_waiters: dict[int, list[_Waiter]] = {}
        self._call_waiters: dict[str, list[_Waiter]] = {}
        self._confirm_waiters: list[asyncio.Future[None]] = []
        self._download_gate: asyncio.Event | None = None  # set: downloads flow; None: no hold
        self._held_waiters: list[_Waiter] = []
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifetime ----------------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        """Listen on a free loopback port; returns self."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)  # uploads up to the API's 50 MB
        app.router.add_route("*", "/file/{prefix}/{file_path:.+}", self._handle_download)
        app.router.add_route("*", "/{prefix}/{method}", self._handle_method)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Answer pending long polls at once (so clients stop fast), then close the server."""
        self._closing = True
        self._wake_pollers("stop")
        self.release_downloads()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.root}/file/bot"

    def env(self) -> dict[str, str]:
        """Environment for a ``python main.py`` child process talking to this fake."""
        return {
            "TELEGRAM_TOKEN": self.token,
            "TELEGRAM_BASE_URL": self.base_url,
            "TELEGRAM_BASE_FILE_URL": self.base_file_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- files -------------------------------------------------------------------------------------

    def add_file(self, data: bytes, *, file_size: int | None = None, suffix: str = ".jpg") -> str:
        """Serve ``data`` through getFile + download; returns its ``file_id``.

        ``file_size`` may declare more than ``len(data)`` to stand for a huge file without
        allocating it (getFile then refuses it above 20 MB, as the real API does).
        """
        n = next(self._file_ids)
        file_id = f"FILE{n}-{secrets.token_hex(4)}"
        # a path that names no local file: PTB would read the disk instead of downloading
        path = f"fake-telegram-{secrets.token_hex(6)}/file_{n}{suffix}"
        size = len(data) if file_size is None else file_size
        self.files[file_id] = FakeFile(file_id, f"U{n}", data, size, path)
        self._files_by_path[path] = file_id
        return file_id

    # -- users, chats, updates ---------------------------------------------------------------------

    def set_user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> JSON:
        """Register (or rename) a user; unknown users get ``first_name="User <id>"`` on first use."""
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name or f"User {user_id}"}
        for key, value in (
            ("last_name", last_name),
            ("username", username),
            ("language_code", language_code),
        ):
            if value is not None:
                user[key] = value
        self.users[user_id] = user
        return user

    def set_chat(self, chat_id: int, *, chat_type: str = "private", title: str | None = None) -> JSON:
        """Register a chat; a private chat's id is its user's id, groups have negative ids."""
        if chat_type not in ("private", "group", "supergroup"):
            raise ValueError(f"unknown chat_type {chat_type!r}")
        if chat_type == "private" and chat_id <= 0:
            raise ValueError("a private chat's id is its user's (positive) id")
        if chat_type != "private" and chat_id >= 0:
            raise ValueError("group and supergroup ids are negative (e.g. -100123)")
        chat: JSON = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = self._user(chat_id)["first_name"]
        else:
            chat["title"] = title or f"Group {-chat_id}"
        self.chats[chat_id] = chat
        self._messages.setdefault(chat_id, {})
        return chat

    def inject_update(self, update: JSON) -> JSON:
        """Queue a hand-built update for getUpdates (``update_id`` assigned when missing).

        Raises ValueError when python-telegram-bot cannot parse it: such an update would never
        be confirmed and would be re-polled in a hot loop.
        """
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        if self.validate_updates:
            try:
                telegram.Update.de_json(update, bot=None)  # type: ignore[arg-type]
            except Exception as exc:
                raise ValueError(f"python-telegram-bot cannot parse this update: {exc!r}") from exc
        message = update.get("message")
        if isinstance(message, dict):  # remembered, so the bot may reply to it
            chat_id = message["chat"]["id"]
            self.chats.setdefault(chat_id, message["chat"])
            self._messages.setdefault(chat_id, {})[message["message_id"]] = message
            last = self._last_message_id.get(chat_id, 0)
            self._last_message_id[chat_id] = max(last, message["message_id"])  # hand-built ids too
            self._injected_at[(chat_id, message["message_id"])] = time.monotonic()
        self.updates.append(update)
        self._pending.append((update["update_id"], json.dumps(update)))
        self._wake_pollers("update")
        return update

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        chat_type: str | None = None,
        reply_to: JSON | int | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A user's text message; a leading /command and @mentions get entities unless given."""
        message = self._new_message(chat_id, user_id, chat_type, reply_to)
        message["text"] = text
        found = detect_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        self.inject_update({"message": message})
        return message

    def send_photo(
        self,
        chat_id: int,
        user_id: int,
        image: bytes | Mapping[tuple[int, int], bytes],
        *,
        caption: str | None = None,
        chat_type: str | None = None,
        sizes: Sequence[tuple[int, int]] = DEFAULT_PHOTO_SIZES,
        media_group_id: str | None = None,
        reply_to: JSON | int | None = None,
        caption_entities: list[JSON] | None = None,
    ) -> JSON:
        """A user's photo: one PhotoSize (own file) per size, smallest first as Telegram sends them.

        ``image`` is either the bytes every size serves, or ``{(width, height): bytes}``.
        """
        if isinstance(image, Mapping):
            by_size = dict(sorted(image.items(), key=lambda item: item[0][0] * item[0][1]))
        else:
            by_size = {tuple(size): image for size in sizes}
        message = self._new_message(chat_id, user_id, chat_type, reply_to)
        photo = []
        for (width, height), data in by_size.items():
            file_id = self.add_file(data)
            stored = self.files[file_id]
            photo.append(
                {
                    "file_id": file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": width,
                    "height": height,
                    "file_size": stored.file_size,
                }
            )
        message["photo"] = photo
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        self._add_caption(message, caption, caption_entities)
        self.inject_update({"message": message})
        return message

    def send_media_group(
        self,
        chat_id: int,
        user_id: int,
        images: Iterable[bytes],
        *,
        caption: str | None = None,
        chat_type: str | None = None,
    ) -> list[JSON]:
        """An album: one update per photo sharing a ``media_group_id``, the caption on the first."""
        group_id = secrets.token_hex(8)
        return [
            self.send_photo(
                chat_id,
                user_id,
                data,
                caption=caption if i == 0 else None,
                chat_type=chat_type,
                media_group_id=group_id,
            )
            for i, data in enumerate(images)
        ]

    def send_document(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str | None,
        caption: str | None = None,
        file_size: int | None = None,
        chat_type: str | None = None,
        reply_to: JSON | int | None = None,
    ) -> JSON:
        """A user's document (e.g. an image sent "as file"); ``file_size`` may exceed ``len(data)``.

        ``mime_type=None`` leaves the type out, as Telegram does when the sender declared none.
        """
        file_id = self.add_file(data, file_size=file_size, suffix="." + file_name.rsplit(".", 1)[-1])
        stored = self.files[file_id]
        message = self._new_message(chat_id, user_id, chat_type, reply_to)
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "file_size": stored.file_size,
        }
        if mime_type is not None:
            message["document"]["mime_type"] = mime_type
        self._add_caption(message, caption, None)
        self.inject_update({"message": message})
        return message

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A message deleted by its sender or a group admin (bots get no update for that).

        Replying to it then fails with "message to be replied not found", as on the real API.
        """
        if self._messages.get(chat_id, {}).pop(message_id, None) is None:
            raise ValueError(f"no message {message_id} in chat {chat_id} to delete")

    def injected_at(self, chat_id: int, message_id: int) -> float:
        """``time.monotonic()`` when a user message was injected (for latency measurements)."""
        return self._injected_at[(chat_id, message_id)]

    @property
    def pending_updates(self) -> int:
        """Updates injected but not yet confirmed by the bot (via a later getUpdates offset)."""
        return len(self._pending)

    def _user(self, user_id: int) -> JSON:
        return self.users.get(user_id) or self.set_user(user_id)

    def _chat(self, chat_id: int, chat_type: str | None) -> JSON:
        chat = self.chats.get(chat_id)
        if chat is None:
            return self.set_chat(chat_id, chat_type=chat_type or "private")
        if chat_type is not None and chat["type"] != chat_type:
            raise ValueError(f"chat {chat_id} is a {chat['type']} chat, not {chat_type}")
        return chat

    def _message_id(self, chat_id: int) -> int:
        message_id = self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return message_id

    def _new_message(
        self, chat_id: int, user_id: int, chat_type: str | None, reply_to: JSON | int | None
    ) -> JSON:
        chat = self._chat(chat_id, chat_type)
        if chat["type"] == "private" and chat_id != user_id:
            raise ValueError(f"private chat {chat_id} can only hold messages from user {chat_id}")
        message: JSON = {
            "message_id": self._message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(user_id),
        }
        if reply_to is not None:
            message["reply_to_message"] = self._reply_target(chat_id, reply_to)
        return message

    def _reply_target(self, chat_id: int, reply_to: JSON | int) -> JSON:
        if isinstance(reply_to, dict):
            target = reply_to
        else:
            target = self._messages.get(chat_id, {}).get(reply_to)
            if target is None:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
        # Telegram nests one level only
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    @staticmethod
    def _add_caption(message: JSON, caption: str | None, entities: list[JSON] | None) -> None:
        if caption is None:
            return
        message["caption"] = caption
        found = detect_entities(caption) if entities is None else entities
        if found:
            message["caption_entities"] = found

    # -- error injection ---------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (429 defaults to ``retry_after=1``)."""
        parameters: JSON | None = None
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
        if retry_after is not None:
            parameters = {"retry_after": retry_after}
        failure = _Failure(
            error_code, description or _default_description(error_code, retry_after), parameters
        )
        self._failures.setdefault(method.lower(), deque()).extend([failure] * times)

    def hold_downloads(self) -> None:
        """Make file downloads wait (request received, no bytes sent) until :meth:`release_downloads`.

        Each held download is listed in :attr:`held_downloads` as it arrives
        (see :meth:`wait_for_held_downloads`); getFile itself still answers at once.
        """
        if self._download_gate is None or self._download_gate.is_set():
            self._download_gate = asyncio.Event()

    def release_downloads(self) -> None:
        """Let held downloads (and later ones) go through."""
        gate, self._download_gate = self._download_gate, None
        if gate is not None:
            gate.set()

    async def wait_for_held_downloads(self, count: int = 1, timeout: float = 10) -> list[str]:
        """The file_ids of held downloads once at least ``count`` have arrived at the hold."""
        if len(self.held_downloads) < count:
            try:
                await self._wait(self._held_waiters, count, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"{len(self.held_downloads)} of {count} held downloads within {timeout} s"
                ) from None
        return list(self.held_downloads)

    def set_latency(self, method: str, seconds: float) -> None:
        """Delay every answer to ``method`` (e.g. a slow sendMessage for a benchmark)."""
        self.latency[method.lower()] = seconds

    # -- reading and waiting -----------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        """Every recorded call of ``method`` (case-insensitive), oldest first."""
        return list(self._calls_by_method.get(method.lower(), ()))

    def replies(self, chat_id: int) -> list[SentMessage]:
        """Everything the bot sent to ``chat_id`` (sendMessage, sendPhoto), oldest first."""
        return list(self._sent_by_chat.get(chat_id, ()))

    async def wait_for_reply(self, chat_id: int, *, count: int = 1, timeout: float = 10) -> list[SentMessage]:
        """The next ``count`` messages the bot sends to ``chat_id`` not returned by an earlier call.

        Each chat has a cursor: messages returned here are consumed, so successive calls return
        successive replies, and a reply that came before the call is not missed.
        Raises TimeoutError (saying what did arrive) after ``timeout`` seconds.
        """
        start = self._reply_cursor.get(chat_id, 0)
        target = start + count
        sent = self._sent_by_chat.setdefault(chat_id, [])
        if len(sent) < target:
            try:
                await self._wait(self._chat_waiters.setdefault(chat_id, []), target, timeout)
            except TimeoutError:
                got = [s.text for s in sent[start:]]
                raise TimeoutError(
                    f"chat {chat_id}: {len(got)} of {count} replies within {timeout} s: {got!r}; "
                    f"{self.pending_updates} updates unconfirmed"
                ) from None
        self._reply_cursor[chat_id] = target
        return sent[start:target]

    async def wait_for_calls(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        """All calls of ``method`` once at least ``count`` were made in total (since start or clear)."""
        key = method.lower()
        calls = self._calls_by_method.setdefault(key, [])
        if len(calls) < count:
            try:
                await self._wait(self._call_waiters.setdefault(key, []), count, timeout)
            except TimeoutError:
                raise TimeoutError(f"{len(calls)} of {count} {method} calls within {timeout} s") from None
        return list(calls)

    async def wait_until_confirmed(self, timeout: float = 10) -> None:
        """Wait until the bot has confirmed (fetched and acknowledged) every injected update."""
        if self.pending_updates == 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm_waiters.append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.pending_updates} updates still unconfirmed after {timeout} s"
            ) from None
        finally:
            if future in self._confirm_waiters:
                self._confirm_waiters.remove(future)

    def clear_records(self) -> None:
        """Forget recorded calls, sent messages, chat actions and downloads (state is kept)."""
        self.calls.clear()
        self.sent.clear()
        self.edits.clear()
        self.chat_actions.clear()
        self.downloads.clear()
        self.held_downloads.clear()
        self._calls_by_method.clear()
        self._sent_by_chat.clear()
        self._reply_cursor.clear()

    @staticmethod
    async def _wait(waiters: list[_Waiter], target: int, timeout: float) -> None:
        waiter = _Waiter(target, asyncio.get_running_loop().create_future())
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        finally:
            if waiter in waiters:
                waiters.remove(waiter)

    @staticmethod
    def _notify(waiters: list[_Waiter] | None, length: int) -> None:
        if not waiters:
            return
        for waiter in [w for w in waiters if w.target <= length]:
            waiters.remove(waiter)
            if not waiter.future.done():
                waiter.future.set_result(None)

    def _wake_pollers(self, reason: str) -> None:
        """Resolve pending long polls; safe to call from another thread than the fake's loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not None and running is not self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_pollers_now, reason)
        else:
            self._wake_pollers_now(reason)

    def _wake_pollers_now(self, reason: str) -> None:
        pollers, self._pollers = self._pollers, set()
        for poller in pollers:
            if not poller.done():
                poller.set_result(reason)

    # -- HTTP --------------------------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.Response:
        prefix, method = request.match_info["prefix"], request.match_info["method"]
        try:
            params = await self._read_params(request)
        except web.HTTPRequestEntityTooLarge:
            return _ApiError(413, "Request Entity Too Large").response()
        except Exception:  # a malformed body: the method then reports its missing parameters
            params = {}
        key = method.lower()
        try:
            if not prefix.startswith("bot"):
                raise _ApiError(404, "Not Found")
            if prefix[3:] != self.token:
                raise _ApiError(401, "Unauthorized")
            failures = self._failures.get(key)
            if failures:
                failure = failures.popleft()
                raise _ApiError(failure.code, failure.description, failure.parameters)
            if key not in self._methods and key != "getupdates":
                raise _ApiError(404, "Not Found: method not found")
            if self.latency.get(key):
                await asyncio.sleep(self.latency[key])
            if key == "getupdates":
                self._record(method, params, 200)  # recorded when asked, not after the long poll
                return await self._get_updates(params)
            result = self._methods[key](self, params)
        except _ApiError as exc:
            self._record(method, params, exc.code)
            return exc.response()
        self._record(method, params, 200)
        return _ok(result)

    async def _handle_download(self, request: web.Request) -> web.Response:
        prefix, path = request.match_info["prefix"], request.match_info["file_path"]
        if not prefix.startswith("bot") or prefix[3:] != self.token:
            return _ApiError(401, "Unauthorized").response()
        file_id = self._files_by_path.get(path)
        if file_id is None:
            return _ApiError(404, "Not Found: file not found").response()
        gate = self._download_gate
        if gate is not None:
            self.held_downloads.append(file_id)
            self._notify(self._held_waiters, len(self.held_downloads))
            await gate.wait()
        self.downloads.append(file_id)
        return web.Response(body=self.files[file_id].data, content_type="application/octet-stream")

    @staticmethod
    async def _read_params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in request.query.items():
            params[key] = _decode(key, value)
        if not request.can_read_body:
            return params
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            return params
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = UploadedFile(value.filename, value.content_type, value.file.read())
            else:
                params[key] = _decode(key, str(value))
        return params

    def _record(self, method: str, params: dict[str, Any], status: int) -> None:
        call = Call(method, params, time.monotonic(), status)
        self.calls.append(call)
        calls = self._calls_by_method.setdefault(method.lower(), [])
        calls.append(call)
        self._notify(self._call_waiters.get(method.lower()), len(calls))

    # -- getUpdates --------------------------------------------------------------------------------

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = params.get("offset")
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if offset is not None:
            self._confirm(int(offset))
        # the real API ends an older long poll when a new one comes in (two bot instances)
        self._wake_pollers_now("conflict")
        batch = self._take(limit)
        if batch or timeout == 0 or self._closing:
            return self._updates_response(batch)
        poller: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pollers.add(poller)
        try:
            reason = await asyncio.wait_for(poller, timeout)
        except TimeoutError:
            reason = "timeout"
        finally:
            self._pollers.discard(poller)
        if reason == "conflict":
            return _ApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
            ).response()
        return self._updates_response([] if reason == "stop" else self._take(limit))

    def _confirm(self, offset: int) -> None:
        pending = self._pending
        if offset < 0:  # keep the last -offset updates, forget the rest
            while len(pending) > -offset:
                pending.popleft()
        else:
            self._min_offset = max(self._min_offset, offset)
            while pending and pending[0][0] < self._min_offset:
                pending.popleft()
        if not pending and self._confirm_waiters:
            waiters, self._confirm_waiters = self._confirm_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _take(self, limit: int) -> list[str]:
        return [text for _, text in itertools.islice(self._pending, limit)]

    @staticmethod
    def _updates_response(batch: list[str]) -> web.Response:
        body = '{"ok": true, "result": [' + ", ".join(batch) + "]}"
        return web.Response(body=body.encode(), content_type="application/json")

    # -- other methods (sync: params -> result, or raise _ApiError) --------------------------------

    def _get_me(self, params: dict[str, Any]) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _true(self, params: dict[str, Any]) -> bool:
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._pending.clear()
            self._confirm(self._min_offset)
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> JSON:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": self.pending_updates}

    def _known_chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, str):
            raise _bad("chat not found")  # @usernames are not modelled
        if int(chat_id) not in self.chats:
            raise _bad("chat not found")
        return int(chat_id)

    def _reply_to(self, chat_id: int, params: dict[str, Any]) -> tuple[int | None, JSON | None]:
        """The replied-to id and message, from reply_parameters or reply_to_message_id."""
        reply = params.get("reply_parameters")
        allow_without = params.get("allow_sending_without_reply") in (True, "true")
        target_chat = chat_id
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_without = allow_without or bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") is not None:
                target_chat = int(reply["chat_id"])
        else:
            message_id = params.get("reply_to_message_id")
        if message_id is None:
            return None, None
        target = self._messages.get(target_chat, {}).get(int(message_id))
        if target is None:
            if allow_without:
                return int(message_id), None
            raise _bad("message to be replied not found")
        return int(message_id), {k: v for k, v in target.items() if k != "reply_to_message"}

    def _bot_message(self, chat_id: int, reply_to: JSON | None, params: dict[str, Any]) -> JSON:
        message: JSON = {
            "message_id": self._message_id(chat_id),
            "date": int(time.time()),
            "chat": self.chats[chat_id],
            "from": self.bot_user,
        }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return message

    def _store_sent(self, sent: SentMessage) -> None:
        chat_id = sent.chat_id
        self._messages[chat_id][sent.message_id] = sent.message
        self._bot_messages.add((chat_id, sent.message_id))
        self.sent.append(sent)
        per_chat = self._sent_by_chat.setdefault(chat_id, [])
        per_chat.append(sent)
        self._notify(self._chat_waiters.get(chat_id), len(per_chat))

    @staticmethod
    def _checked_text(text: Any, parse_mode: str | None, *, limit: int, what: str) -> None:
        error, plain = check_markup(text, parse_mode)
        if error is not None:
            raise _bad(f"can't parse entities: {error}")
        if utf16_len(plain) > limit:
            raise _bad(f"{what} is too long")

    def _send_message(self, params: dict[str, Any]) -> JSON:
        chat_id = self._known_chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode") or None
        self._checked_text(text, parse_mode, limit=MAX_TEXT, what="message")
        reply_id, reply_to = self._reply_to(chat_id, params)
        message = self._bot_message(chat_id, reply_to, params)
        message["text"] = text
        sent = SentMessage(
            "sendMessage", chat_id, text, reply_id, parse_mode, message, params, time.monotonic()
        )
        self._store_sent(sent)
        return message

    def _send_photo(self, params: dict[str, Any]) -> JSON:
        chat_id = self._known_chat(params)
        photo = params.get("photo")
        caption = params.get("caption")
        parse_mode = params.get("parse_mode") or None
        if caption is not None:
            self._checked_text(caption, parse_mode, limit=MAX_CAPTION, what="message caption")
        if isinstance(photo, UploadedFile):
            data = photo.data
        elif isinstance(photo, str) and photo in self.files:
            data = self.files[photo].data
        elif isinstance(photo, str) and photo.startswith(("http://", "https://")):
            data = b""
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        if isinstance(photo, UploadedFile) and not data:
            raise _bad("file must be non-empty")
        reply_id, reply_to = self._reply_to(chat_id, params)
        file_id = self.add_file(data)
        stored = self.files[file_id]
        message = self._bot_message(chat_id, reply_to, params)
        message["photo"] = [
            {
                "file_id": file_id,
                "file_unique_id": stored.file_unique_id,
                "width": 320,
                "height": 320,
                "file_size": stored.file_size,
            }
        ]
        if caption is not None:
            message["caption"] = caption
        sent = SentMessage(
            "sendPhoto", chat_id, caption, reply_id, parse_mode, message, params, time.monotonic(), data
        )
        self._store_sent(sent)
        return message

    def _edit_message_text(self, params: dict[str, Any]) -> JSON:
        chat_id = self._known_chat(params)
        message_id = int(params.get("message_id") or 0)
        message = self._messages[chat_id].get(message_id)
        if message is None:
            raise _bad("message to edit not found")
        if (chat_id, message_id) not in self._bot_messages:
            raise _bad("message can't be edited")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode") or None
        self._checked_text(text, parse_mode, limit=MAX_TEXT, what="message")
        if message.get("text") == text and message.get("reply_markup") == params.get("reply_markup"):
            raise _bad(
                "message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message"
            )
        edited = {**message, "text": text, "edit_date": int(time.time())}
        self._messages[chat_id][message_id] = edited
        reply = edited.get("reply_to_message")
        self.edits.append(
            SentMessage(
                "editMessageText",
                chat_id,
                text,
                reply.get("message_id") if reply else None,
                parse_mode,
                edited,
                params,
                time.monotonic(),
            )
        )
        return edited

    def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = self._known_chat(params)
        if self._messages[chat_id].pop(int(params.get("message_id") or 0), None) is None:
            raise _bad("message to delete not found")
        return True

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = self._known_chat(params)
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self.chat_actions.append(ChatActionRecord(chat_id, str(action), time.monotonic()))
        return True

    def _get_file(self, params: dict[str, Any]) -> JSON:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise _bad("invalid file_id")
        if stored.file_size > GET_FILE_LIMIT:
            raise _bad("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("commands must be a list of at most 100 commands")
        for command in commands:
            if not _BOT_COMMAND_RE.match(str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    def _get_my_commands(self, params: dict[str, Any]) -> list[JSON]:
        return self.commands.get(self._commands_key(params), [])

    def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    _methods: dict[str, Any] = {  # noqa: RUF012 - a constant table, filled below
        "getme": _get_me,
        "deletewebhook": _delete_webhook,
        "getwebhookinfo": _get_webhook_info,
        "sendmessage": _send_message,
        "sendphoto": _send_photo,
        "editmessagetext": _edit_message_text,
        "deletemessage": _delete_message,
        "sendchataction": _send_chat_action,
        "getfile": _get_file,
        "setmycommands": _set_my_commands,
        "getmycommands": _get_my_commands,
        "deletemycommands": _delete_my_commands,
        "close": _true,
        "logout": _true,
    }


def _decode(key: str, value: str) -> Any:
    """A form value as PTB meant it: non-strings arrive JSON-encoded (``chat_id=42`` is "42")."""
    if key in _TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
