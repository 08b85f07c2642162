"""Choosing where the model runs."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def resolve_device(setting: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU falls back to the CPU with a warning."""
    setting = setting.lower()
    if setting not in ("auto", "cpu", "cuda"):
        raise ValueError(f"DEVICE must be auto, cpu or cuda, not {setting!r}")
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if setting == "cuda":
        log.warning("DEVICE=cuda but no CUDA device is available; running on the CPU")
    return torch.device("cpu")
