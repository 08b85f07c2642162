"""Question encoders: padded token ids (B, T) and lengths (B,) in, a vector (B, D) out."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vqa_engine.modular.vocab import PAD_ID


class BagOfWords(nn.Module):
    """Word order ignored: a sum of word vectors (a linear map of the count vector) and an MLP."""

    def __init__(self, vocab_size: int, embed_dim: int, out_dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, embed_dim, mode="sum", padding_idx=PAD_ID)
        self.proj = nn.Sequential(nn.ReLU(), nn.Linear(embed_dim, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.proj(self.bag(tokens))  # (B, D)


class RecurrentEncoder(nn.Module):
    """Word embeddings read by a GRU or LSTM; the last hidden state summarises the question."""

    def __init__(self, vocab_size: int, embed_dim: int, out_dim: int, cell: str) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn_cls(embed_dim, out_dim, batch_first=True)
        self.out_dim = out_dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM returns (h, c)
            hidden = hidden[0]
        return hidden[-1]  # (B, D)
