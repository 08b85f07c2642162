"""Tiny random-weight transformers VQA models, written to a folder the way the Hub holds real ones.

A ViLT classifier and a BLIP generator with the real classes and processors, a few thousand
parameters each and a vocabulary written here: the code paths of ``dandelin/vilt-b32-finetuned-vqa``
and ``Salesforce/blip-vqa-base`` without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [
    "what", "color", "colour", "is", "the", "shape", "in", "image", "how", "many", "are", "there",
    "a", "red", "blue", "green", "circle", "square", "cat", "dog", "yes", "no", "two", "three", "?",
]  # fmt: skip
VILT_ANSWERS = ["yes", "no", "red", "Blue", "2", "cat", "circle"]
VILT_TEXT_LENGTH = 12  # position embeddings: longer questions must be cut


def _vocab(specials: list[str]) -> dict[str, int]:
    """The word-piece vocabulary: special tokens, then whole words (saved as vocab.txt)."""
    return {token: i for i, token in enumerate([*specials, *WORDS])}


def save_tiny_vilt(folder: Path, *, seed: int = 0, answers: list[str] = VILT_ANSWERS) -> Path:
    """A ViLT question-answering model over ``answers``, 32×32-ish images, 8-pixel patches."""
    from transformers import (
        BertTokenizer,
        ViltConfig,
        ViltForQuestionAnswering,
        ViltImageProcessor,
        ViltProcessor,
    )

    tokenizer = BertTokenizer(
        vocab=_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]), do_lower_case=True
    )
    images = ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=8)  # type: ignore[call-arg]
    processor = ViltProcessor(images, tokenizer)
    config = ViltConfig(  # type: ignore[call-arg]
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        max_position_embeddings=VILT_TEXT_LENGTH,
        num_labels=len(answers),
        id2label=dict(enumerate(answers)),
        label2id={a: i for i, a in enumerate(answers)},
    )
    torch.manual_seed(seed)
    model = ViltForQuestionAnswering(config).eval()
    with torch.no_grad():  # spread the logits, so that answers differ by image and question
        model.classifier[-1].weight.mul_(20)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_blip(folder: Path, *, seed: int = 0) -> Path:
    """A BLIP question-answering model whose decoder prefers a few words, so beams differ."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForQuestionAnswering,
        BlipImageProcessor,
        BlipProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    tokenizer = BertTokenizer(vocab=_vocab(specials), do_lower_case=True, bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=ids("[DEC]"),
        pad_token_id=ids("[PAD]"),
        sep_token_id=ids("[SEP]"),
        eos_token_id=ids("[SEP]"),
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    model = BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision)).eval()
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.bias
        bias.fill_(-4.0)
        for word, value in (("yes", 3.0), ("red", 2.6), ("two", 2.3), ("[SEP]", 2.8)):
            bias[ids(word)] = value
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
