"""Export one of our model packages to an ONNX package that onnxruntime runs without our model code.

    python -m vqa_engine.tools.export models/easy-vqa-film --onnx exported/easy-vqa-film-onnx

The output folder holds ``model.onnx``, ``config.json`` (``"model_type": "onnx-vqa"``: image
size, normalisation, question length, temperature), ``vocab.json``, ``answers.txt`` and the model
card. After writing, the export is checked: onnxruntime and torch answer a few random questions
and their probabilities must agree within ``TOLERANCE``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.encoders.question import RecurrentEncoder
from vqa_engine.modular.onnx_config import ONNX_FILE, OnnxConfig
from vqa_engine.modular.package import (
    ANSWERS_FILE,
    CARD_FILE,
    CONFIG_FILE,
    VOCAB_FILE,
    ModelPackage,
    load_package,
)
from vqa_engine.modular.predictor import encode_questions
from vqa_engine.preprocess import normalize

log = logging.getLogger(__name__)

#: the largest difference in any answer's probability between torch and onnxruntime we accept
TOLERANCE = 1e-4
OPSET = 18


class UnpackedRecurrent(nn.Module):
    """A ``RecurrentEncoder`` read without packed sequences, which ONNX cannot express: the RNN
    runs over the padded questions and each question's state after its last word is taken. The
    RNN reads left to right, so padding after the last word changes nothing: the same numbers."""

    def __init__(self, encoder: RecurrentEncoder) -> None:
        super().__init__()
        self.embed = encoder.embed
        self.rnn = encoder.rnn
        self.out_dim = encoder.out_dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))  # (B, T, D)
        last = (lengths.clamp(min=1) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return out.gather(1, last).squeeze(1)  # (B, D)


class _Logits(nn.Module):
    """The model as ONNX sees it: named inputs, logits out (the temperature is in config.json)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(images, tokens, lengths)


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    onnx_bytes: int
    max_difference: float  # largest |p_torch - p_onnx| over the check's questions and answers


def export_onnx(package: ModelPackage, out: Path, *, opset: int = OPSET) -> ExportResult:
    """Write ``package`` as an ONNX package in ``out`` and check it against torch.

    Raises ``ModelPackageError`` when the export fails or its answers differ from torch's.
    """
    model = copy.deepcopy(package.model).eval().cpu()
    if isinstance(model.question_encoder, RecurrentEncoder):
        model.question_encoder = UnpackedRecurrent(model.question_encoder)  # type: ignore[assignment]
    config = package.config
    images, tokens, lengths = _example(package, batch=2)
    batch = torch.export.Dim("batch")
    words = torch.export.Dim("words", max=max(2, config.max_question_tokens))
    out.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")  # the exporter's notes about its own internals
            torch.onnx.export(
                _Logits(model),
                (images, tokens, lengths),
                str(out / ONNX_FILE),
                input_names=["images", "tokens", "lengths"],
                output_names=["logits"],
                dynamic_shapes=({0: batch}, {0: batch, 1: words}, {0: batch}),
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )
    except Exception as exc:
        detail = chatter.getvalue().strip().splitlines()[-1:] or [str(exc).splitlines()[0]]
        raise ModelPackageError(f"torch.onnx.export failed: {type(exc).__name__}: {detail[0]}") from exc
    onnx_config = OnnxConfig(
        image_size=config.image_size,
        resize_mode=config.resize_mode,
        pad_color=config.pad_color,
        image_mean=config.image_mean,
        image_std=config.image_std,
        max_question_tokens=config.max_question_tokens,
        temperature=config.temperature,
        output="softmax",
    )
    (out / CONFIG_FILE).write_text(json.dumps(onnx_config.to_json_dict(), indent=2) + "\n")
    (out / VOCAB_FILE).write_text(json.dumps(package.vocab.to_json_dict(), indent=1) + "\n")
    (out / ANSWERS_FILE).write_text("".join(f"{a}\n" for a in package.answers))
    card = package.card or f"# {package.path.name}\n"
    exported = f"Exported with `python -m vqa_engine.tools.export` (opset {opset}); runs on onnxruntime."
    note = f"\n\n## ONNX\n{exported}\n"
    (out / CARD_FILE).write_text(card.rstrip("\n") + note)
    difference = check_export(package, out)
    return ExportResult(out, (out / ONNX_FILE).stat().st_size, difference)


def check_export(package: ModelPackage, folder: Path, *, batch: int = 8) -> float:
    """Largest probability difference between torch and onnxruntime on random inputs; raises
    ``ModelPackageError`` above ``TOLERANCE``."""
    from vqa_engine.backends.onnx_runtime import OnnxBackend
    from vqa_engine.modular.package_format import ModelSource
    from vqa_engine.modular.predictor import Predictor

    backend = OnnxBackend(folder, ModelSource(str(folder)), device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(
        0, 256, (batch, 3, package.config.image_size, package.config.image_size), generator=generator
    )
    pixels = pixels.to(torch.uint8)
    words = package.vocab.tokens[2:] or ["what"]
    questions = [
        " ".join(words[int(i)] for i in torch.randint(0, len(words), (3 + n,), generator=generator))
        for n in range(batch)
    ]
    expected = Predictor(package).probabilities(pixels, questions)
    got = backend.scores(list(pixels), questions, top_k=1).probs
    difference = float((expected - got).abs().max())
    if difference > TOLERANCE:
        raise ModelPackageError(
            f"the ONNX export of {package.model_id} answers differently from torch "
            f"(probabilities differ by up to {difference:.2g}, more than {TOLERANCE:g})"
        )
    return difference


def _example(package: ModelPackage, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size = package.config.image_size
    images = normalize(torch.zeros(batch, 3, size, size, dtype=torch.uint8), package.config)
    tokens, lengths = encode_questions(package.vocab, ["what color is the shape"] * batch, 32)
    return images, tokens, lengths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vqa_engine.tools.export",
        description="Export a model package to ONNX: onnxruntime runs it without this project's model code.",
    )
    parser.add_argument(
        "package", type=Path, help="the model package folder to export (ours, or the seed's files)"
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        required=True,
        metavar="OUT",
        help="folder to write the ONNX package to (created if needed)",
    )
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default {OPSET})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        result = export_onnx(load_package(args.package), args.onnx, opset=args.opset)
    except ModelPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {result.folder} ({result.onnx_bytes / 1e6:.2f} MB model.onnx); onnxruntime matches torch "
        f"within {result.max_difference:.1e} (tolerance {TOLERANCE:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
