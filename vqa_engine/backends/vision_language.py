"""Vision-language chat models behind the backend seam: a photo and a question in, a sentence out.

Any ``AutoModelForImageTextToText`` that transformers runs without remote code (SmolVLM and the
Idefics3 family, Qwen2-VL, LLaVA, Gemma 3, ...), asked the way its makers ask it: its own
processor and its own chat template, with an optional system turn (``SYSTEM_PROMPT``) and a user
turn that holds the image and the question; the answer is what the model writes after the
template's generation prompt.

- **Batched.** One padded batch for every question of a batch cycle (padding on the left, so
  that every prompt ends where writing starts) and one ``generate`` call. Decoding is greedy (the
  same answer to the same question), at most ``MAX_NEW_TOKENS`` tokens; one answer per question
  (``NUM_BEAMS`` does not apply). A question in a batch gets the answer it would get alone; the
  engine's cache keys answers by the system prompt and the length limit too (``question_key``).
- **Confidence.** A written sentence has no probability of being right that the model could give:
  the probability of the whole sentence shrinks with every word, right or wrong. ``confidence`` is
  the geometric mean of the probabilities of the tokens greedy decoding chose, the end token
  included (``written_answers.WrittenScores.per_token``): how sure the model was of its own words,
  on average, in (0, 1]; an answer cut off at ``MAX_NEW_TOKENS`` is scored on what it wrote. It is
  not a chance of being right, so it is reported (``ask --json``, the HTTP API) but never shown
  to chat users as a percentage (``ModelFacts.written_answers``). The confidence rule still judges
  it, as for every transformers model (``AnswerChecks.confidence_only``): below ``MIN_CONFIDENCE``
  (0.5 unless set) the answer is marked ``abstain`` with ``reason: low_confidence`` and worded as
  a guess. An empty answer (the end token first) has confidence 0.
- **Questions are text.** The model's control tokens (``<image>``, ``<end_of_utterance>``,
  ``<|im_start|>``...) are taken out of a question before it reaches the template, so a question
  cannot add an image placeholder or end its turn and write the assistant's.
- **Conversations.** A follow-up comes with the earlier (question, answer) turns about the same
  image (``predict_turns``): they are alternating user and assistant turns before the new question,
  the image in the first user turn only, the earlier answers cleaned of control tokens too.
- ``QUANTIZE=int8`` makes the Linear layers dynamic int8 on the CPU, as for the other
  transformers backends. Nothing from the model folder is executed
  (``vqa_engine.backends.transformers_load``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vqa_engine.backends.base import Backend, RankedScores, to_predictions
from vqa_engine.backends.transformers_load import info_fields, load_model, quantize_on_cpu, read_config
from vqa_engine.backends.written_answers import WrittenScores, end_ids, greedy_scores
from vqa_engine.conversation import History
from vqa_engine.errors import ModelPackageError, first_line
from vqa_engine.model_info import VISION_LANGUAGE, ModelInfo
from vqa_engine.modular.package_format import ModelSource
from vqa_engine.options import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SYSTEM_PROMPT
from vqa_engine.prediction import Prediction

#: an image processor's ``size`` above this is a pixel count (Qwen2-VL's), not a side
_LARGEST_SIDE = 8192
#: the side of the warm-up picture: one tile for every processor, so start-up stays short
_WARM_UP_SIDE = 64

Conversation = list[dict[str, Any]]


def load_vision_language_backend(
    folder: Path,
    source: ModelSource,
    *,
    device: torch.device,
    quantize: str = "none",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> VisionLanguageBackend:
    """Load the vision-language model in ``folder``; raises ``ModelPackageError`` with one line."""
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    where = source.repo_id
    config = read_config(folder, where)
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ModelPackageError(
            f"{where} is a transformers {config.model_type!r} model, which is not one that answers "
            "about images in writing (AutoModelForImageTextToText does not know it)"
        )
    model, processor = load_model(AutoModelForImageTextToText, folder, where, device)
    _check_template(processor, where)
    quantized = quantize_on_cpu(model, quantize, device, where)
    info = info_fields(source, model, device, quantized=quantized, input_size=_input_size(processor, config))
    return VisionLanguageBackend(
        model,
        processor,
        ModelInfo(backend=VISION_LANGUAGE, answers=None, **info),
        max_new_tokens=max_new_tokens,
        system_prompt=system_prompt,
    )


class VisionLanguageBackend(Backend):
    """A chat model that writes one sentence per question, scored by its tokens' probabilities."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        info: ModelInfo,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # every prompt ends where its answer starts
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype  # bfloat16 weights read bfloat16 images
        self.generation = greedy_config(model.generation_config, self.tokenizer, max_new_tokens)
        self.end_ids = end_ids(self.generation.eos_token_id)
        self.control_tokens = control_tokens(processor)
        self.system_prompt = system_prompt
        #: whether the template has a system turn; if not, the instruction opens the user's turn
        self.system_turn = system_prompt is not None and _takes_system_turn(processor, system_prompt)

    def prepare(self, image: Image.Image) -> Image.Image:
        """The decoded image itself: the processor resizes (and tiles) it with the batch, since
        how many image tokens a prompt holds depends on the image."""
        return image

    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> RankedScores:
        return ranked(*self.generate(inputs, questions))

    def predict_turns(
        self, inputs: Sequence[object], questions: Sequence[str], histories: Sequence[History], *, top_k: int
    ) -> list[Prediction]:
        """Each question read after its earlier turns about the same image."""
        scores = ranked(*self.generate(inputs, questions, histories=histories))
        return self.checks.apply(to_predictions(scores, top_k), questions)

    @torch.inference_mode()
    def generate(
        self,
        images: Sequence[object],
        questions: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        histories: Sequence[History] | None = None,
    ) -> tuple[list[str], WrittenScores]:
        """The texts written for each (image, question), and their tokens' scores: one padded
        batch, one greedy ``generate``."""
        generation = self.generation
        if max_new_tokens is not None:
            generation = copy.deepcopy(generation)
            generation.max_new_tokens = max_new_tokens
        earlier = histories if histories is not None else [()] * len(questions)
        conversations = [
            self.conversation(image, q, history)
            for image, q, history in zip(images, questions, earlier, strict=True)
        ]
        encoded = self.processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        batch = {
            k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in encoded.items()
            if isinstance(v, torch.Tensor)
        }
        out = self.model.generate(**batch, generation_config=generation)
        prompt_length = batch["input_ids"].shape[1]
        written = self.tokenizer.batch_decode(out.sequences[:, prompt_length:], skip_special_tokens=True)
        return written, greedy_scores(self.model, out, self.end_ids)

    def conversation(self, image: object, question: str, history: History = ()) -> Conversation:
        """The chat the model reads: the system turn (when set), the earlier questions and answers
        (the image with the first question), then the new question."""
        asked = [self.plain_text(q) for q, _ in history] + [self.plain_text(question)]
        turns: Conversation = []
        if self.system_prompt and self.system_turn:
            turns.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        elif self.system_prompt:
            asked[0] = f"{self.system_prompt}\n{asked[0]}"
        answers = [self.plain_text(a) for _, a in history]
        for i, text in enumerate(asked):
            content: list[dict[str, Any]] = [{"type": "text", "text": text}]
            if i == 0:
                content.insert(0, {"type": "image", "image": image})
            turns.append({"role": "user", "content": content})
            if i < len(answers):
                turns.append({"role": "assistant", "content": [{"type": "text", "text": answers[i]}]})
        return turns

    def plain_text(self, question: str) -> str:
        """``question`` without the model's control tokens (repeated until none can re-form)."""
        text = question
        while any(token in text for token in self.control_tokens):
            for token in self.control_tokens:
                text = text.replace(token, " ")
        return " ".join(text.split())

    def question_key(self, question: str) -> str:
        """The question as the model reads it, with the system prompt and the answer's length
        limit: replicas told otherwise must not share answers through the cache."""
        return "\n".join(
            (self.plain_text(question), self.system_prompt or "", str(self.generation.max_new_tokens))
        )

    def warm_up(self) -> None:
        """One small picture and one token: loads the lazy parts without writing a sentence."""
        self.generate([Image.new("RGB", (_WARM_UP_SIDE, _WARM_UP_SIDE))], ["warm up"], max_new_tokens=1)


