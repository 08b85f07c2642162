"""A loopback Telegram Bot API that the real, unmodified python-telegram-bot (22.8) talks to.

Pointing PTB at it: ``ApplicationBuilder().base_url(fake.base_url).base_file_url(fake.base_file_url)``
(the knob a self-hosted Bot API server uses), or for ``python main.py`` the variables of
:meth:`FakeTelegram.env`. What PTB sends, and so what the fake reads:

- ``POST {base_url}{token}/{method}``; form-urlencoded bodies in which every non-string value is
  JSON-encoded (``chat_id=42`` arrives as the string "42"), multipart when a file is uploaded,
  empty bodies for ``getMe`` and ``deleteWebhook``;
- ``getFile`` answers a relative ``file_path`` that PTB downloads from
  ``{base_file_url}{token}/{file_path}``. Were that path an existing local file, PTB would read the
  disk instead, so the fake's paths name none;
- ``getUpdates`` long polling: an ``offset`` confirms every earlier update; a pending poll returns
  as soon as an update is injected, and at :meth:`~FakeTelegram.stop` (PTB's ``updater.stop()``
  cancels its poll, then calls ``getUpdates(timeout=0)``: without the wake every teardown would
  cost the poll timeout).

Methods: getMe, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands, getUpdates,
sendMessage, sendPhoto, sendChatAction, getFile (and the download), answerCallbackQuery; any other
method is a 404, as on the real API. Errors a bot could get wrong are the real ones: a wrong
token (401), an unknown chat, an empty or over-long text, ``Message to be replied not found`` when
the quoted message is gone and sending without the reply was not allowed, getFile above 20 MB.

Webhooks, as Telegram does them: once ``setWebhook`` registered a URL (and a ``secret_token``),
``getUpdates`` answers 409 Conflict and every new update is POSTed to that URL as JSON with the
secret in ``X-Telegram-Bot-Api-Secret-Token`` (recorded under :data:`WEBHOOK`, with the status the
bot answered); an update whose delivery failed stays pending (``getWebhookInfo`` counts it and
shows the last error; ``getUpdates`` returns it after ``deleteWebhook``).
:meth:`~FakeTelegram.post_update` POSTs any update to any URL, with any secret, as Telegram would.

Users act through :meth:`~FakeTelegram.send_text`, :meth:`~FakeTelegram.send_photo`,
:meth:`~FakeTelegram.send_document`, :meth:`~FakeTelegram.send_media_group`,
:meth:`~FakeTelegram.click` (an inline-keyboard button) and :meth:`~FakeTelegram.delete_message`.
Every update is first parsed with ``telegram.Update.de_json``: one PTB cannot parse is never
confirmed and would be re-polled about 1000 times a second. An update needs ``update_id``; a
message ``message_id``, ``date``, ``chat{id,type}``, ``from{id,is_bot,first_name}``; a PhotoSize
``file_id``, ``file_unique_id``, ``width``, ``height``; a command a ``bot_command`` entity.

For fast tests: ``updater.start_polling(timeout=1, poll_interval=0)``, and stop with
``updater.stop()``, ``app.stop()``, ``app.shutdown()``.

Faults (see ``tests/loopback.py``): ``fail_next("sendMessage", status=429, retry_after=3)``;
``fail_next("getUpdates", status=502, times=None)`` until ``clear_failures()``;
``fail_next(DOWNLOAD, status=500)`` for a file download; ``hold_downloads()``.
Everything runs on the event loop that started the fake.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import telegram
from aiohttp import web

from tests import loopback
from tests.loopback import DIRECT, DOWNLOAD, Failure, LoopbackServer, Outbox, UploadedFile

JSON = dict[str, Any]

#: what the fake records each webhook delivery under (params: the update, and the url)
WEBHOOK = "webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_PHOTO_SIZES: tuple[tuple[int, int], ...] = ((90, 90), (320, 320), (800, 800))
GET_FILE_LIMIT = 20 * 1024 * 1024  # the cloud Bot API refuses getFile above this
MAX_TEXT = 4096  # UTF-16 code units
# form values that stay strings (every other value arrives JSON-encoded)
_TEXT_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "action",
        "file_id",
        "photo",
        "callback_query_id",
        "url",
        "secret_token",
    }
)
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,32})(@[A-Za-z0-9_]{3,32})?(?=\s|$)")
_MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}\b")
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    403: "Forbidden: bot was blocked by the user",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and text limits."""
    return len(text.encode("utf-16-le")) // 2


