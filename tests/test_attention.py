"""`vqa attention`: one readable PNG per question for attention models, a clear error for AVG."""

from __future__ import annotations

import pytest
from PIL import Image

from vqa.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = ["train.epochs=1", "train.batch_size=32", "model.embed_dim=16", "model.rnn_dim=32", "model.hidden_dim=32",
        "model.attention_dim=16", "model.mcb_dim=64", "model.dropout=0.0"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """1-epoch tiny runs: pool on the grid (2 glimpses), updn on boxes (1 glimpse), avg (no attention)."""
    out = tmp_path_factory.mktemp("runs")
    for name, features, glimpses in (("pool", "grid", 2), ("updn", "boxes", 1), ("avg", "grid", 1)):
        args = ["train", "--config", "configs/synthetic/avg_soft.yaml", f"data.root={tiny_data}", f"out_dir={out}",
                f"name={name}", f"model.name={name}", f"data.features={features}", f"model.glimpses={glimpses}", *TINY]  # fmt: skip
        assert main(args) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name, glimpses", [("pool", 2), ("updn", 1)])
def test_one_png_per_question(runs, tmp_path, capsys, name, glimpses):
    out = tmp_path / "att"
    assert main(["attention", "--run", str(runs / name), "--n", "3", "--out", str(out)]) == 0
    files = sorted(out.iterdir())
    assert len(files) == 3 and all(f.suffix == ".png" for f in files), files
    for f in files:
        assert f.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(f) as img:
            img.verify()
        with Image.open(f) as img:
            width, height = img.size
            assert 300 <= height <= 600 and width >= 300 * (1 + glimpses), (f.name, img.size)
            # not a blank canvas: a heatmap and text give many distinct colours
            assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    printed = capsys.readouterr().out
    assert f"attention: 3 figures of {name}" in printed


@pytest.mark.slow
def test_seeded_sample_differs_from_the_first_questions(runs, tmp_path):
    first, sample = tmp_path / "first", tmp_path / "sample"
    assert main(["attention", "--run", str(runs / "pool"), "--n", "4", "--out", str(first)]) == 0
    assert (
        main(["attention", "--run", str(runs / "pool"), "--n", "4", "--seed", "1", "--out", str(sample)]) == 0
    )
    assert {f.name for f in first.iterdir()} != {f.name for f in sample.iterdir()}


@pytest.mark.slow
def test_avg_has_no_attention(runs, tmp_path, capsys):
    out = tmp_path / "att"
    assert main(["attention", "--run", str(runs / "avg"), "--n", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model 'avg' has no attention" in err, err
    assert not out.exists()
