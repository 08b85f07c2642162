"""The conversation core: every rule of a chat turn, decided once for every platform.

``ChatCore.handle(event)`` takes a platform-free ``ChatEvent`` and returns the one ``Reply`` it
gets (or None: a group message not meant for the bot). Which image a question is about, what
is remembered for follow-ups, what is refused before downloading, the prompts, the per-user
rate limit and queue, the engine call and the prediction-log line all live here; adapters only
translate platform objects into events and deliver replies.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from bots import replies
from bots.chart import render_chart
from bots.conversation import ConversationBounds
from bots.events import Button, ChatEvent, Command, ImageRef, Outcome, Reply
from bots.feedback import Answered, FeedbackBook, SharedAnswers
from bots.memory import ImageStore, MemoryKey
from bots.prediction_log import PredictionLog
from bots.ratelimit import RateLimiter
from bots.user_queue import QueueFullError, SharedLoad, UserQueue
from vqa_engine import (
    CorruptImageError,
    EmptyImageError,
    EngineError,
    ImageShapeError,
    ImageTooLargeError,
    InferenceError,
    InvalidQuestionError,
    Prediction,
    UnsupportedImageError,
    VQAInputError,
)
from vqa_engine.conversation import History
from vqa_engine.formats import is_readable_mime
from vqa_engine.options import DEFAULT_MAX_IMAGE_BYTES
from vqa_engine.serving.model_facts import ModelFacts

if TYPE_CHECKING:
    from vqa_engine.serving.engine import EngineStats

log = logging.getLogger(__name__)

_REJECTED: dict[type[VQAInputError], Outcome] = {
    EmptyImageError: Outcome.REJECTED_EMPTY_IMAGE,
    UnsupportedImageError: Outcome.REJECTED_NOT_IMAGE,
    ImageTooLargeError: Outcome.REJECTED_TOO_LARGE,
    CorruptImageError: Outcome.REJECTED_CORRUPT_IMAGE,
    ImageShapeError: Outcome.REJECTED_IMAGE_SHAPE,
    InvalidQuestionError: Outcome.REJECTED_BAD_QUESTION,
}
_ASK = re.compile(r"^/ask(@\w+)?\b", re.IGNORECASE)


class Answerer(Protocol):
    """What the core needs from ``vqa_engine.VQAEngine``."""

    async def answer(
        self, image: bytes, question: str, *, top_k: int | None = None, history: History = ()
    ) -> Prediction: ...

    def stats(self) -> EngineStats: ...

    @property
    def model_facts(self) -> ModelFacts:
        """What the model's package says about it (raises ``EngineError`` before it loads)."""
        ...


def extract_question(text: str | None) -> str:
    """The question in a caption or message: without a leading ``/ask`` and extra spaces."""
    if not text:
        return ""
    return " ".join(_ASK.sub("", text.strip(), count=1).split())


