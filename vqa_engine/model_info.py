"""What a loaded model is, for ``/health``, the start-up log and the front ends. Torch-free."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

#: the backend of a chat model that writes its answers as sentences (``vqa_engine.backends.vision_language``)
VISION_LANGUAGE = "vision-language"
#: the backend of a model on an OpenAI-compatible server, which writes sentences too (``remote_chat``)
REMOTE_CHAT = "remote-chat"


@dataclass(frozen=True)
class ModelInfo:
    """One loaded model (or an ensemble of them, with ``members``)."""

    model_id: str  # a Hub repo id or a local folder, as configured
    revision: str | None  # the resolved Hub commit; None for a local folder
    backend: str  # modular, transformers-classifier, transformers-generative, vision-language, onnx, ensemble
    answers: int | None  # size of the answer space; None for a generative model (open answers)
    dtype: str  # of the weights that compute: float32, int8 (dynamic), ...
    quantize: str  # none or int8, as applied
    device: str
    input_size: int  # the image side the model reads: smaller photos lose detail
    weight: float = 1.0  # share of the vote in an ensemble
    members: tuple[ModelInfo, ...] = ()
    #: the model that answers what this one abstains on (``ESCALATE_TO``)
    escalates_to: ModelInfo | None = None

    @property
    def written_answers(self) -> bool:
        """Whether (a member of) this model writes sentences, whose confidence is the mean of
        its tokens' probabilities and no chance of being right."""
        return self.backend in (VISION_LANGUAGE, REMOTE_CHAT) or any(m.written_answers for m in self.members)

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.escalates_to is not None:
            first = replace(self, escalates_to=None).describe()
            return f"{first}; escalates to {self.escalates_to.describe()}"
        if self.members:
            parts = "; ".join(f"{m.describe()}, weight {m.weight:.2f}" for m in self.members)
            return f"ensemble of {len(self.members)}: {parts}"
        revision = f"@{self.revision[:12]}" if self.revision else ""
        answers = f"{self.answers} answers" if self.answers is not None else "generated answers"
        return f"{self.model_id}{revision} ({self.backend}, {answers}, {self.dtype}, on {self.device})"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