def ranked(written: list[str], scores: WrittenScores) -> RankedScores:
    """One row per question: its written answer with its per-token confidence (none if empty)."""
    rows: list[list[tuple[str, float]]] = []
    for text, confidence in zip(written, scores.per_token().tolist(), strict=True):
        answer = " ".join(text.split())
        rows.append([(answer, confidence)] if answer else [])  # nothing written: no answer
    return RankedScores(rows)


def greedy_config(base: Any, tokenizer: Any, max_new_tokens: int) -> Any:
    """The model's own generation config (its end tokens, its logits processors), made greedy
    and bounded, returning the scores the confidence is computed from."""
    config = copy.deepcopy(base)
    config.update(
        do_sample=False,
        num_beams=1,
        temperature=None,  # sampling settings of the model's card: unused when greedy
        top_p=None,
        top_k=None,
        max_new_tokens=max_new_tokens,
        output_scores=True,
        return_dict_in_generate=True,
    )
    if config.pad_token_id is None:
        ends = end_ids(config.eos_token_id)
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0]
    return config


def control_tokens(processor: Any) -> list[str]:
    """The special tokens a question must not hold (the processor's placeholders among them),
    longest first so that one inside another goes as a whole."""
    tokenizer = processor.tokenizer
    tokens = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    tokens.update(tokenizer.all_special_tokens)
    for name in ("image_token", "video_token", "audio_token", "boi_token", "eoi_token"):
        value = getattr(processor, name, None)
        if isinstance(value, str):
            tokens.add(value)
    return sorted((t for t in tokens if t.strip()), key=len, reverse=True)


