"""The answers the bot gave, in Redis, for the buttons under them (``SharedAnswers``): a "Chart"
or a 👍/👎 pressed on an answer another process gave still finds it.

Key: ``PREFIX:reply:{request id}``, the answer as JSON (question, prediction, notice, model
revision), expiring after a day like the process's own ``FeedbackBook``; the index
``PREFIX:replies`` bounds them to ``MAX_REPLIES``, the oldest first. While Redis is down, the
process's own book still answers for the answers it gave.
"""

from __future__ import annotations

import contextlib
import json
import logging

from bots.feedback import Answered
from bots.state.bounded import bounded_put
from bots.state.link import RedisLink, RedisUnavailable

log = logging.getLogger(__name__)

#: an answer's buttons work this long, on every process (as ``FeedbackBook``'s default)
TTL_S = 86_400
#: answers kept at most (about 0.6 kB each)
MAX_REPLIES = 20_000


class RedisAnswers:
    """``SharedAnswers`` in Redis: the answers given, by request id, bounded and expiring."""

    def __init__(self, link: RedisLink, *, ttl_s: int = TTL_S, size: int = MAX_REPLIES) -> None:
        self.link = link
        self.ttl_s = ttl_s
        self.size = size
        self.index = link.key("replies")
        self._put = bounded_put(link.client)

    def _key(self, request_id: str) -> str:
        return self.link.key("reply", request_id)

    async def put(self, answered: Answered) -> None:
        value = json.dumps(answered.to_dict())
        key = self._key(answered.request_id)
        args: list[str | int] = [value, self.ttl_s, self.size]
        with contextlib.suppress(RedisUnavailable):  # then its buttons work on this process only
            await self.link.call(lambda _: self._put(keys=[key, self.index], args=args))

    async def get(self, request_id: str) -> Answered | None:
        return await self.link.get_json(self._key(request_id), Answered.from_dict, "answer for the buttons")
