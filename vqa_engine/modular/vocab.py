"""Question tokenizer and vocabulary.

Normalisation, applied to every question before lookup:
1. Unicode NFKC, then lower case (``"WHAT"`` and full-width letters match ``"what"``).
2. A few British spellings map to the American ones easy-VQA uses (``colour`` -> ``color``,
   ``grey`` -> ``gray``).
3. Tokens are runs of letters and digits; everything else (punctuation, spaces, emoji) separates
   them and is dropped, so ``"shape?"`` and ``"shape"`` are the same word. An apostrophe inside a
   word is dropped too (``"what's"`` -> ``"whats"``).
4. Words not in the vocabulary become ``<unk>``; questions are cut at ``max_tokens`` words.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from vqa_engine.errors import ModelPackageError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

_SPELLINGS = {"colour": "color", "colours": "colors", "grey": "gray", "greyish": "grayish"}
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Normalised words of ``text`` (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    words = (w.replace("'", "") for w in _WORD.findall(text))
    return [_SPELLINGS.get(w, w) for w in words]


class Vocabulary:
    """Word <-> id; id 0 is padding and id 1 is the unknown word."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ModelPackageError(f"vocabulary must start with {PAD!r} and {UNK!r}")
        if len(set(tokens)) != len(tokens):
            raise ModelPackageError("vocabulary has duplicate words")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, questions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """A vocabulary of every word seen ``min_count`` times, in a stable (sorted) order."""
        counts = Counter(w for q in questions for w in tokenize(q))
        words = sorted(w for w, c in counts.items() if c >= min_count)
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def encode(self, question: str, max_tokens: int) -> list[int]:
        """Token ids of ``question``; at least one id (``<unk>`` for a question with no words)."""
        ids = [self._ids.get(w, UNK_ID) for w in tokenize(question)[:max_tokens]]
        return ids or [UNK_ID]

    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` the model has never seen (useful to tell a user why it is unsure)."""
        return [w for w in tokenize(question) if w not in self._ids]

    def to_json_dict(self) -> dict[str, object]:
        return {"format_version": 1, "tokens": self.tokens}

    @classmethod
    def from_json_dict(cls, data: object) -> Vocabulary:
        """Parse ``vocab.json``: ``{"tokens": [...]}`` or a plain list of words."""
        tokens = data.get("tokens") if isinstance(data, dict) else data
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ModelPackageError("vocab.json must hold a list of words under 'tokens'")
        return cls(tokens)

    @classmethod
    def from_mapping(cls, word_to_id: dict[str, int]) -> Vocabulary:
        """A seed-style ``{word: id}`` mapping; ids must be 0..N-1 with pad and unk first."""
        by_id = sorted(word_to_id.items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise ModelPackageError("vocab.pkl: word ids must run 0, 1, 2, ... without gaps")
        tokens = [w for w, _ in by_id]
        aliases = {"<PAD>": PAD, "<UNK>": UNK, "<pad>": PAD, "<unk>": UNK, "<OOV>": UNK}
        tokens[:2] = [aliases.get(t, t) for t in tokens[:2]]
        return cls(tokens)
