"""The tokenizer's normalisation rules and the vocabulary's lookups."""

from __future__ import annotations

import pytest

from vqa_engine.errors import ModelPackageError
from vqa_engine.modular.vocab import PAD_ID, UNK_ID, Vocabulary, tokenize


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("What color is the shape?", ["what", "color", "is", "the", "shape"]),
        ("WHAT   COLOR\tis the SHAPE", ["what", "color", "is", "the", "shape"]),
        ("what colour is the shape", ["what", "color", "is", "the", "shape"]),
        ("is it grey?", ["is", "it", "gray"]),
        ("what's the shape?!", ["whats", "the", "shape"]),
        ("what’s it", ["whats", "it"]),
        ("ｗｈａｔ shape", ["what", "shape"]),  # full-width letters (NFKC)
        ("circle,triangle;rectangle", ["circle", "triangle", "rectangle"]),
        ("🔴 is it red? 🙂", ["is", "it", "red"]),
        ("snake_case words", ["snake", "case", "words"]),
        ("", []),
        ("?!...", []),
    ],
)
def test_tokenize(text: str, words: list[str]) -> None:
    assert tokenize(text) == words


def test_unknown_words_map_to_unk() -> None:
    vocab = Vocabulary.build(["what color is the shape?"])
    ids = vocab.encode("what flavour is the shape?", max_tokens=10)
    assert ids[1] == UNK_ID
    assert ids[0] == vocab.tokens.index("what")
    assert vocab.unknown_words("what flavour is the shape?") == ["flavour"]


def test_empty_question_encodes_to_one_unknown() -> None:
    vocab = Vocabulary.build(["what"])
    assert vocab.encode("???", max_tokens=10) == [UNK_ID]


def test_long_questions_are_cut() -> None:
    vocab = Vocabulary.build(["a b c"])
    assert len(vocab.encode("a b c " * 50, max_tokens=32)) == 32


def test_build_is_stable_and_reserves_pad_and_unk() -> None:
    one = Vocabulary.build(["b a", "c"])
    two = Vocabulary.build(["c", "a b"])
    assert one == two
    assert one.tokens[PAD_ID] == "<pad>" and one.tokens[UNK_ID] == "<unk>"


def test_json_round_trip() -> None:
    vocab = Vocabulary.build(["what shape is it"])
    assert Vocabulary.from_json_dict(vocab.to_json_dict()) == vocab


@pytest.mark.parametrize(
    "bad",
    [{"tokens": ["a", "b"]}, {"tokens": ["<pad>", "<unk>", "a", "a"]}, {"tokens": "abc"}, 42],
)
def test_bad_vocab_json(bad: object) -> None:
    with pytest.raises(ModelPackageError):
        Vocabulary.from_json_dict(bad)


def test_seed_mapping_with_upper_case_specials() -> None:
    vocab = Vocabulary.from_mapping({"<PAD>": 0, "<UNK>": 1, "what": 2})
    assert vocab.tokens == ["<pad>", "<unk>", "what"]
    with pytest.raises(ModelPackageError, match="without gaps"):
        Vocabulary.from_mapping({"<pad>": 0, "<unk>": 1, "what": 5})
