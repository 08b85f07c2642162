"""Tiny random-weight transformers VQA and vision-language models, written to a folder the way the
Hub holds real ones.

A ViLT classifier, a BLIP generator and an Idefics3 chat model with the real classes, processors
and (for Idefics3) SmolVLM's chat template, a few thousand parameters each and a vocabulary written
here: the code paths of ``dandelin/vilt-b32-finetuned-vqa``, ``Salesforce/blip-vqa-base`` and
``HuggingFaceTB/SmolVLM-256M-Instruct`` without downloading anything.
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


#: the chat template of HuggingFaceTB/SmolVLM-256M-Instruct: "User:<image>question<end_of_utterance>"
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
#: Idefics3's image markers: a tile's row and column, the whole picture, the placeholder
SMOLVLM_SPECIALS = [
    "<|endoftext|>",
    "<unk>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
]
SMOLVLM_WORDS = [*WORDS, "User", "Assistant", "System", ":", ".", ",", "Answer", "briefly", "one", "short"]


def save_tiny_smolvlm(folder: Path, *, seed: int = 0) -> Path:
    """An Idefics3 (SmolVLM's architecture) chat model with SmolVLM's processor and template:
    64-pixel images cut into 32-pixel tiles (2×2 and the whole picture), 4 image tokens a tile,
    a word-level vocabulary. Its head is sharpened so that it writes words with some confidence,
    and its end token takes the place of "no", so that some answers end early."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )

    vocab = {token: i for i, token in enumerate([*SMOLVLM_SPECIALS, *SMOLVLM_WORDS])}
    words = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.decoder = decoders.WordPiece(prefix="##")  # words joined by spaces, none before punctuation
    words.add_special_tokens(SMOLVLM_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )
    images = Idefics3ImageProcessor(  # type: ignore[call-arg]
        do_image_splitting=True, size={"longest_edge": 64}, max_image_size={"longest_edge": 32}
    )
    processor = Idefics3Processor(images, tokenizer, image_seq_len=4, chat_template=SMOLVLM_TEMPLATE)
    ids = vocab  # the special tokens keep their places in the vocabulary
    special = dict(bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<end_of_utterance>"])
    config = Idefics3Config(  # type: ignore[call-arg]
        image_token_id=ids["<image>"],
        scale_factor=2,  # (32 / 8)² patches / 2² = 4 image tokens a tile
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=ids["<|endoftext|>"],
            **special,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        head = model.lm_head.weight
        head.mul_(20)
        head[ids["<end_of_utterance>"]] = head[ids["no"]] * 1.05
    model.generation_config = GenerationConfig(  # a random model would write image markers too
        **special,
        pad_token_id=ids["<|endoftext|>"],
        suppress_tokens=[vocab[t] for t in SMOLVLM_SPECIALS if t != "<end_of_utterance>"],
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
