import pytest

from vqa.config import load_config
from vqa.errors import UserError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path, "base.yaml", "train:\n  lr: 1.0e-3\n  epochs: 5\nmodel:\n  rnn_dim: 64\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nname: x\ntrain:\n  epochs: 7\n  loss: hard_ce\n")
    cfg = load_config(child, ["train.lr=3e-4", "model.glimpses=3", "train.lr_decay_epochs=[2, 4]"])
    assert (cfg.name, cfg.train.epochs, cfg.train.loss) == ("x", 7, "hard_ce")
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.rnn_dim == 64 and cfg.model.glimpses == 3
    assert cfg.train.lr_decay_epochs == [2, 4]


def test_shipped_synthetic_pairs_differ_only_in_the_loss():
    from dataclasses import asdict
    from pathlib import Path

    root = Path(__file__).parents[1] / "configs" / "synthetic"
    for hard in sorted(root.glob("*_hard.yaml")):
        a = asdict(load_config(hard))
        b = asdict(load_config(hard.with_name(hard.name.replace("_hard", "_soft"))))
        diff = {k for k in a if a[k] != b[k]} | {
            f"{s}.{k}" for s in ("data", "model", "train") for k in a[s] if a[s][k] != b[s][k]
        }
        assert diff == {"name", "train", "train.loss"}, hard.name


@pytest.mark.parametrize(
    "text, match",
    [
        ("train:\n  lrr: 0.1\n", "unknown key 'train.lrr'.*'train.lr'"),
        ("trian:\n  lr: 0.1\n", "unknown key 'trian'.*'train'"),
        ("train:\n  epochs: ten\n", "'train.epochs' must be int"),
        ("train:\n  epochs: 2.5\n", "'train.epochs' must be int"),
        ("data:\n  features: pixels\n", "'data.features'.*grid, boxes"),
        ("model:\n  dropout: 1.5\n", "model.dropout"),
        ("train: [1, 2]\n", "'train' must be a mapping"),
        ("train:\n  lr: [\n", "not valid YAML"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_config(write(tmp_path, "bad.yaml", text))


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(UserError, match="unknown key 'train.batchsize'.*'train.batch_size'"):
        load_config(None, ["train.batchsize=3"])
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
