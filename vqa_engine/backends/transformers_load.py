"""Opening a transformers model folder safely: what the transformers backends share.

Nothing from the folder is executed (``trust_remote_code=False``, ``local_files_only``; weights
from safetensors, or a ``pytorch_model.bin`` read with ``torch.load(weights_only=True)`` by
transformers), and every failure becomes a ``ModelPackageError`` of one line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from vqa_engine.backends.quantize import count_int8_linear, quantize_linear_int8, weights_dtype
from vqa_engine.errors import ModelPackageError, first_line
from vqa_engine.modular.package_format import ModelSource

log = logging.getLogger(__name__)

#: what every ``from_pretrained`` call is given: this folder only, and none of its code
SAFE = {"local_files_only": True, "trust_remote_code": False}


def read_config(folder: Path, where: str) -> Any:
    """The folder's transformers config; a custom architecture is refused, not run."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, **SAFE)
    except Exception as exc:
        raise ModelPackageError(
            f"{where}: transformers cannot read its config.json ({first_line(exc)}); vqa-chat never runs "
            "code from a model repo, so a custom architecture has to be exported to ONNX "
            "(docs/models.md: any architecture)"
        ) from exc


def load_model(auto_class: Any, folder: Path, where: str, device: torch.device) -> tuple[Any, Any]:
    """(model, processor) from ``folder``, the model in eval mode on ``device`` (float32 on a
    CPU, where half precision is slow; the checkpoint's own precision elsewhere)."""
    import transformers
    from transformers import AutoProcessor

    # transformers' own switch (process-wide): no "Loading weights" progress bar in a server's log
    transformers.utils.logging.disable_progress_bar()
    dtype = torch.float32 if device.type == "cpu" else "auto"
    try:
        model = auto_class.from_pretrained(folder, dtype=dtype, **SAFE)
        processor = AutoProcessor.from_pretrained(folder, **SAFE)
    except Exception as exc:
        raise ModelPackageError(f"{where}: transformers could not load it: {first_line(exc)}") from exc
    model.eval().to(device)
    return model, processor


def quantize_on_cpu(model: Any, quantize: str, device: torch.device, where: str) -> bool:
    """Apply ``QUANTIZE=int8`` (dynamic int8 Linear layers, CPU only); whether any layer now
    computes in int8."""
    if quantize != "int8":
        return False
    if device.type != "cpu":
        log.warning("QUANTIZE=int8 is for the CPU; %s runs on %s unquantized", where, device)
        return False
    quantize_linear_int8(model)
    layers = count_int8_linear(model)
    log.info("%s: %d Linear layers quantized to int8", where, layers)
    return layers > 0


def info_fields(
    source: ModelSource, model: Any, device: torch.device, *, quantized: bool, input_size: int
) -> dict[str, Any]:
    """The ``ModelInfo`` fields every transformers backend fills the same way."""
    return dict(
        model_id=source.repo_id,
        revision=source.revision,
        dtype=weights_dtype(model, quantized=quantized),
        quantize="int8" if quantized else "none",
        device=str(device),
        input_size=input_size,
    )
