"""Question tokenizer and vocabulary (0 = padding, 1 = unknown word)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(question: str) -> list[str]:
    """Lower-case words and numbers; punctuation (the final '?') is dropped."""
    return _TOKEN.findall(question.lower())


class QuestionVocab:
    def __init__(self, itos: list[str]):
        if itos[:2] != [PAD, UNK]:
            raise ValueError("a question vocabulary starts with <pad>, <unk>")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, questions: Iterable[str], min_count: int = 1) -> QuestionVocab:
        counts = Counter(tok for q in questions for tok in tokenize(q))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, question: str, max_len: int) -> tuple[np.ndarray, int, bool]:
        """Token ids padded to max_len, the length kept, and whether it was truncated."""
        ids = [self.stoi.get(tok, 1) for tok in tokenize(question)]
        out = np.zeros(max_len, dtype=np.int64)
        n = min(len(ids), max_len)
        out[:n] = ids[:n]
        return out, n, len(ids) > max_len

    def to_dict(self) -> dict:
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> QuestionVocab:
        return cls(d["itos"])