def detect_entities(text: str) -> list[JSON]:
    """The entities Telegram attaches: a leading ``/command[@bot]`` and ``@username`` mentions."""
    entities: list[JSON] = []
    command = _COMMAND_RE.match(text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))})
    for mention in _MENTION_RE.finditer(text):
        if command and mention.start() < command.end():
            continue  # the @bot suffix belongs to the command entity
        offset, length = utf16_len(text[: mention.start()]), utf16_len(mention.group(0))
        entities.append({"type": "mention", "offset": offset, "length": length})
    return entities


@dataclass
class SentMessage(loopback.SentMessage):
    """A message the bot sent (``sendMessage``/``sendPhoto``); ``message`` is the Message JSON it got back."""

    method: str
    chat_id: int
    text: str | None  # the text, or a photo's caption, as sent
    reply_to_message_id: int | None  # from reply_parameters or reply_to_message_id
    params: dict[str, Any]
    photo: bytes | None = None

    @property
    def message_id(self) -> int:
        return int(self.message["message_id"])


@dataclass
class FakeFile:
    """A file the fake serves; ``file_size`` may declare more than ``data`` holds (never allocated)."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_size: int
    file_path: str


class _ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def _error(exc: _ApiError) -> web.Response:
    body: JSON = {"ok": False, "error_code": exc.status, "description": exc.description}
    if exc.retry_after is not None:
        body["parameters"] = {"retry_after": exc.retry_after}
    return _json(body, exc.status)


def _injected(failure: Failure) -> _ApiError:
    if failure.status == 429:
        retry_after = math.ceil(failure.retry_after if failure.retry_after is not None else 1)
        return _ApiError(429, failure.message or f"Too Many Requests: retry after {retry_after}", retry_after)
    description = failure.message or _DEFAULT_DESCRIPTIONS.get(failure.status, f"Error {failure.status}")
    return _ApiError(failure.status, description)


def _decode(key: str, value: str) -> Any:
    """A form value as PTB meant it: non-strings arrive JSON-encoded."""
    if key in _TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeTelegram(LoopbackServer):
    """The Bot API on 127.0.0.1 (a free port): ``async with FakeTelegram() as fake: ...``."""

    def __init__(self, token: str = "123:TEST", *, bot_username: str = "vqa_test_bot") -> None:
        super().__init__()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0] or 1)
        self.bot_user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "VQA Test Bot",
            "username": bot_username,
        }
        #: parse each injected update as PTB would; a benchmark sending only well-formed updates
        #: may turn it off (it is the fake's most expensive step)
        self.validate_updates = True
        self.outbox: Outbox[SentMessage] = Outbox(self.recorder)
        self.files: dict[str, FakeFile] = {}
        self.chats: dict[int, JSON] = {}
        self.users: dict[int, JSON] = {}
        self._files_by_path: dict[str, str] = {}
        self._messages: dict[int, dict[int, JSON]] = {}  # chat -> message_id -> message
        self._last_message_id: dict[int, int] = {}  # per chat, shared by users and the bot
        self._injected_at: dict[tuple[int, int], float] = {}
        self._queries: dict[str, JSON] = {}  # callback queries not yet answered
        self._ids = itertools.count(1)
        self._pending: deque[tuple[int, str]] = deque()  # (update_id, update JSON text)
        self._pollers: set[asyncio.Future[None]] = set()
        #: the registered webhook (``url``, ``secret_token``, ``allowed_updates``), or None: polling
        self.webhook: JSON | None = None
        self._last_webhook_error: tuple[int, str] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._methods = {
            "getme": self._get_me,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "deletewebhook": self._delete_webhook,
            "setmycommands": self._set_my_commands,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "sendchataction": self._send_chat_action,
            "getfile": self._get_file,
            "answercallbackquery": self._answer_callback_query,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/file/{prefix}/{file_path:.+}", self._handle_download)
        app.router.add_route("*", "/{prefix}/{method}", self._handle_method)

    async def on_stop(self) -> None:
        self._wake_pollers()
        for task in list(self._deliveries):
            task.cancel()
        if self._deliveries:
            await asyncio.wait(self._deliveries, timeout=3)
        if self._http is not None:
            await self._http.close()
            self._http = None

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
            **DIRECT,
        }

    # -- users' actions ----------------------------------------------------------------------------

    def add_file(self, data: bytes, *, file_size: int | None = None, suffix: str = ".jpg") -> str:
        """Serve ``data`` through getFile and the download; returns its ``file_id``."""
        n = next(self._ids)
        file_id = f"FILE{n}-{secrets.token_hex(4)}"
        path = f"fake-telegram-{secrets.token_hex(6)}/file_{n}{suffix}"  # names no local file
        size = len(data) if file_size is None else file_size
        self.files[file_id] = FakeFile(file_id, f"U{n}", data, size, path)
        self._files_by_path[path] = file_id
        return file_id

    def inject_update(self, update: JSON) -> JSON:
        """Queue an update for getUpdates (``update_id`` assigned when missing).

        Raises ValueError when python-telegram-bot cannot parse it.
        """
        update = {"update_id": next(self._ids), **update}
        if self.validate_updates:
            try:
                telegram.Update.de_json(update, bot=None)  # type: ignore[arg-type]
            except Exception as exc:
                raise ValueError(f"python-telegram-bot cannot parse this update: {exc!r}") from exc
        message = update.get("message")
        if isinstance(message, dict):  # remembered, so the bot may reply to it
            chat_id, message_id = message["chat"]["id"], message["message_id"]
            self.chats.setdefault(chat_id, message["chat"])
            self._messages.setdefault(chat_id, {})[message_id] = message
            self._last_message_id[chat_id] = max(self._last_message_id.get(chat_id, 0), message_id)
            self._injected_at[(chat_id, message_id)] = time.monotonic()
        if self.webhook is not None:
            task = asyncio.get_running_loop().create_task(self._deliver(update))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            return update
        self._pending.append((update["update_id"], json.dumps(update)))
        self._wake_pollers()
        return update

    async def post_update(self, update: JSON, url: str, *, secret: str | None = None) -> int:
        """POST ``update`` to ``url`` as Telegram delivers a webhook update (``secret``: the header's
        value; None sends none); the HTTP status, or 0 when the connection failed. Recorded."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        try:
            async with self._http.post(url, json=update, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError):
            status = 0
        self.record(WEBHOOK, {"update": update, "url": url}, status)
        return status

    async def _deliver(self, update: JSON) -> None:
        """Deliver a new update to the registered webhook; if it fails, it stays pending."""
        webhook = self.webhook
        assert webhook is not None
        status = await self.post_update(update, webhook["url"], secret=webhook.get("secret_token"))
        if not 200 <= status < 300:
            self._last_webhook_error = (int(time.time()), f"Wrong response from the webhook: {status}")
            self._pending.append((update["update_id"], json.dumps(update)))

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        chat_type: str | None = None,
        reply_to: int | None = None,
    ) -> JSON:
        """A user's text message; a leading /command and @mentions get their entities."""
        message = self._new_message(chat_id, user_id, chat_type, reply_to)
        message["text"] = text
        if entities := detect_entities(text):
            message["entities"] = entities
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
        reply_to: int | None = None,
    ) -> JSON:
        """A user's photo: one PhotoSize (own file) per size, smallest first as Telegram sends them.

        ``image`` is the bytes every size serves, or ``{(width, height): bytes}``.
        """
        by_size: dict[tuple[int, int], bytes]
        if isinstance(image, Mapping):
            by_size = dict(sorted(image.items(), key=lambda item: item[0][0] * item[0][1]))
        else:
            by_size = {(width, height): image for width, height in sizes}
        message = self._new_message(chat_id, user_id, chat_type, reply_to)
        message["photo"] = [
            {**self._file_json(self.add_file(data)), "width": width, "height": height}
            for (width, height), data in by_size.items()
        ]
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        self._add_caption(message, caption)
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
    ) -> JSON:
        """A user's document; ``file_size`` may exceed ``len(data)``; ``mime_type=None`` declares none."""
        file_id = self.add_file(data, file_size=file_size, suffix="." + file_name.rsplit(".", 1)[-1])
        message = self._new_message(chat_id, user_id, chat_type, None)
        message["document"] = {**self._file_json(file_id), "file_name": file_name}
        if mime_type is not None:
            message["document"]["mime_type"] = mime_type
        self._add_caption(message, caption)
        self.inject_update({"message": message})
        return message

    def click(self, chat_id: int, user_id: int, message_id: int, data: str) -> JSON:
        """A user presses the inline-keyboard button carrying ``data`` under a bot's message.

        Returns the callback query; the bot answers it with ``answerCallbackQuery``.
        """
        message = self._messages.get(chat_id, {}).get(message_id)
        buttons = [
            b for row in (message or {}).get("reply_markup", {}).get("inline_keyboard", []) for b in row
        ]
        if data not in [b.get("callback_data") for b in buttons]:
            raise ValueError(f"no message {message_id} in chat {chat_id} with a button {data!r}")
        query: JSON = {
            "id": str(next(self._ids)),
            "from": self._user(user_id),
            "chat_instance": str(chat_id),
            "message": message,
            "data": data,
        }
        self._queries[query["id"]] = query
        self.inject_update({"callback_query": query})
        return query

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A message deleted by its sender (bots get no update): quoting it then fails."""
        if self._messages.get(chat_id, {}).pop(message_id, None) is None:
            raise ValueError(f"no message {message_id} in chat {chat_id} to delete")

    def injected_at(self, chat_id: int, message_id: int) -> float:
        """``time.monotonic()`` when a user message was injected (for latency measurements)."""
        return self._injected_at[(chat_id, message_id)]

    @property
    def pending_updates(self) -> int:
        """Updates injected and not yet confirmed by a later getUpdates offset."""
        return len(self._pending)

    def _user(self, user_id: int) -> JSON:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
        return user

    def _chat(self, chat_id: int, chat_type: str | None) -> JSON:
        chat = self.chats.get(chat_id)
        kind = chat_type or (chat["type"] if chat else "private")
        if chat is not None and kind != chat["type"]:
            raise ValueError(f"chat {chat_id} is a {chat['type']} chat, not {kind}")
        if kind == "private" and chat_id <= 0:
            raise ValueError("a private chat's id is its user's (positive) id")
        if kind != "private" and chat_id >= 0:
            raise ValueError("group and supergroup ids are negative (e.g. -100123)")
        if chat is None:
            chat = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = self._user(chat_id)["first_name"]
            else:
                chat["title"] = f"Group {-chat_id}"
            self.chats[chat_id] = chat
        return chat

    def _new_message(self, chat_id: int, user_id: int, chat_type: str | None, reply_to: int | None) -> JSON:
        chat = self._chat(chat_id, chat_type)
        if chat["type"] == "private" and chat_id != user_id:
            raise ValueError(f"private chat {chat_id} can only hold messages from user {chat_id}")
        message = self._message(chat, self._user(user_id))
        if reply_to is not None:
            target = self._messages.get(chat_id, {}).get(reply_to)
            if target is None:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            message["reply_to_message"] = _one_level(target)
        return message

    def _message(self, chat: JSON, sender: JSON) -> JSON:
        chat_id = chat["id"]
        self._last_message_id[chat_id] = message_id = self._last_message_id.get(chat_id, 0) + 1
        return {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": sender}

    def _file_json(self, file_id: str) -> JSON:
        stored = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.file_size}

    @staticmethod
    def _add_caption(message: JSON, caption: str | None) -> None:
        if caption is not None:
            message["caption"] = caption
            if entities := detect_entities(caption):
                message["caption_entities"] = entities

    # -- reading and waiting -----------------------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        """Everything the bot sent (sendMessage, sendPhoto), oldest first."""
        return self.outbox.messages

    def replies(self, chat_id: int) -> list[SentMessage]:
        """Everything the bot sent to ``chat_id`` (sendMessage, sendPhoto), oldest first."""
        return self.outbox.to(chat_id)

    async def wait_for_reply(self, chat_id: int, *, count: int = 1, timeout: float = 10) -> list[SentMessage]:
        """The next ``count`` messages the bot sends to ``chat_id`` that no earlier call returned.

        Each chat has a cursor, so successive calls return successive replies and a reply sent
        before the call is not missed.
        """
        return await self.outbox.next(
            chat_id,
            count,
            timeout=timeout,
            what=lambda unread: (
                f"chat {chat_id}: {len(unread)} of {count} replies "
                f"{[s.text for s in unread]!r}, {self.pending_updates} updates unconfirmed"
            ),
        )

    async def wait_until_confirmed(self, *, timeout: float = 10) -> None:
        """Until the bot has fetched and confirmed every injected update."""
        await self.wait_for(
            lambda _: self.pending_updates == 0,
            timeout=timeout,
            what=lambda: f"{self.pending_updates} updates unconfirmed",
        )

    # -- HTTP --------------------------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.Response:
        prefix, method = request.match_info["prefix"], request.match_info["method"]
        params = await _read_params(request)
        failure = self.take_failure(method) if prefix == f"bot{self.token}" else None
        if failure is not None and failure.hang:
            await self.held(method, params)
            failure = None
        try:
            if not prefix.startswith("bot"):
                raise _ApiError(404, "Not Found")
            if prefix != f"bot{self.token}":
                raise _ApiError(401, "Unauthorized")
            if failure is not None:
                raise _injected(failure)
            if method.lower() == "getupdates" and self.webhook is not None:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if method.lower() == "getupdates":
                self.record(method, params)  # when asked, not after the long poll
                return await self._get_updates(params)
            handler = self._methods.get(method.lower())
            if handler is None:
                raise _ApiError(404, "Not Found: method not found")
            result = handler(params)
        except _ApiError as exc:
            self.record(method, params, exc.status)
            return _error(exc)
        self.record(method, params)
        return _json({"ok": True, "result": result})

    async def _handle_download(self, request: web.Request) -> web.Response:
        prefix, path = request.match_info["prefix"], request.match_info["file_path"]
        if prefix != f"bot{self.token}":
            return _error(_ApiError(401, "Unauthorized"))
        file_id = self._files_by_path.get(path)
        if file_id is None:
            return _error(_ApiError(404, "Not Found: file not found"))
        failure = self.take_failure(DOWNLOAD)
        if failure is not None and failure.hang:
            await self.held(DOWNLOAD, file_id)
        elif failure is not None:
            self.record(DOWNLOAD, file_id, failure.status)
            return _error(_injected(failure))
        await self.download_gate(file_id)
        self.record(DOWNLOAD, file_id)
        return web.Response(body=self.files[file_id].data, content_type="application/octet-stream")

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        if params.get("offset") is not None:
            self._confirm(int(params["offset"]))
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if not self._pending and timeout > 0 and not self.closing:
            poller = asyncio.get_running_loop().create_future()
            self._pollers.add(poller)
            try:
                await asyncio.wait_for(poller, timeout)
            except TimeoutError:
                pass
            finally:
                self._pollers.discard(poller)
        batch = [] if self.closing else [text for _, text in itertools.islice(self._pending, limit)]
        body = '{"ok": true, "result": [' + ", ".join(batch) + "]}"
        return web.Response(body=body.encode(), content_type="application/json")

    def _confirm(self, offset: int) -> None:
        while self._pending and self._pending[0][0] < offset:
            self._pending.popleft()
        self.changed()

    def _wake_pollers(self) -> None:
        pollers, self._pollers = self._pollers, set()
        for poller in pollers:
            if not poller.done():
                poller.set_result(None)

    # -- methods: params -> result, or raise _ApiError ---------------------------------------------

    def _get_me(self, params: dict[str, Any]) -> JSON:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False}

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise _bad("url is empty")
        if not url:  # an empty URL removes the webhook, as on the real API
            self.webhook = None
            return True
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self._pending.clear()
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
        self._wake_pollers()  # a long poll in progress ends (the real API ends it with 409)
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook and self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
        if self.webhook and self._last_webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = self._last_webhook_error
        return info

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates") is True:
            self._pending.clear()
        return True

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command"))) for c in commands
        ):
            raise _bad("BOT_COMMAND_INVALID")
        return True

    def _known_chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int) or chat_id not in self.chats:
            raise _bad("chat not found")
        return chat_id

    def _reply_to(self, chat_id: int, params: dict[str, Any]) -> tuple[int | None, JSON | None]:
        """The quoted message's id and JSON (None when it is gone and that was allowed)."""
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_without = bool(reply.get("allow_sending_without_reply"))
        else:
            message_id = params.get("reply_to_message_id")
            allow_without = params.get("allow_sending_without_reply") is True
        if message_id is None:
            return None, None
        target = self._messages[chat_id].get(int(message_id))
        if target is None and not allow_without:
            raise _bad("message to be replied not found")
        return int(message_id), _one_level(target) if target is not None else None

    def _bot_message(self, chat_id: int, params: dict[str, Any]) -> tuple[int | None, JSON]:
        reply_id, target = self._reply_to(chat_id, params)
        message = self._message(self.chats[chat_id], self.bot_user)
        if target is not None:
            message["reply_to_message"] = target
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return reply_id, message

    def _store_sent(self, sent: SentMessage) -> JSON:
        self._messages[sent.chat_id][sent.message_id] = sent.message
        self.outbox.add(sent.chat_id, sent)
        return sent.message

    def _send_message(self, params: dict[str, Any]) -> JSON:
        chat_id = self._known_chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise _bad("message is too long")
        reply_id, message = self._bot_message(chat_id, params)
        message["text"] = text
        sent = SentMessage(message, time.monotonic(), "sendMessage", chat_id, text, reply_id, params)
        return self._store_sent(sent)

    def _send_photo(self, params: dict[str, Any]) -> JSON:
        chat_id = self._known_chat(params)
        photo = params.get("photo")
        if isinstance(photo, UploadedFile) and photo.data:
            data = photo.data
        elif isinstance(photo, str) and photo in self.files:
            data = self.files[photo].data
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        reply_id, message = self._bot_message(chat_id, params)
        message["photo"] = [{**self._file_json(self.add_file(data)), "width": 320, "height": 320}]
        caption = params.get("caption")
        if caption is not None:
            message["caption"] = caption
        sent = SentMessage(message, time.monotonic(), "sendPhoto", chat_id, caption, reply_id, params, data)
        return self._store_sent(sent)

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        self._known_chat(params)
        if params.get("action") not in ("typing", "upload_photo"):
            raise _bad("wrong parameter action in request")
        return True

    def _get_file(self, params: dict[str, Any]) -> JSON:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise _bad("invalid file_id")
        if stored.file_size > GET_FILE_LIMIT:
            raise _bad("file is too big")
        return {**self._file_json(stored.file_id), "file_path": stored.file_path}

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        if self._queries.pop(str(params.get("callback_query_id")), None) is None:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        return True


def _one_level(message: JSON) -> JSON:
    """A quoted message as Telegram nests it: without its own quote."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = {key: _decode(key, value) for key, value in request.query.items()}
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        body = await request.json()
        return {**params, **body} if isinstance(body, dict) else params
    for key, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            params[key] = UploadedFile(value.filename, value.content_type, value.file.read())
        else:
            params[key] = _decode(key, str(value))
    return params
