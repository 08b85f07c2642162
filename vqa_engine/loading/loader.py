"""From ``ModelOptions`` to a ready backend: resolve each member, tell its kind, load it.

    backend = load_backend(ModelOptions(model_repo_id="dandelin/vilt-b32-finetuned-vqa", quantize="int8"))

This module imports torch (and transformers or onnxruntime) only inside the functions that load,
so the service can hand ``partial(load_backend, options)`` to the engine without paying for it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vqa_engine.backends.folder import open_folder
from vqa_engine.errors import ModelPackageError
from vqa_engine.loading.hub import resolve_model
from vqa_engine.loading.model_spec import MemberSpec, normalised_weights, parse_model_spec
from vqa_engine.options import ModelOptions

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
