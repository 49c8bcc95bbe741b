"""Pretrained word vectors for the question embedding (GloVe or fastText text files).

The paper initializes its 300-d question embedding from fastText vectors (Ilievski & Feng 2017,
section 4). Formats read, plain or gzip-compressed (.gz):

- GloVe `.txt`: one word per line, `word v1 ... vd`;
- fastText `.vec`: the same after a header line `count dim`.

The file is streamed line by line and only the vocabulary's words are kept, so a 2-million-word
file costs the memory of the vocabulary, not of the file. A word matches exactly, else through
its lower-case form (GloVe 840B and fastText are cased; question tokens are lower-case): the
first such line wins, which in these frequency-sorted files is the most common casing.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from torch import nn

from vqa.data.text import PAD, UNK
from vqa.errors import UserError


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def load_word_vectors(
    path: str | Path, itos: list[str], dim: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Vectors of the vocabulary `itos` from a GloVe/fastText text file.

    Returns (vectors float [V, dim], zero where not found; found bool [V]; share found), the share
    counting the vocabulary's words only (not <pad> and <unk>, which no file holds).
    Raises UserError naming the file and line when the file's dimension is not `dim`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: word vectors file not found; download GloVe or fastText vectors (data/README.md)"
        )
    index = {w: i for i, w in enumerate(itos) if w not in (PAD, UNK)}
    lower: dict[str, list[int]] = {}  # lower-case form -> vocabulary rows it could fill
    for w, i in index.items():
        lower.setdefault(w.lower(), []).append(i)
    vectors = torch.zeros(len(itos), dim)
    exact = torch.zeros(len(itos), dtype=torch.bool)
    found = torch.zeros(len(itos), dtype=torch.bool)
    file_dim = None
    with _open(path) as f:
        for line_no, line in enumerate(f, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            if file_dim is None:  # first line: a fastText header `count dim`, or the first vector
                head = line.split()
                header = len(head) == 2 and all(t.isdigit() for t in head)
                file_dim = int(head[1]) if header else len(head) - 1
                _check_dim(path, line_no, file_dim, dim)
                if header:
                    continue
            rows = [index[word]] if word in index and not exact[index[word]] else []
            rows += [i for i in lower.get(word.lower(), ()) if not found[i]]
            vec = _vector(path, line_no, word, rest, dim) if rows else None
            if vec is None:
                continue
            for i in set(rows):
                vectors[i] = vec
                found[i] = True
            if word in index:
                exact[index[word]] = True
    share = found.sum().item() / max(len(index), 1)
    return vectors, found, share


def _vector(path: Path, line_no: int, word: str, rest: str, dim: int) -> torch.Tensor | None:
    """The `dim` values after `word` on a line, or None for a "word" with spaces (more values: GloVe 840B
    holds a few, never a question token); a UserError for fewer values or one that is not a number."""
    values = rest.split()
    if len(values) > dim:
        return None
    if len(values) < dim:
        raise UserError(f"{path}: line {line_no} ('{word}') has {len(values)} values, expected {dim}")
    try:
        return torch.tensor([float(v) for v in values])
    except ValueError:
        raise UserError(f"{path}: line {line_no} ('{word}') holds a value that is not a number") from None


def _check_dim(path: Path, line_no: int, file_dim: int, dim: int) -> None:
    if file_dim != dim:
        raise UserError(
            f"{path}: line {line_no}: vectors of dimension {file_dim}, but model.embed_dim is {dim}; "
            f"set model.embed_dim={file_dim} or use {dim}-d vectors"
        )


def init_embedding(embedding: nn.Embedding, path: str | Path, itos: list[str]) -> float:
    """Copy the vectors found in `path` into `embedding`'s rows (others keep their init); the share found."""
    vectors, found, share = load_word_vectors(path, itos, embedding.embedding_dim)
    with torch.no_grad():
        embedding.weight[found] = vectors[found].to(embedding.weight)
    return share
