"""The engine's and the model's options: declared once here, read from the environment by
``config.Settings``.

Torch-free, so the settings (and the chat front ends) can import it without loading a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from vqa_engine.option_types import OptionalSecret, OptionalStr

#: candidates computed (and cached) per prediction; callers ask for fewer
MAX_TOP_K = 10

# The defaults that the engine's and the backends' own arguments share with the settings
# (``ImageLimits()``, ``Backend.predict``), each written here once:
DEFAULT_TOP_K = 3
DEFAULT_NUM_BEAMS = 3
#: a vision-language model's answer, in tokens at most, and what it is told before each question
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_SYSTEM_PROMPT = "Answer the question about the image briefly, in one short sentence."
#: how long one request to a model server (``REMOTE_BASE_URL``) may take, per attempt
DEFAULT_REMOTE_TIMEOUT_S = 60.0
#: ``MAX_IMAGE_BYTES`` and ``MAX_IMAGE_PIXELS`` (``config.settings.ImageSettings``): larger images
#: are refused before they are decoded
DEFAULT_MAX_IMAGE_BYTES = 20 * 2**20
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


class EngineOptions(BaseModel):
    """How the engine batches, queues and caches (the settings of the same names, upper-cased)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: int = Field(default=32, ge=1, le=1024, description="questions per forward pass at most")
    max_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="how long a batch may wait for questions still being decoded"
    )
    max_queue: int = Field(
        default=512, ge=1, description="questions admitted and not yet answered; beyond it, busy at once"
    )
    request_timeout_s: float = Field(default=30.0, gt=0, description="per question, admission to answer")
    cache_size: int = Field(default=1024, ge=0, description="predictions remembered (0 turns the cache off)")
    preprocess_threads: int = Field(
        default=1, ge=1, le=64, description="threads decoding images (one measured best on 2 cores)"
    )
    top_k: int = Field(
        default=DEFAULT_TOP_K,
        ge=1,
        le=MAX_TOP_K,
        description="candidates in a prediction unless the caller asks",
    )
    torch_threads: int = Field(
        default=0, ge=0, description="intra-op threads of the forward pass (process-wide); 0: torch's default"
    )


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


#: how a model package is run: ``auto`` reads it from the package's files
BackendName = Annotated[
    Literal["auto", "modular", "transformers", "vision-language", "onnx"], BeforeValidator(_lower)
]
Quantize = Annotated[Literal["none", "int8"], BeforeValidator(_lower)]
Device = Annotated[Literal["auto", "cpu", "cuda"], BeforeValidator(_lower)]

#: the model shipped in this repository (models/easy-vqa-film)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "easy-vqa-film"


class ModelOptions(BaseModel):
    """Which model answers and how it runs (the settings of the same names, upper-cased)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_repo_id: str = Field(
        default=str(DEFAULT_MODEL_DIR),
        min_length=1,
        description="a model folder or a Hub repo id; several, comma-separated, as ID[@REVISION][:WEIGHT]",
    )
    model_revision: OptionalStr = Field(
        default=None, description="branch, tag or commit on the Hub, for every member that names none"
    )
    escalate_to: OptionalStr = Field(
        default=None,
        description="a second model (same syntax as MODEL_REPO_ID) that answers the questions the first "
        "abstains on; blank: off",
    )
    device: Device = Field(default="auto", description="auto, cpu or cuda")
    model_backend: BackendName = Field(
        default="auto",
        description="auto (read from the package), modular, transformers, vision-language or onnx",
    )
    quantize: Quantize = Field(
        default="none", description="int8: dynamic int8 Linear layers on the CPU (transformers models)"
    )
    num_beams: int = Field(
        default=DEFAULT_NUM_BEAMS,
        ge=1,
        le=MAX_TOP_K,
        description="beams, and so candidates, of a generative model's answer",
    )
    max_new_tokens: int = Field(
        default=DEFAULT_MAX_NEW_TOKENS,
        ge=1,
        le=1024,
        description="the longest answer a vision-language model may write, in tokens",
    )
    system_prompt: OptionalStr = Field(
        default=DEFAULT_SYSTEM_PROMPT,
        description="what a vision-language model is told before each question; blank: nothing",
    )
    remote_base_url: OptionalStr = Field(
        default=None,
        description="an OpenAI-compatible model server (http://gpu:8000/v1): when set, it answers "
        "instead of MODEL_REPO_ID",
    )
    remote_model: OptionalStr = Field(
        default=None, description="the model's name on that server (needed with REMOTE_BASE_URL)"
    )
    remote_api_key: OptionalSecret = Field(
        default=None, description="the server's API key, if it asks for one (never logged)"
    )
    remote_timeout_s: float = Field(
        default=DEFAULT_REMOTE_TIMEOUT_S,
        gt=0,
        le=600,
        description="seconds one request to the model server may take (the client tries 3 times)",
    )

    @model_validator(mode="after")
    def _remote_needs_model(self) -> Self:
        if self.remote_base_url is not None and self.remote_model is None:
            raise ValueError("REMOTE_BASE_URL is set but REMOTE_MODEL is not: name the server's model")
        return self
