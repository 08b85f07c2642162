"""A loopback OpenAI-compatible chat server that the real ``openai`` client talks to.

``POST /v1/chat/completions`` is recorded under the route :data:`CHAT` with params
:class:`ChatRequest` (the JSON body and the ``Authorization`` header) and answered in OpenAI's
shape: the answer is ``answer_for(question)`` (by default a sentence that names the question, so
a test can check order), with ``logprobs.content`` when ``logprobs`` is a list of per-token
log-probabilities (None: the server returns none, as many do). ``key``: requests without
``Authorization: Bearer KEY`` get a 401. ``together``: hold each request until that many are in
flight at once (a check that a batch is sent concurrently; a 500 after 5 s without them).
Faults come from :class:`~tests.loopback.LoopbackServer` (``fail_next``, ``hang``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer

CHAT = "chat"


@dataclass(frozen=True)
class ChatRequest:
    body: dict[str, Any]
    authorization: str | None

    @property
    def question(self) -> str:
        return str(self.user_parts()["text"]["text"])

    @property
    def image_url(self) -> str:
        return str(self.user_parts()["image_url"]["image_url"]["url"])

    def user_parts(self) -> dict[str, dict[str, Any]]:
        [user] = [m for m in self.body["messages"] if m["role"] == "user"]
        return {part["type"]: part for part in user["content"]}


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "server_error", "code": status}}
    return web.json_response(body, status=status)


class FakeOpenAI(LoopbackServer):
    def __init__(
        self,
        *,
        key: str | None = None,
        logprobs: list[float] | None = None,
        answer_for: Callable[[str], str] = lambda question: f"An answer to: {question}",
        together: int = 1,
    ) -> None:
        super().__init__()
        self.key = key
        self.logprobs = logprobs
        self.answer_for = answer_for
        self.together = together
        self._in_flight = 0
        self._all_in = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)

    @property
    def requests(self) -> list[ChatRequest]:
        """The chat requests answered, oldest first."""
        return [c.params for c in self.calls_of(CHAT) if c.status == 200]

    async def chat(self, request: web.Request) -> web.StreamResponse:
        params = ChatRequest(await request.json(), request.headers.get("Authorization"))
        failure = self.take_failure(CHAT)
        if failure is not None and failure.hang:
            await self.held(CHAT, params)
        elif failure is not None:
            self.record(CHAT, params, failure.status)
            return _error(failure.status, failure.message or "the fake failed on purpose")
        if self.key is not None and params.authorization != f"Bearer {self.key}":
            self.record(CHAT, params, 401)
            return _error(401, "Incorrect API key provided")
        if not await self._wait_for_the_others():
            self.record(CHAT, params, 500)
            return _error(500, "the other requests of the batch never came")
        self.record(CHAT, params)
        return web.json_response(self.completion(params))

    async def _wait_for_the_others(self) -> bool:
        self._in_flight += 1
        if self._in_flight >= self.together:
            self._all_in.set()
        try:
            await asyncio.wait_for(self._all_in.wait(), 5.0)
            return True
        except TimeoutError:
            return False

    def completion(self, params: ChatRequest) -> dict[str, Any]:
        answer = self.answer_for(params.question)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if self.logprobs is not None:
            tokens: list[dict[str, Any]] = [
                {"token": f"t{i}", "logprob": lp, "bytes": None, "top_logprobs": []}
                for i, lp in enumerate(self.logprobs)
            ]
            choice["logprobs"] = {"content": tokens}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": params.body.get("model"),
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
