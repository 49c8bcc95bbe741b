from dataclasses import asdict
from pathlib import Path

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


CONFIGS = Path(__file__).parents[1] / "configs"
FOLDERS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def test_every_config_folder_is_checked():
    assert {"synthetic", "vqa2", "vqa1", "vqacp2", "vizwiz", "okvqa"} <= set(FOLDERS)
    assert {f"synthetic-{s}" for s in ("vqa1", "vqacp2", "vizwiz", "okvqa")} <= set(FOLDERS)


PAPER_MODELS = {"synthetic-long": ("avg", "pool")}  # the models `make paper` trains there; else avg pool mcb


@pytest.mark.parametrize("folder", FOLDERS)
def test_shipped_pairs_differ_only_in_the_loss(folder):
    """Every <model>_hard.yaml of every folder has a <model>_soft.yaml that differs in train.loss and
    name alone, and `make paper DATA=<folder>` finds the default models (avg pool mcb; the long
    protocol's: avg pool)."""
    root = CONFIGS / folder
    hards = sorted(root.glob("*_hard.yaml"))
    assert {p.stem for p in hards} >= {f"{m}_hard" for m in PAPER_MODELS.get(folder, ("avg", "pool", "mcb"))}
    assert {p.stem.replace("_soft", "_hard") for p in root.glob("*_soft.yaml")} == {p.stem for p in hards}
    for hard in hards:
        a = asdict(load_config(hard))
        b = asdict(load_config(hard.with_name(hard.name.replace("_hard", "_soft"))))
        diff = {k for k in a if a[k] != b[k]} | {
            f"{s}.{k}" for s in ("data", "model", "train") for k in a[s] if a[s][k] != b[s][k]
        }
        assert diff == {"name", "train", "train.loss"}, hard.name
        assert (a["train"]["loss"], b["train"]["loss"]) == ("hard_ce", "soft_ce"), hard.name
        assert a["model"]["name"] == hard.stem.split("_")[0]


def test_long_protocol_is_the_synthetic_models_for_longer():
    """configs/synthetic-long/: the models and optimizer of configs/synthetic/ on the tiny preset, 60 epochs."""
    for name in ("avg_hard", "pool_soft"):
        long, short = (load_config(CONFIGS / f / f"{name}.yaml") for f in ("synthetic-long", "synthetic"))
        assert long.model == short.model and (long.train.lr, long.train.loss) == (
            short.train.lr,
            short.train.loss,
        )
        assert (long.data.root, long.data.synth_preset) == ("data/synthetic/tiny", "tiny")
        assert (long.train.epochs, long.train.lr_decay_epochs) == (60, [45, 54])


@pytest.mark.parametrize("source", ["vqa1", "vqacp2", "vizwiz", "okvqa"])
def test_source_configs_and_their_synthetic_stand_ins(source):
    """configs/<source>/ reads the real files; configs/synthetic-<source>/ generates the same format."""
    real = load_config(CONFIGS / source / "avg_soft.yaml")
    synth = load_config(CONFIGS / f"synthetic-{source}" / "avg_soft.yaml")
    assert real.data.source == synth.data.source == synth.data.synth_format == source
    assert real.data.root == f"data/{source}" and real.data.synth_preset == ""
    assert synth.data.root == f"data/synthetic/small-{source}" and synth.data.synth_preset == "small"
    assert (real.data.train_split, real.data.val_split) == (synth.data.train_split, synth.data.val_split)
    assert synth.model == load_config(CONFIGS / "synthetic" / "avg_soft.yaml").model


def test_published_settings_of_the_source_configs():
    """VizWiz: the published VizWiz baseline's protocol; VQA-CP UpDn: the published UpDn baseline's."""
    viz = load_config(CONFIGS / "vizwiz" / "pool_soft.yaml")
    assert (viz.train.lr, viz.train.batch_size, viz.train.epochs, viz.train.lr_decay_epochs) == (
        1e-3,
        128,
        50,
        [],
    )
    assert (viz.data.max_answers, viz.data.max_question_len) == (3000, 26)
    cp = load_config(CONFIGS / "vqacp2" / "updn_soft.yaml")
    assert (cp.train.lr, cp.train.batch_size, cp.train.epochs, cp.train.grad_clip) == (2e-3, 512, 15, 0.25)
    assert (cp.data.val_split, cp.data.test_split, cp.data.max_question_len, cp.data.features) == (
        "heldout",
        "test",
        14,
        "boxes",
    )  # the epoch chosen on a part of train held out by image, test scored once at it
    assert (
        load_config(CONFIGS / "vqacp2" / "pool_soft.yaml").train
        == load_config(CONFIGS / "vqa2" / "pool_soft.yaml").train
    )  # the other models keep the paper's protocol


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


def test_published_protocols_of_mcan_and_ban():
    """configs/vqa2/{mcan,ban}_bce.yaml: the authors' settings (MILVLG/mcan-vqa, jnhwkim/ban-vqa); the
    bce file is the soft file with train.loss=bce; every real source's files train the same model the
    same way, every synthetic stand-in the configs/synthetic/ model."""
    mcan = load_config(CONFIGS / "vqa2" / "mcan_bce.yaml")
    m, t = mcan.model, mcan.train
    assert (m.hidden_dim, m.heads, m.ff_dim, m.layers, m.glimpses, m.dropout) == (512, 8, 2048, 6, 1, 0.1)
    assert (t.optimizer, t.lr, t.adam_betas, t.adam_eps, t.batch_size, t.epochs) == (
        "adam",
        1e-4,
        [0.9, 0.98],
        1e-9,
        64,
        13,
    )
    assert (t.warmup, t.warmup_epochs, t.lr_decay_epochs, t.lr_decay_factor) == (
        "epochwise",
        3,
        [10, 12],
        0.2,
    )
    ban = load_config(CONFIGS / "vqa2" / "ban_bce.yaml")
    m, t = ban.model, ban.train
    assert (m.hidden_dim, m.glimpses, m.dropout, m.fc_dropout, m.rnn) == (1280, 8, 0.5, 0.2, "gru")
    assert (t.optimizer, t.lr, t.grad_clip, t.batch_size, t.epochs) == ("adamax", 2e-3, 0.25, 256, 13)
    assert (t.warmup, t.warmup_epochs, t.lr_decay_epochs, t.lr_decay_factor) == (
        "epochwise",
        3,
        [10, 12],
        0.25,
    )
    for name in ("mcan", "ban"):
        bce, soft = (asdict(load_config(CONFIGS / "vqa2" / f"{name}_{k}.yaml")) for k in ("bce", "soft"))
        bce["train"]["loss"], bce["name"] = "soft_ce", soft["name"]
        assert bce == soft
        for source in ("vqa1", "vqacp2", "vizwiz", "okvqa"):
            cfg = load_config(CONFIGS / source / f"{name}_soft.yaml")
            assert (cfg.model, cfg.train) == (
                load_config(CONFIGS / "vqa2" / f"{name}_soft.yaml").model,
                load_config(CONFIGS / "vqa2" / f"{name}_soft.yaml").train,
            )
            assert cfg.data.source == source and cfg.data.features == "boxes"
            synth = load_config(CONFIGS / f"synthetic-{source}" / f"{name}_hard.yaml")
            assert synth.model == load_config(CONFIGS / "synthetic" / f"{name}_hard.yaml").model
