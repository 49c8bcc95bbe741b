"""Word vectors from GloVe / fastText text files into the question embedding."""

import gzip

import numpy as np
import pytest
import torch
from torch import nn

from vqa.data.text import PAD, UNK
from vqa.data.word_vectors import init_embedding, load_word_vectors
from vqa.errors import UserError

ITOS = [PAD, UNK, "what", "color", "is", "the", "paris", "zebra", "xqzw"]  # xqzw: in no file
DIM = 6


def vectors_table(words: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {w: rng.standard_normal(DIM).round(5) for w in words}


def write_vectors(path, table: dict, header: bool = False, extra: list[str] = ()):
    lines = [f"{len(table)} {DIM}"] if header else []
    lines += [w + " " + " ".join(f"{v:.5f}" for v in vec) for w, vec in table.items()]
    text = "\n".join([*lines, *extra]) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# Frequency-sorted like the real files; cased words; words outside the vocabulary.
TABLE = vectors_table(["the", ",", "is", "what", "Paris", "paris", "color", "café", "zebra", "Zebra"])


@pytest.mark.parametrize(
    "name,header", [("glove.6B.6d.txt", False), ("crawl-6d.vec", True), ("v.vec.gz", True)]
)
def test_formats(tmp_path, name, header):
    path = write_vectors(tmp_path / name, TABLE, header=header)
    vectors, found, share = load_word_vectors(path, ITOS, DIM)
    assert vectors.shape == (len(ITOS), DIM) and vectors.dtype == torch.float32
    assert found.tolist() == [False, False, True, True, True, True, True, True, False]
    assert share == pytest.approx(6 / 7)  # <pad> and <unk> are not counted
    for word in ("what", "color", "is", "the", "paris", "zebra"):
        np.testing.assert_allclose(vectors[ITOS.index(word)].numpy(), TABLE[word], atol=1e-6)
    assert not vectors[ITOS.index("xqzw")].any()


def test_lower_case_fallback_and_exact_match_wins(tmp_path):
    table = vectors_table(["Paris", "ZEBRA", "zebra"])  # "paris" only cased; "zebra" both, cased first
    vectors, found, _ = load_word_vectors(write_vectors(tmp_path / "v.txt", table), ITOS, DIM)
    np.testing.assert_allclose(vectors[ITOS.index("paris")].numpy(), table["Paris"], atol=1e-6)
    np.testing.assert_allclose(vectors[ITOS.index("zebra")].numpy(), table["zebra"], atol=1e-6)
    assert found.sum() == 2


def test_glove_840b_words_with_spaces_are_skipped(tmp_path):
    odd = "at name@domain.com " + " ".join(["0.5"] * DIM)  # such lines exist in glove.840B.300d.txt
    path = write_vectors(tmp_path / "v.txt", vectors_table(["what"]), extra=[odd])
    _, found, share = load_word_vectors(path, [PAD, UNK, "what", "at"], DIM)
    assert found.tolist() == [False, False, True, False] and share == 0.5


def test_dimension_mismatch_names_file_and_line(tmp_path):
    path = write_vectors(tmp_path / "crawl.vec", TABLE, header=True)
    with pytest.raises(
        UserError, match=r"crawl.vec: line 1: vectors of dimension 6, but model.embed_dim is 300"
    ):
        load_word_vectors(path, ITOS, 300)
    path = write_vectors(tmp_path / "glove.txt", TABLE)
    with pytest.raises(
        UserError, match=r"glove.txt: line 1: vectors of dimension 6, .* set model.embed_dim=6"
    ):
        load_word_vectors(path, ITOS, 4)
    path = write_vectors(tmp_path / "short.txt", vectors_table(["the", "what"]), extra=["zebra 1.0 2.0"])
    with pytest.raises(UserError, match=r"short.txt: line 3 \('zebra'\) has 2 values, expected 6"):
        load_word_vectors(path, ITOS, DIM)
    with pytest.raises(UserError, match="nope.vec: word vectors file not found"):
        load_word_vectors(tmp_path / "nope.vec", ITOS, DIM)


def test_init_embedding_copies_found_rows_only(tmp_path):
    path = write_vectors(tmp_path / "v.vec", TABLE, header=True)
    emb = nn.Embedding(len(ITOS), DIM, padding_idx=0)
    before = emb.weight.detach().clone()
    share = init_embedding(emb, path, ITOS)
    assert share == pytest.approx(6 / 7)
    np.testing.assert_allclose(emb.weight[ITOS.index("color")].detach().numpy(), TABLE["color"], atol=1e-6)
    for i in (0, 1, ITOS.index("xqzw")):  # <pad>, <unk> and the missing word keep their init
        assert torch.equal(emb.weight[i], before[i])
