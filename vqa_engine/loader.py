"""From ``ModelOptions`` to a ready backend: resolve each member, tell its kind, load it.

    backend = load_backend(ModelOptions(model_repo_id="dandelin/vilt-b32-finetuned-vqa", quantize="int8"))

This module imports torch (and transformers or onnxruntime) only inside the functions that load,
so ``main.py`` can hand ``partial(load_backend, options)`` to the engine without paying for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vqa_engine.errors import ModelPackageError
from vqa_engine.hub import resolve_model
from vqa_engine.model_spec import MemberSpec, normalised_weights, parse_model_spec
from vqa_engine.options import ModelOptions
from vqa_engine.package_format import ModelSource, PackageKind, detect_kind, missing_files

if TYPE_CHECKING:
    from vqa_engine.backends.base import Backend

log = logging.getLogger(__name__)


def load_backend(options: ModelOptions = ModelOptions(), *, token: str | None = None) -> Backend:
    """The model (or ensemble) ``options.model_repo_id`` names, loaded and warmed up.

    Raises ``ModelPackageError`` (a subclass naming the member, file or setting at fault, on one
    line).
    """
    members = parse_model_spec(options.model_repo_id, default_revision=options.model_revision)
    backends = []
    for number, spec in enumerate(members, start=1):
        try:
            backends.append(load_member(spec, options, token=token))
        except ModelPackageError as exc:
            if len(members) == 1:
                raise
            message = f"ensemble member {number} of {len(members)} ({spec}) cannot load: {exc}"
            raise type(exc)(" ".join(message.split())) from exc
    if len(backends) == 1:
        return backends[0]
    from vqa_engine.backends.ensemble import Ensemble

    return Ensemble(backends, normalised_weights(members))


def load_member(spec: MemberSpec, options: ModelOptions, *, token: str | None = None) -> Backend:
    """One model: fetched (or found locally), its kind read from its files unless
    ``options.model_backend`` says, then loaded on ``options.device``."""
    folder, source = resolve_model(spec.repo_id, revision=spec.revision, token=token)
    return open_folder(folder, source, options)


def open_folder(
    folder: Path, source: ModelSource | None = None, options: ModelOptions = ModelOptions()
) -> Backend:
    """Load the package in ``folder`` (any kind) as a backend (its ``folder`` set: what the
    package says about itself, ``vqa_engine.model_facts``, is read from there)."""
    backend = _open(folder, source, options)
    backend.folder = folder
    return backend


def _open(folder: Path, source: ModelSource | None, options: ModelOptions) -> Backend:
    from vqa_engine.device import resolve_device

    source = source or ModelSource(repo_id=str(folder))
    if not folder.is_dir():
        raise ModelPackageError(f"model folder {folder} does not exist")
    kind: PackageKind = detect_kind(folder) if options.model_backend == "auto" else options.model_backend
    missing = missing_files(folder, kind)
    if missing is not None:
        forced = f" (MODEL_BACKEND={kind})" if options.model_backend != "auto" else ""
        raise ModelPackageError(f"{source.repo_id} is not a {kind} package{forced}: it has {missing}")
    device = resolve_device(options.device)
    if kind == "transformers":
        from vqa_engine.backends.transformers_vqa import load_transformers_backend

        return load_transformers_backend(
            folder, source, device=device, quantize=options.quantize, num_beams=options.num_beams
        )
    if kind == "onnx":
        from vqa_engine.backends.onnx_runtime import OnnxBackend

        return OnnxBackend(folder, source, device=device, quantize=options.quantize)
    from vqa_engine.backends.modular import ModularBackend
    from vqa_engine.package import load_package

    package = load_package(folder, device=device)
    package.source = source
    return ModularBackend(package, quantize=options.quantize)
