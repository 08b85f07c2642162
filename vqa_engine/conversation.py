"""The earlier turns of a conversation about one image, as the engine receives them.

A model that writes answers reads them before the new question; a classifier answers each
question alone. Plain data, torch-free: the chat core keeps the turns, the engine passes them on.
"""

from __future__ import annotations

#: one earlier (question, answer) pair
Turn = tuple[str, str]
#: the earlier turns, oldest first
History = tuple[Turn, ...]


def history_key(history: History) -> str:
    """What the answer cache adds to a question's key, so a follow-up is never answered from
    the entry of the same question asked without those turns ("" when there are none)."""
    return "".join(f"\n\x1e{question}\x1f{answer}" for question, answer in history)
