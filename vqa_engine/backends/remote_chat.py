"""A model on an OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp) behind the backend seam.

``REMOTE_BASE_URL`` names the server; each question is one chat completion: an optional system
message (``SYSTEM_PROMPT``), then a user message that holds the photo as a base64 ``data:`` URL
and the question as text; ``MAX_NEW_TOKENS`` is ``max_tokens``, temperature 0 (the same question
gets the same answer, as far as the server is deterministic).

- **Batched by concurrency.** The engine calls ``predict_batch`` from its inference thread; the
  batch's questions go to the server at once, one request each from a small thread pool (the
  blocking ``openai`` client), and come back in their order. The service's event loop never waits.
- **Confidence.** Logprobs are asked for. When the server returns them, ``confidence`` is the
  geometric mean of the written tokens' probabilities, as for a local vision-language model (the
  server does not report the end token's). When it does not, nothing says how sure the model
  was: ``confidence`` is 1.0, the answer is taken as written, and the confidence rule never marks
  it a guess. Either way it is no chance of being right, so chat users never see it as a
  percentage (``ModelInfo.written_answers``).
- **Failures.** The client retries a refused connection, a timeout, a 429 and a 5xx twice (with
  back-off); what still fails is a ``ModelServerError`` whose message a user can read, for the
  whole batch. A request the server refuses as malformed (400, 422) is an ``InferenceError`` of
  that question alone. The API key is sent as ``Authorization: Bearer`` and is one of the
  settings' secrets, so the log redacts it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
from PIL import Image

from vqa_engine.backends.base import Backend, RankedScores
from vqa_engine.errors import InferenceError, ModelServerError
from vqa_engine.model_info import REMOTE_CHAT, ModelInfo
from vqa_engine.options import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SYSTEM_PROMPT, ModelOptions
from vqa_engine.preprocess import ImageLimits, decode_image

#: requests in flight at once to the server, per batch
MAX_CONCURRENT = 16
#: attempts after the first that the client makes on its own (connection, timeout, 429, 5xx)
MAX_RETRIES = 2
#: the longest side a photo is checked at (the server resizes for its model)
_INPUT_SIZE = 2048
#: formats chat servers read as sent; others (BMP) are sent as PNG
_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
#: the key sent to a server that asks for none (the client needs one)
_NO_KEY = "none"
_RETRY_AFTER_S = 60


@dataclass(frozen=True)
class EncodedImage:
    """A photo as the server gets it: its bytes and their media type."""

    data: bytes
    media_type: str

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def load_remote_backend(options: ModelOptions) -> RemoteChatBackend:
    """The model ``options.remote_model`` on the server at ``options.remote_base_url``."""
    if options.remote_base_url is None or options.remote_model is None:
        raise ValueError("REMOTE_BASE_URL and REMOTE_MODEL are both needed for a model server")
    key = options.remote_api_key.get_secret_value() if options.remote_api_key else _NO_KEY
    client = openai.OpenAI(
        base_url=options.remote_base_url,
        api_key=key,
        timeout=options.remote_timeout_s,
        max_retries=MAX_RETRIES,
    )
    return RemoteChatBackend(
        client,
        options.remote_model,
        max_new_tokens=options.max_new_tokens,
        system_prompt=options.system_prompt,
    )


class RemoteChatBackend(Backend):
    """A chat model on a server: one completion per question, sent concurrently."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        self.client = client
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.info = ModelInfo(
            model_id=model,
            revision=None,
            backend=REMOTE_CHAT,
            answers=None,
            dtype="remote",
            quantize="none",
            device="remote",
            input_size=_INPUT_SIZE,
        )

    def preprocess(self, data: bytes, limits: ImageLimits = ImageLimits()) -> EncodedImage:
        """Check the bytes are a usable image (raising as for every model), then send them as
        they came when the server reads their format."""
        image = decode_image(data, limits, draft_size=_INPUT_SIZE)
        with Image.open(io.BytesIO(data)) as opened:
            media_type = _MEDIA_TYPES.get(opened.format or "")
        return EncodedImage(data, media_type) if media_type else self.prepare(image)

    def prepare(self, image: Image.Image) -> EncodedImage:
        """A decoded image as PNG."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return EncodedImage(buffer.getvalue(), "image/png")

    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> RankedScores:
        pairs = list(zip(inputs, questions, strict=True))
        with ThreadPoolExecutor(max_workers=max(1, min(MAX_CONCURRENT, len(pairs)))) as pool:
            answers = list(pool.map(lambda pair: self.ask(*pair), pairs))
        return RankedScores([[(text, confidence)] if text else [] for text, confidence in answers])

    def ask(self, image: object, question: str) -> tuple[str, float]:
        """The answer the server writes to one question, and its confidence.

        Raises ``ModelServerError`` when the server cannot be used, ``InferenceError`` when it
        refuses this request.
        """
        if not isinstance(image, EncodedImage):
            raise TypeError(f"expected an EncodedImage, got {type(image).__name__}")
        try:
            completion = self.client.chat.completions.create(
                model=self.model,
                messages=self.messages(image, question),  # type: ignore[arg-type]
                max_tokens=self.max_new_tokens,
                temperature=0,
                logprobs=True,
            )
        except openai.OpenAIError as exc:
            raise _as_engine_error(exc) from exc
        return _answer_of(completion)

    def messages(self, image: EncodedImage, question: str) -> list[dict[str, Any]]:
        """The chat the server reads: the system message (when set), then the photo and question."""
        user = {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image.data_url()}},
                {"type": "text", "text": question},
            ],
        }
        if not self.system_prompt:
            return [user]
        return [{"role": "system", "content": self.system_prompt}, user]

    def question_key(self, question: str) -> str:
        """The question with what else decides its answer: replicas told otherwise (another
        server model, prompt or length) must not share answers through the cache."""
        return "\n".join((question, self.model, self.system_prompt or "", str(self.max_new_tokens)))

    def warm_up(self) -> None:
        """Nothing to load here; the server warms its own model."""


def _answer_of(completion: Any) -> tuple[str, float]:
    """(the written answer, its confidence) from a chat completion."""
    if not completion.choices:
        return "", 0.0
    choice = completion.choices[0]
    answer = " ".join((choice.message.content or "").split())
    if not answer:
        return "", 0.0
    tokens = getattr(choice.logprobs, "content", None) or []
    if not tokens:
        return answer, 1.0  # no probabilities from the server: taken as written
    mean = sum(token.logprob for token in tokens) / len(tokens)
    return answer, min(1.0, math.exp(mean))


def _as_engine_error(exc: openai.OpenAIError) -> InferenceError:
    """The client's failure as a message for users (the cause keeps the details for the log)."""
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return InferenceError(
            "the model server could not answer that one; please try another image or question"
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError):
        return ModelServerError(
            "the model server is not set up to answer right now; please try again later",
            retry_after_s=_RETRY_AFTER_S,
        )
    if isinstance(exc, openai.RateLimitError):
        return ModelServerError(
            "the model server is busy; please try again in a minute", retry_after_s=_RETRY_AFTER_S
        )
    return ModelServerError(
        "the model server did not answer; please try again in a minute", retry_after_s=_RETRY_AFTER_S
    )