class ChatCore:
    """One per process, shared by every front end (built in ``service.builders``)."""

    def __init__(
        self,
        engine: Answerer,
        *,
        limiter: RateLimiter,
        queue: UserQueue,
        memory: ImageStore,
        prediction_log: PredictionLog,
        admins: frozenset[tuple[str, str]] = frozenset(),
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        platforms: Callable[[], Sequence[str]] = tuple,
        feedback: FeedbackBook | None = None,
        observe: Callable[[str, str, float], None] | None = None,
        shared_in_flight: SharedLoad | None = None,
        answers: SharedAnswers | None = None,
        health: Callable[[], Sequence[str]] = tuple,
        conversation: ConversationBounds | None = None,
    ) -> None:
        self.engine = engine
        self.limiter = limiter
        self.queue = queue
        # each user's questions in flight or waiting, counted across processes (None: this
        # process's own line is the only bound)
        self.shared_in_flight = shared_in_flight
        self.memory = memory
        self.prediction_log = prediction_log
        self.admins = admins
        self.max_image_bytes = max_image_bytes
        self.platforms = platforms  # the front ends connected now, for /health
        self.feedback = feedback if feedback is not None else FeedbackBook()
        self.answers = answers  # answers shared with other processes, for their buttons
        self.observe = observe  # (platform, outcome, latency s) once per question: metrics
        self.health = health  # more /health lines: shared state, Discord shards
        # how many earlier turns about the last image a model that writes answers reads
        self.conversation = conversation if conversation is not None else ConversationBounds()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._revision: str | None = None

    async def handle(self, event: ChatEvent) -> Reply | None:
        """The one reply ``event`` gets, or None when it is not meant for the bot."""
        if event.command is not None:
            return await self._command(event)
        if event.press is not None:
            return await self._press(event)
        if event.self_contained and (incomplete := self._incomplete(event)) is not None:
            return incomplete
        key: MemoryKey = (event.platform, event.chat_id, event.user_id)
        usable = [image for image in event.images if self._refusal(image) is None]
        if usable:  # a file we would refuse anyway does not replace the last usable image
            await self.memory.remember(key, usable[-1])
        if not event.addressed:
            return None
        question = extract_question(event.text)
        history: History | None = None  # the earlier turns about the image (None: none kept)
        if event.images:
            images = event.images
            if len(usable) == len(images) == 1:  # a conversation about this image starts
                history = await self._history(key, remembered=False)
        elif event.replied_image is not None:
            images = (event.replied_image,)
        elif event.replied_hidden:
            return Reply(replies.HIDDEN_IMAGE, Outcome.HIDDEN_IMAGE)
        else:
            remembered = await self.memory.recall(key)
            if remembered is None:
                return Reply(replies.NO_IMAGE, Outcome.NO_IMAGE)
            images = (remembered,)
            history = await self._history(key, remembered=True)
        if not question:
            if not event.images:
                return Reply(replies.NEED_QUESTION, Outcome.NEED_QUESTION)
            if not usable:  # say what is wrong with the file now, not after the question
                return self._finish(event, "", self._refusal(event.images[0]), event.images[0].size, 0.0)
            return Reply(replies.ask_what(event.platform, private=event.private), Outcome.PROMPT)
        answers = [await self._answer(event, question, image, history or ()) for image in images]
        if len(answers) == 1:
            if history is not None and answers[0].outcome is Outcome.ANSWERED:
                turn = (question, answers[0].predictions[0].answer)
                await self.memory.keep_history(key, self.conversation.after(history, turn))
            return answers[0]
        outcome = next((a.outcome for a in answers if a.outcome is Outcome.ANSWERED), answers[0].outcome)
        predictions = tuple(p for a in answers for p in a.predictions)  # (buttons: one answer's only)
        return Reply(replies.numbered([a.text for a in answers]), outcome, predictions=predictions)

    def is_admin(self, platform: str, user_id: str) -> bool:
        return (platform, user_id) in self.admins

    async def _history(self, key: MemoryKey, *, remembered: bool) -> History | None:
        """The earlier turns a question about the chat's last image follows (empty for a new
        image), or None when none are kept: a classifier answers each question alone."""
        if not (self.conversation.enabled and self._written_answers):
            return None
        return await self.memory.history(key) if remembered else ()

    # -- one question about one image ---------------------------------------------------------

    async def _answer(self, event: ChatEvent, question: str, image: ImageRef, history: History) -> Reply:
        started = time.perf_counter()
        refusal = self._refusal(image)
        if refusal is not None:
            return self._finish(event, question, refusal, image.size, started)
        user = (event.platform, event.user_id)
        try:
            turn = self.queue.admit(user)
        except QueueFullError as exc:
            return self._finish(event, question, self._queue_full(exc), None, started)
        ticket: str | None = None
        try:
            if self.shared_in_flight is not None:
                try:
                    ticket = await self.shared_in_flight.enter(*user)
                except QueueFullError as exc:  # the user's questions in other processes count too
                    turn.cancel()
                    return self._finish(event, question, self._queue_full(exc), None, started)
            if not self.is_admin(*user):
                decision = await self.limiter.hit(*user)
                if not decision.allowed:
                    turn.cancel()
                    text = replies.rate_limited(decision.retry_after_s, str(self.limiter.rate))
                    reply = Reply(text, Outcome.RATE_LIMITED, retry_after_s=decision.retry_after_s)
                    return self._finish(event, question, reply, None, started)
            async with turn:
                try:
                    data = await event.fetch(image)
                except Exception as exc:  # network trouble or an expired file: the user can resend
                    log.warning("could not download an image from %s: %s", event.platform, type(exc).__name__)
                    reply = Reply(replies.DOWNLOAD_FAILED, Outcome.ERROR)
                    return self._finish(event, question, reply, None, started)
                reply = await self._ask_engine(data, question, event.top_k, history)
                if reply.outcome is Outcome.ANSWERED:
                    reply = await self._with_buttons(event, question, reply)
                return self._finish(event, question, reply, len(data), started)
        except BaseException:
            turn.cancel()
            raise
        finally:
            if ticket is not None and self.shared_in_flight is not None:
                await self.shared_in_flight.leave(*user, ticket)

    @staticmethod
    def _queue_full(exc: QueueFullError) -> Reply:
        return Reply(replies.queue_full(exc.waiting), Outcome.QUEUE_FULL, retry_after_s=exc.retry_after_s)

    async def _ask_engine(self, data: bytes, question: str, top_k: int | None, history: History) -> Reply:
        try:
            if history:  # (an engine that answers each question alone is never given turns)
                prediction = await self.engine.answer(data, question, top_k=top_k, history=history)
            else:
                prediction = await self.engine.answer(data, question, top_k=top_k)
        except VQAInputError as exc:
            return Reply(replies.sentence(str(exc)), _REJECTED.get(type(exc), Outcome.REJECTED_BAD_INPUT))
        except InferenceError as exc:
            return Reply(replies.sentence(str(exc)), Outcome.ERROR)
        except EngineError as exc:  # busy, timed out, shutting down: try again when it says
            return Reply(replies.sentence(str(exc)), Outcome.BUSY, retry_after_s=exc.retry_after_s)
        except Exception:
            log.exception("unexpected error while answering a question")
            return Reply(replies.ERROR, Outcome.ERROR)
        escalated = self._escalated(prediction)
        text = replies.format_prediction(
            prediction, trained_on=self._trained_on_for(prediction), sure=not self._written(prediction)
        )
        if escalated:
            text = f"{text}\n{replies.ESCALATED}"
        return Reply(text, Outcome.ANSWERED, predictions=(prediction,))

    async def _with_buttons(self, event: ChatEvent, question: str, reply: Reply) -> Reply:
        """An answer gets an id, remembered for its "Chart" and 👍/👎 buttons (by every process,
        when they share ``answers``: the button may be pressed on another)."""
        prediction = reply.predictions[0]
        answered = Answered(
            request_id=secrets.token_hex(6),
            platform=event.platform,
            model_revision=self._model_revision(),
            question=question,
            prediction=prediction,
            notice=replies.abstain_notice(prediction, trained_on=self._trained_on_for(prediction)),
        )
        self.feedback.remember(answered)
        if self.answers is not None:
            await self.answers.put(answered)
        charted = not self._written(prediction)  # one written sentence: no ranking to chart
        buttons = (Button.CHART, Button.GOOD, Button.BAD) if charted else (Button.GOOD, Button.BAD)
        return replace(reply, request_id=answered.request_id, buttons=buttons)

    def _incomplete(self, event: ChatEvent) -> Reply | None:
        """A self-contained request (the web) without an image or a question: nothing earlier or
        later can complete it, so it is a refused question, logged like the others."""
        if not event.images:
            reply = Reply(replies.WEB_NO_IMAGE, Outcome.REJECTED_NO_IMAGE)
            return self._finish(event, extract_question(event.text), reply, None, 0.0)
        if not extract_question(event.text):
            reply = Reply(replies.NEED_QUESTION, Outcome.REJECTED_BAD_QUESTION)
            return self._finish(event, "", reply, event.images[0].size, 0.0)
        return None

    def _refusal(self, image: ImageRef) -> Reply | None:
        """What the platform already tells us we cannot use: refused before any download."""
        if image.size is not None and image.size > self.max_image_bytes:
            return Reply(replies.too_large(image.size, self.max_image_bytes), Outcome.REJECTED_TOO_LARGE)
        if not is_readable_mime(image.mime_type):
            return Reply(replies.not_an_image(image.mime_type or ""), Outcome.REJECTED_NOT_IMAGE)
        return None

    def _finish(
        self,
        event: ChatEvent,
        question: str,
        reply: Reply | None,
        image_bytes: int | None,
        started: float,
    ) -> Reply:
        """Count and log a question's outcome (one prediction-log line), then hand its reply back."""
        assert reply is not None
        latency_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        self.outcomes[(event.platform, reply.outcome.value)] += 1
        if self.observe is not None:
            self.observe(event.platform, reply.outcome.value, latency_ms / 1000)
        prediction = reply.predictions[0] if reply.predictions else None
        entry = self.prediction_log.record(
            platform=event.platform,
            chat_type=event.chat_type,
            user_id=event.user_id,
            question=question,
            outcome=reply.outcome.value,
            latency_ms=latency_ms,
            prediction=prediction,
            image_bytes=image_bytes,
            model_revision=self._model_revision(),
            request_id=reply.request_id,
        )
        log.info(
            "%s %s user=%s outcome=%s latency=%.0fms",
            event.platform,
            event.chat_type,
            entry["user"],
            reply.outcome.value,
            latency_ms,
        )
        return reply

    # -- the buttons under an answer ----------------------------------------------------------

    async def _press(self, event: ChatEvent) -> Reply:
        assert event.press is not None
        answered = self.feedback.recall(event.press.request_id)
        if answered is None and self.answers is not None:  # maybe another process's answer
            answered = await self.answers.get(event.press.request_id)
            if answered is not None:
                self.feedback.remember(answered)
        if answered is None:
            return Reply(replies.BUTTON_EXPIRED, Outcome.EXPIRED, private=True)
        if event.press.button is Button.CHART:
            png = await asyncio.to_thread(
                render_chart, answered.prediction, title=answered.question, notice=answered.notice
            )
            return Reply(replies.chart_caption(answered.question), Outcome.CHART, image=png)
        before = self.feedback.vote(answered, f"{event.platform}:{event.user_id}", event.press.button)
        self.prediction_log.record_vote(
            platform=event.platform,
            user_id=event.user_id,
            request_id=answered.request_id,
            vote=event.press.button.value,
            model_revision=answered.model_revision,
        )
        log.info("%s: feedback %s on %s", event.platform, event.press.button.value, answered.request_id)
        return Reply(
            replies.thanks(event.press.button, changed=before is not None), Outcome.FEEDBACK, private=True
        )

    # -- commands -----------------------------------------------------------------------------

    async def _command(self, event: ChatEvent) -> Reply:
        if event.command in (Command.START, Command.HELP):
            facts = self.facts
            text = replies.help_text(event.platform, max_image_bytes=self.max_image_bytes, facts=facts)
            return Reply(text, Outcome.HELP)
        if event.command is Command.NEW:
            await self.memory.forget((event.platform, event.chat_id, event.user_id))
            return Reply(replies.NEW_CONVERSATION, Outcome.NEW_CONVERSATION)
        if event.command is Command.ABOUT:
            facts = self.facts
            return Reply(replies.about_text(facts) if facts else replies.model_line(None), Outcome.HELP)
        if not self.is_admin(event.platform, event.user_id):
            log.info("%s: refused /%s from a non-admin", event.platform, event.command)
            return Reply(replies.NOT_ADMIN, Outcome.NOT_ADMIN, private=True)
        stats = self.engine.stats()
        if event.command is Command.HEALTH:
            text = replies.format_health(stats, platforms=list(self.platforms()), details=list(self.health()))
        else:
            text = replies.format_stats(
                stats,
                self.outcomes,
                remembered_images=await self.memory.count(),
                ratings=self.feedback.ratings(),
            )
        return Reply(text, Outcome.ADMIN, private=True)

    @property
    def facts(self) -> ModelFacts | None:
        """What the model's package says about it: /help, /about, honest answers (None while
        the model loads)."""
        try:
            return self.engine.model_facts
        except EngineError:
            return None

    @property
    def _trained_on(self) -> str | None:
        facts = self.facts
        return facts.trained_on if facts is not None else None

    @property
    def _written_answers(self) -> bool:
        """Whether the model writes sentences, whose confidence is no chance of being right:
        shown without a percentage or a chart (``ModelFacts.written_answers``)."""
        facts = self.facts
        return facts is not None and facts.written_answers

    def _escalated(self, prediction: Prediction) -> bool:
        """Whether the second model (``ESCALATE_TO``) gave this answer, the first having abstained."""
        facts = self.facts
        second = facts.escalates_to if facts is not None else None
        return second is not None and prediction.model == second

    def _written(self, prediction: Prediction) -> bool:
        """Whether the model that gave this answer writes sentences."""
        if self._escalated(prediction):
            return self.facts is not None and self.facts.escalation_writes
        return self._written_answers

    def _trained_on_for(self, prediction: Prediction) -> str | None:
        """What the answering model was trained on, as far as the package says (only the first's)."""
        return None if self._escalated(prediction) else self._trained_on

    def _model_revision(self) -> str | None:
        """The model's revision for the log (it does not change while the process runs)."""
        if self._revision is None:
            try:
                stats = self.engine.stats()
            except Exception:
                return None
            self._revision = stats.revision or stats.model_id or None
        return self._revision
