"""The earlier turns of a chat about its last image, bounded before they are kept.

A model that writes answers reads them before a follow-up question (``VQAEngine.answer``'s
``history``); they are kept beside the image (``bots.memory``), and a new image or ``/new``
starts afresh. Bounded twice: at most ``turns`` pairs, and at most ``chars`` characters of
text, the oldest going first, so a long chat never grows the prompt without end.
"""

from __future__ import annotations

from dataclasses import dataclass

from bots.options import DEFAULT_CONVERSATION_CHARS, DEFAULT_CONVERSATION_TURNS
from vqa_engine.conversation import History, Turn


@dataclass(frozen=True)
class ConversationBounds:
    """How much of a conversation is kept (``CONVERSATION_TURNS``, ``CONVERSATION_CHARS``)."""

    turns: int = DEFAULT_CONVERSATION_TURNS
    chars: int = DEFAULT_CONVERSATION_CHARS

    def __post_init__(self) -> None:
        if self.turns < 0 or self.chars < 0:
            raise ValueError("a conversation's bounds cannot be negative")

    @property
    def enabled(self) -> bool:
        return self.turns > 0 and self.chars > 0

    def after(self, history: History, turn: Turn) -> History:
        """``history`` with ``turn`` appended, then cut to the bounds (the oldest go first)."""
        kept = (*history, turn)[-self.turns :] if self.turns else ()
        while kept and sum(len(q) + len(a) for q, a in kept) > self.chars:
            kept = kept[1:]
        return kept
