"""``config.json`` of an ONNX package: how to prepare the inputs of ``model.onnx`` and read its output.

Torch-free. An ONNX package is a folder with ``model.onnx``, this ``config.json``
(``"model_type": "onnx-vqa"``), ``vocab.json`` and ``answers.txt``: any architecture, exported
from PyTorch (``torch.onnx.export``) or anything else, runs without its Python code.

``model.onnx`` takes ``images`` (B, 3, S, S) float32, normalised as below, ``tokens`` (B, T)
int64 word ids from ``vocab.json`` (padded with 0), and ``lengths`` (B,) int64 and/or
``attention_mask`` (B, T) int64 (1 for words, 0 for padding); it returns logits (B, A) in the
order of ``answers.txt``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.config_json import FORMAT_VERSION, parse_config

ONNX_FILE = "model.onnx"
ONNX_MODEL_TYPE = "onnx-vqa"
OUTPUTS = ("softmax", "sigmoid")


@dataclass
class OnnxConfig:
    """Preprocessing and output of an ONNX model; defaults are those of the bundled model."""

    image_size: int = 64  # square side the image is resized to
    resize_mode: str = "pad"  # "pad": keep aspect, pad with pad_color; "stretch": squash
    pad_color: tuple[int, int, int] = (255, 255, 255)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_question_tokens: int = 32  # longer questions are cut
    temperature: float = 1.0  # logits are divided by it before the output function
    output: str = "softmax"  # "softmax" over the answers, or "sigmoid" per answer (multi-label)

    def __post_init__(self) -> None:
        if self.resize_mode not in ("pad", "stretch"):
            raise ModelPackageError(f"config.json: resize_mode={self.resize_mode!r} is not pad or stretch")
        if self.output not in OUTPUTS:
            raise ModelPackageError(f"config.json: output={self.output!r} is not one of {', '.join(OUTPUTS)}")
        for name in ("image_size", "max_question_tokens"):
            if int(getattr(self, name)) < 1:
                raise ModelPackageError(f"config.json: {name} must be a positive integer")
        if self.temperature <= 0:
            raise ModelPackageError("config.json: temperature must be positive")
        try:
            self.pad_color = tuple(int(c) for c in self.pad_color)  # type: ignore[assignment]
            self.image_mean = tuple(float(c) for c in self.image_mean)  # type: ignore[assignment]
            self.image_std = tuple(float(c) for c in self.image_std)  # type: ignore[assignment]
        except (TypeError, ValueError) as exc:
            raise ModelPackageError(
                f"config.json: pad_color, image_mean and image_std are lists of 3 numbers ({exc})"
            ) from exc
        if not (len(self.pad_color) == len(self.image_mean) == len(self.image_std) == 3):
            raise ModelPackageError(
                "config.json: pad_color, image_mean and image_std need 3 values each (R, G, B)"
            )

    def to_json_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "model_type": ONNX_MODEL_TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_json_dict(cls, data: Any) -> OnnxConfig:
        """Parse ``config.json``; raises ``ModelPackageError`` naming the key at fault."""
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        return parse_config(
            cls,
            data,
            model_type=ONNX_MODEL_TYPE,
            wrong_type=f'config.json beside model.onnx must say "model_type": "{ONNX_MODEL_TYPE}" '
            "(it says {found!r})",
            unknown_hint=f" (an ONNX package's config.json knows {known})",
        )
