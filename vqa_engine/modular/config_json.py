"""Reading a package's ``config.json`` into one of our config dataclasses, with messages that
name the key at fault. Shared by our own packages and ONNX packages."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from vqa_engine.errors import ModelPackageError

#: the newest config.json layout this version reads
FORMAT_VERSION = 1

C = TypeVar("C")


def parse_config(cls: type[C], data: Any, *, model_type: str, wrong_type: str, unknown_hint: str = "") -> C:
    """``cls(**fields)`` from a parsed ``config.json``: the ``model_type`` must match (else
    ``wrong_type``, formatted with ``found``), the format must not be newer than we read, and
    every other key must be a field of ``cls``. Raises ``ModelPackageError``."""
    if not isinstance(data, dict):
        raise ModelPackageError("config.json must hold a JSON object")
    data = dict(data)
    version = data.pop("format_version", FORMAT_VERSION)
    found = data.pop("model_type", None)
    if found != model_type:
        raise ModelPackageError(wrong_type.format(found=found))
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelPackageError(
            f"config.json: format_version {version!r} is newer than this version of vqa-chat "
            f"understands ({FORMAT_VERSION}); upgrade vqa-chat"
        )
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelPackageError(f"config.json: unknown keys {', '.join(unknown)}{unknown_hint}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ModelPackageError(f"config.json: {exc}") from exc
