"""Dynamic int8 quantisation of a model's Linear layers (CPU).

Weights are stored as int8 and activations quantised per batch at run time
(``torch.ao.quantization.quantize_dynamic``): on a full-size ViLT this is 2.4-2.9x faster on two
CPU cores (benchmarks/README.md). torch marks the ``torch.ao.quantization`` API deprecated in
favour of torchao, whose CPU path we have not measured; its notices are silenced here.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.Linear`` replaced by a dynamic int8 one (in place where torch can)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def count_int8_linear(model: nn.Module) -> int:
    """How many Linear layers compute in int8 (what ``/health`` and the tests check)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(isinstance(m, DynamicLinear) for m in model.modules())


def weights_dtype(model: nn.Module, *, quantized: bool) -> str:
    """``float32``, or ``int8 (dynamic) + float32`` when Linear layers are int8 and the rest is not."""
    floats = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    rest = "/".join(floats) or "float32"
    return f"int8 (dynamic Linear) + {rest}" if quantized else rest
