"""A model package folder (any kind: ours, ONNX, transformers, vision-language) opened as a backend.

Its own module so that both the loader (``MODEL_REPO_ID`` -> backend) and the Hub's ``push``
(which refuses a package that does not load) use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.package_format import ModelSource, PackageKind, detect_kind, missing_files
from vqa_engine.options import ModelOptions

if TYPE_CHECKING:
    from vqa_engine.backends.base import Backend


def open_folder(
    folder: Path, source: ModelSource | None = None, options: ModelOptions = ModelOptions()
) -> Backend:
    """Load the package in ``folder`` (any kind) as a backend (its ``folder`` set: what the
    package says about itself, ``vqa_engine.serving.model_facts``, is read from there)."""
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
    if kind == "vision-language":
        from vqa_engine.backends.vision_language import load_vision_language_backend

        return load_vision_language_backend(
            folder,
            source,
            device=device,
            quantize=options.quantize,
            max_new_tokens=options.max_new_tokens,
            system_prompt=options.system_prompt,
        )
    if kind == "onnx":
        from vqa_engine.backends.onnx_runtime import OnnxBackend

        return OnnxBackend(folder, source, device=device, quantize=options.quantize)
    from vqa_engine.backends.modular import ModularBackend
    from vqa_engine.modular.package import load_package

    package = load_package(folder, device=device)
    package.source = source
    return ModularBackend(package, quantize=options.quantize)
