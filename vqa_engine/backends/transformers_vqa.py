"""Hugging Face transformers VQA models behind the backend seam, through their own processors.

Two families, told apart by the loaded model:

- **classifiers** (the ViLT family: ``AutoModelForVisualQuestionAnswering`` with ``id2label``):
  one logit per answer. ViLT is trained with a sigmoid per answer against soft VQA scores (the
  share of annotators who gave it), so a confidence is ``sigmoid(logit)`` of that answer: the
  model's own estimate that the answer is right. The candidates are the highest of these; they
  need not sum to 1 (several answers can be right at once: "2" and "two"). A config that says
  ``problem_type: single_label_classification`` gets a softmax instead.
- **generative** models (BLIP-style ``...ForQuestionAnswering`` with ``generate``): beam search
  returns ``num_beams`` answers; a confidence is the probability of that whole answer,
  ``exp(sum of its tokens' log-probabilities)`` (beams ranked by it: ``length_penalty=0``).

Questions longer than the model's text length are truncated by the tokenizer. Nothing from the
model folder is executed (``vqa_engine.backends.transformers_load``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vqa_engine.backends.base import Backend, DenseScores, RankedScores
from vqa_engine.backends.transformers_load import info_fields, load_model, quantize_on_cpu, read_config
from vqa_engine.backends.written_answers import end_ids, greedy_scores
from vqa_engine.errors import ModelPackageError
from vqa_engine.model_info import ModelInfo
from vqa_engine.modular.package_format import ModelSource
from vqa_engine.options import DEFAULT_NUM_BEAMS

#: the longest answer a generative model may write, in tokens (VQA answers are a few words)
MAX_ANSWER_TOKENS = 16
#: a text length above this is the tokenizer's "no limit" placeholder
_NO_LIMIT = 100_000

Inputs = dict[str, torch.Tensor]  # one image's tensors from the image processor, no batch dim


def load_transformers_backend(
    folder: Path,
    source: ModelSource,
    *,
    device: torch.device,
    quantize: str = "none",
    num_beams: int = DEFAULT_NUM_BEAMS,
) -> Backend:
    """Load the transformers model in ``folder``; raises ``ModelPackageError`` with one line."""
    from transformers import AutoModelForVisualQuestionAnswering
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES,
    )

    where = source.repo_id
    config = read_config(folder, where)
    vqa_types = MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES
    supported = ", ".join(sorted(vqa_types))
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and config.model_type not in vqa_types:
        raise ModelPackageError(
            f"{where} is a transformers {config.model_type!r} model that writes its answers: it runs as a "
            "vision-language model, which needs a chat template in its folder (chat_template.jinja or "
            "chat_template.json) and MODEL_BACKEND auto or vision-language (docs/models.md)"
        )
    if config.model_type not in MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES:
        raise ModelPackageError(
            f"{where} is a transformers {config.model_type!r} model, which is not one for visual "
            f"question answering (AutoModelForVisualQuestionAnswering knows: {supported})"
        )
    model, processor = load_model(AutoModelForVisualQuestionAnswering, folder, where, device)
    quantized = quantize_on_cpu(model, quantize, device, where)
    generative = bool(getattr(model, "can_generate", lambda: False)())
    info = info_fields(source, model, device, quantized=quantized, input_size=_input_size(processor, config))
    if generative:
        return TransformersGenerator(model, processor, config, info, num_beams=num_beams)
    labels = _answer_list(config, where)
    return TransformersClassifier(model, processor, config, info, labels)


class _TransformersBackend(Backend):
    """What both families share: the processor's image and text handling, batching, device."""

    def __init__(self, model: Any, processor: Any, config: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype  # float16 weights read float16 images
        self.max_text = _text_length(config, self.tokenizer)

    def prepare(self, image: Image.Image) -> Inputs:
        features = self.image_processor(images=[image], return_tensors="pt")
        return {key: value[0] for key, value in features.items() if isinstance(value, torch.Tensor)}

    def _text(self, questions: Sequence[str], accepted: set[str]) -> Inputs:
        encoded = self.tokenizer(
            list(questions), padding=True, truncation=True, max_length=self.max_text, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in encoded.items() if k in accepted}

    def _images(self, inputs: Sequence[object]) -> Inputs:
        batch = collate(inputs)  # type: ignore[arg-type]
        return {
            k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in batch.items()
        }


class TransformersClassifier(_TransformersBackend):
    """ViLT-style: a confidence per answer of ``id2label`` (sigmoid, or softmax if single-label)."""

    answers: Sequence[str]

    def __init__(
        self, model: Any, processor: Any, config: Any, info: dict[str, Any], labels: list[str]
    ) -> None:
        super().__init__(model, processor, config)
        self.answers = labels
        self.softmax = getattr(config, "problem_type", None) == "single_label_classification"
        self._accepted = set(inspect.signature(model.forward).parameters)
        self.info = ModelInfo(backend="transformers-classifier", answers=len(labels), **info)

    @torch.inference_mode()
    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> DenseScores:
        logits = self.model(**self._text(questions, self._accepted), **self._images(inputs)).logits.float()
        probs = torch.softmax(logits, dim=-1) if self.softmax else torch.sigmoid(logits)
        return DenseScores(self.answers, probs.cpu())


class TransformersGenerator(_TransformersBackend):
    """BLIP-style: answers written by beam search, each with the probability of the whole answer."""

    def __init__(
        self, model: Any, processor: Any, config: Any, info: dict[str, Any], *, num_beams: int
    ) -> None:
        super().__init__(model, processor, config)
        self.num_beams = num_beams
        self.blip = all(hasattr(model, part) for part in ("vision_model", "text_encoder", "text_decoder"))
        accepted = set(inspect.signature(model.generate).parameters) | {"input_ids", "attention_mask"}
        self._accepted = accepted if not self.blip else {"input_ids", "attention_mask"}
        self.info = ModelInfo(backend="transformers-generative", answers=None, **info)

    @torch.inference_mode()
    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> RankedScores:
        beams = max(1, min(top_k, self.num_beams))
        text = self._text(questions, self._accepted)
        images = self._images(inputs)
        options: dict[str, Any] = dict(
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=MAX_ANSWER_TOKENS,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        if beams > 1:
            options["length_penalty"] = 0.0  # rank beams by the answer's probability, not per token
        if self.blip:
            groups = self._blip_generate(text, images, options)
        else:
            groups = [(list(range(len(questions))), self.model.generate(**text, **images, **options))]
        rows: list[list[tuple[str, float]]] = [[] for _ in questions]
        for indices, out in groups:
            log_probs = out.sequences_scores if beams > 1 else self._greedy_log_probs(out)
            answers = self.tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
            for n, b in enumerate(indices):
                row: dict[str, float] = {}
                for j in range(n * beams, (n + 1) * beams):
                    answer = " ".join(answers[j].split())
                    if answer and answer not in row:  # an empty answer is none; beams can decode alike
                        row[answer] = math.exp(float(log_probs[j]))
                rows[b] = sorted(row.items(), key=lambda item: -item[1])
        return RankedScores(rows)

    def _blip_generate(
        self, text: Inputs, images: Inputs, options: dict[str, Any]
    ) -> list[tuple[list[int], Any]]:
        """``BlipForQuestionAnswering.generate``, batched so that each question is answered as
        it would be alone: the images and questions are encoded in one pass, then answers are
        written for the questions of each length together. (transformers' BLIP answer decoder
        ignores the question's padding mask in its cross-attention, so a padded question in a
        mixed batch would read its padding.)"""
        model = self.model
        image_embeds = model.vision_model(pixel_values=images["pixel_values"])[0]
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        question = model.text_encoder(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=False,
        )[0]  # (B, T, D)
        lengths = text["attention_mask"].sum(dim=1)
        groups = []
        for length in sorted(set(lengths.tolist())):
            rows = (lengths == length).nonzero().flatten()
            states = question[rows, :length]  # no padding left: every position is read
            bos = torch.full((len(rows), 1), model.decoder_start_token_id, device=question.device)
            out = model.text_decoder.generate(
                input_ids=bos,
                eos_token_id=model.config.text_config.sep_token_id,
                pad_token_id=model.config.text_config.pad_token_id,
                encoder_hidden_states=states,
                encoder_attention_mask=torch.ones(states.shape[:-1], dtype=torch.long, device=states.device),
                **options,
            )
            groups.append((rows.tolist(), out))
        return groups

    def _greedy_log_probs(self, out: Any) -> torch.Tensor:
        """Sum of the chosen tokens' log-probabilities, up to and including the end token."""
        eos = self.model.generation_config.eos_token_id
        if self.blip:
            eos = self.model.config.text_config.sep_token_id
        return greedy_scores(self.model, out, end_ids(eos)).log_prob


def collate(items: Sequence[Inputs]) -> Inputs:
    """Stack one-image tensors into a batch. Images of different sizes (ViLT keeps the aspect
    ratio) are padded bottom-right with zeros, as the processors themselves pad, and their
    ``pixel_mask`` marks the padding, so each image is read as it would be alone."""
    batch: Inputs = {}
    for key in items[0]:
        tensors = [item[key] for item in items]
        if len({t.shape for t in tensors}) > 1:
            if "pixel_mask" not in items[0]:
                raise ValueError("images of different sizes and no pixel_mask to batch them with")
            height = max(t.shape[-2] for t in tensors)
            width = max(t.shape[-1] for t in tensors)
            tensors = [
                torch.nn.functional.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2])) for t in tensors
            ]
        batch[key] = torch.stack(tensors)
    return batch


