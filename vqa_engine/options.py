"""The engine's options: declared once here, read from the environment by ``config.Settings``.

Torch-free, so the settings (and the chat front ends) can import it without loading a model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: candidates computed (and cached) per prediction; callers ask for fewer
MAX_TOP_K = 10


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
        default=3, ge=1, le=MAX_TOP_K, description="candidates in a prediction unless the caller asks"
    )
    torch_threads: int = Field(
        default=0, ge=0, description="intra-op threads of the forward pass (process-wide); 0: torch's default"
    )
