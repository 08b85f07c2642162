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
    """The model (or ensemble) ``options.model_repo_id`` names, loaded and warmed up; with
    ``options.escalate_to``, paired with the second model that answers what it abstains on.

    Raises ``ModelPackageError`` (a subclass naming the member, file or setting at fault, on one
    line). With ``options.remote_base_url`` the model on that server answers instead (nothing
    is loaded here).
    """
    if options.remote_base_url is not None:
        from vqa_engine.backends.remote_chat import load_remote_backend

        return load_remote_backend(options)
    if options.escalate_to is None:
        return load_models(options.model_repo_id, options, token=token)
    first = _named(options.model_repo_id, options, "MODEL_REPO_ID", token=token)
    second = _named(options.escalate_to, options, "ESCALATE_TO", token=token)
    from vqa_engine.backends.escalation import Escalation

    return Escalation(first, second)


def load_models(spec: str, options: ModelOptions, *, token: str | None = None) -> Backend:
    """One model, or an ensemble, as ``spec`` (``MODEL_REPO_ID``'s syntax) names it."""
    members = parse_model_spec(spec, default_revision=options.model_revision)
    backends = []
    for number, member in enumerate(members, start=1):
        try:
            backends.append(load_member(member, options, token=token))
        except ModelPackageError as exc:
            if len(members) == 1:
                raise
            message = f"ensemble member {number} of {len(members)} ({member}) cannot load: {exc}"
            raise type(exc)(" ".join(message.split())) from exc
    if len(backends) == 1:
        return backends[0]
    from vqa_engine.backends.ensemble import Ensemble

    return Ensemble(backends, normalised_weights(members))


def _named(spec: str, options: ModelOptions, setting: str, *, token: str | None) -> Backend:
    """``load_models``, its errors saying which of the two settings names the model at fault."""
    try:
        return load_models(spec, options, token=token)
    except ModelPackageError as exc:
        raise type(exc)(" ".join(f"{setting} ({spec}) cannot load: {exc}".split())) from exc


def load_member(spec: MemberSpec, options: ModelOptions, *, token: str | None = None) -> Backend:
    """One model: fetched (or found locally), its kind read from its files unless
    ``options.model_backend`` says, then loaded on ``options.device``."""
    folder, source = resolve_model(spec.repo_id, revision=spec.revision, token=token)
    return open_folder(folder, source, options)