def _answer_list(config: Any, where: str) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    labels = [str(id2label[i]) for i in sorted(id2label)]
    if len(labels) < 2 or all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        raise ModelPackageError(
            f"{where}: config.json has no answer list (id2label), so its outputs cannot be read as answers"
        )
    return labels


def _text_length(config: Any, tokenizer: Any) -> int:
    """The longest question, in tokens, the model's position embeddings can read."""
    limits = [getattr(config, "max_position_embeddings", None)]
    text_config = getattr(config, "text_config", None)
    if text_config is not None:
        limits.append(getattr(text_config, "max_position_embeddings", None))
    limits.append(getattr(tokenizer, "model_max_length", None))
    usable = [int(n) for n in limits if isinstance(n, int) and 0 < n < _NO_LIMIT]
    return min(usable) if usable else 512


def _input_size(processor: Any, config: Any) -> int:
    """The shorter side the image processor resizes to (ViLT: shortest_edge 384; BLIP: 384×384)."""
    size = getattr(processor.image_processor, "size", None)
    if size is not None:
        data = dict(size) if not isinstance(size, int) else {"shortest_edge": size}
        sides = [
            v for k, v in data.items() if k in ("shortest_edge", "height", "width") and isinstance(v, int)
        ]
        if sides:
            return min(sides)
    vision = getattr(config, "vision_config", config)
    return int(getattr(vision, "image_size", 384))
