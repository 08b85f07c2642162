"""DEVICE=auto|cpu|cuda, and the fallback when no GPU is present."""

from __future__ import annotations

import logging

import pytest
import torch

from vqa_engine.device import resolve_device


def test_cpu_is_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda") == torch.device("cpu")
    assert "no CUDA device is available; running on the CPU" in caplog.text


def test_auto_without_a_gpu_is_quietly_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_device("AUTO") == torch.device("cpu")
    assert caplog.text == ""


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="DEVICE must be auto, cpu or cuda"):
        resolve_device("tpu")