def _probe(system: str | None) -> Conversation:
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}
    if system is None:
        return [user]
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, user]


def _check_template(processor: Any, where: str) -> None:
    """Refuse at load a template that cannot ask about an image (or a processor without one)."""
    try:
        processor.apply_chat_template(_probe(None), add_generation_prompt=True)
    except Exception as exc:
        raise ModelPackageError(
            f"{where}: its chat template cannot ask about an image: {first_line(exc)}"
        ) from exc


def _takes_system_turn(processor: Any, system_prompt: str) -> bool:
    """Whether the template writes a system turn (some refuse one, some drop it)."""
    try:
        rendered = processor.apply_chat_template(_probe(system_prompt), add_generation_prompt=True)
    except Exception:
        return False
    return isinstance(rendered, str) and system_prompt in rendered


def _input_size(processor: Any, config: Any) -> int:
    """The longest side the model reads (SmolVLM: the tiled image's 2048; Qwen2-VL: the side of
    its most pixels; LLaVA: 336): photos are decoded at least this large."""
    size = getattr(processor.image_processor, "size", None)  # a dict, or transformers' SizeDict

    def side(key: str) -> int | None:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return value if isinstance(value, int) and value > 0 else None

    longest = side("longest_edge")
    if longest is not None:
        return longest if longest <= _LARGEST_SIDE else math.isqrt(longest)
    sides = [n for n in map(side, ("shortest_edge", "height", "width")) if n is not None]
    if sides and max(sides) <= _LARGEST_SIDE:
        return max(sides)
    image_size = getattr(getattr(config, "vision_config", None), "image_size", None)
    return image_size if isinstance(image_size, int) else 512
