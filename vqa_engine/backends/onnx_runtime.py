"""ONNX packages behind the backend seam: any architecture, run by onnxruntime, no Python from the repo.

See ``vqa_engine.modular.onnx_config`` for the package's files and the model's inputs and output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqa_engine.backends.base import Backend, DenseScores
from vqa_engine.errors import ModelPackageError, first_line
from vqa_engine.model_info import ModelInfo
from vqa_engine.modular.onnx_config import ONNX_FILE, OnnxConfig
from vqa_engine.modular.package import load_answers, load_vocab
from vqa_engine.modular.package_format import CONFIG_FILE, ModelSource
from vqa_engine.modular.predictor import encode_questions
from vqa_engine.modular.vocab import PAD_ID, tokenize
from vqa_engine.preprocess import image_to_pixels, normalize

log = logging.getLogger(__name__)

#: the names a model input may have, by role
INPUT_NAMES = {
    "images": ("images", "image", "pixel_values"),
    "tokens": ("tokens", "input_ids", "question"),
    "lengths": ("lengths", "length", "question_lengths"),
    "mask": ("attention_mask", "mask", "question_mask"),
}


class OnnxBackend(Backend):
    """``model.onnx`` on onnxruntime's CPU provider (CUDA's when ``device`` is cuda and it is there)."""

    answers: Sequence[str]

    def __init__(
        self, folder: Path, source: ModelSource, *, device: torch.device, quantize: str = "none"
    ) -> None:
        import onnxruntime as ort

        where = source.repo_id
        self.config = _read_config(folder, where)
        self.vocab = load_vocab(folder)
        self.answers = load_answers(folder)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        if quantize == "int8":
            log.warning(
                "QUANTIZE=int8 is not applied to ONNX packages (%s): quantize the .onnx file itself", where
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are about its own graph rewrites
        options.intra_op_num_threads = torch.get_num_threads()  # TORCH_THREADS governs both runtimes
        try:
            self.session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=providers)
        except Exception as exc:
            raise ModelPackageError(
                f"{where}: onnxruntime cannot load {ONNX_FILE}: {first_line(exc)}"
            ) from exc
        self.roles = _input_roles([i.name for i in self.session.get_inputs()], where)
        self.output = self.session.get_outputs()[0].name
        self.info = ModelInfo(
            model_id=source.repo_id,
            revision=source.revision,
            backend="onnx",
            answers=len(self.answers),
            dtype=self.session.get_inputs()[0].type.removeprefix("tensor(").removesuffix(")"),
            quantize="none",
            device="cuda" if providers[0].startswith("CUDA") else "cpu",
            input_size=self.config.image_size,
        )

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return image_to_pixels(image, self.config)  # (3, S, S) uint8

    def scores(self, inputs: Sequence[object], questions: Sequence[str], *, top_k: int) -> DenseScores:
        images = normalize(torch.stack(list(inputs)), self.config)  # type: ignore[arg-type]
        tokens, lengths = encode_questions(self.vocab, questions, self.config.max_question_tokens)
        feeds: dict[str, np.ndarray] = {
            self.roles["images"]: images.numpy(),
            self.roles["tokens"]: tokens.numpy(),
        }
        if "lengths" in self.roles:
            feeds[self.roles["lengths"]] = lengths.numpy()
        if "mask" in self.roles:
            feeds[self.roles["mask"]] = (tokens != PAD_ID).long().numpy()
        (logits,) = self.session.run([self.output], feeds)
        logits_t = torch.from_numpy(np.asarray(logits, dtype=np.float32)) / self.config.temperature
        if logits_t.ndim != 2 or logits_t.shape[1] != len(self.answers):
            raise ModelPackageError(
                f"model.onnx returned logits of shape {tuple(logits_t.shape)}; "
                f"answers.txt has {len(self.answers)} answers"
            )
        probs = (
            torch.softmax(logits_t, dim=-1) if self.config.output == "softmax" else torch.sigmoid(logits_t)
        )
        return DenseScores(self.answers, probs)

    def question_key(self, question: str) -> str:
        return " ".join(tokenize(question))


def _read_config(folder: Path, where: str) -> OnnxConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelPackageError(
            f'{where}: model.onnx needs a config.json beside it ("model_type": "onnx-vqa", image_size, '
            "image_mean, image_std ...; docs/models.md: any architecture)"
        )
    try:
        return OnnxConfig.from_json_dict(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{path} is not valid JSON: {exc}") from exc


def _input_roles(names: list[str], where: str) -> dict[str, str]:
    """Which input is the image, the tokens, the lengths or the mask, by name."""
    roles: dict[str, str] = {}
    for name in names:
        role = next((r for r, aliases in INPUT_NAMES.items() if name.lower() in aliases), None)
        if role is None or role in roles:
            known = ", ".join(aliases[0] for aliases in INPUT_NAMES.values())
            raise ModelPackageError(f"{where}: model.onnx has an input {name!r} that is not one of {known}")
        roles[role] = name
    missing = [r for r in ("images", "tokens") if r not in roles]
    if missing or not ({"lengths", "mask"} & set(roles)):
        raise ModelPackageError(
            f"{where}: model.onnx must take images, tokens, and lengths or attention_mask "
            f"(it takes {', '.join(names)})"
        )
    return roles
