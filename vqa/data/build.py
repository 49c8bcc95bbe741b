"""Config -> data: records, vocabularies, feature stores and Datasets.

Everything that turns a config into data lives here, so the trainer, `vqa predict`,
`vqa attention` and the benchmarks ask for datasets instead of assembling them:

    ensure_synthetic(cfg)               generate the synthetic data a config points at, if missing
    data = build_datasets(cfg)          train + val Datasets, vocabularies from the training split
    ds = build_split(cfg, split, ...)   any split with given vocabularies (predict, attention)

data.val_split heldout holds a part of the training split's images out for validation
(vqa/data/heldout.py); data.test_split, when set, is built beside them (scored once, at the end).

The dataset's files come from its source (data.source: vqa/data/sources), its features from
data.features_file with {split} = the image folder (a split may draw on several: VQA-CP).
"""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqa import io
from vqa.config import Config, DataConfig
from vqa.data.answers import AnswerVocab
from vqa.data.dataset import VQADataset
from vqa.data.features import FeatureStore
from vqa.data.feed import build_loader
from vqa.data.heldout import HELDOUT, hold_out
from vqa.data.image_features import ImageFeatures
from vqa.data.loader import EpochSampler, ShardSampler
from vqa.data.shuffled import shuffle_soft_targets
from vqa.data.sources import Records, get_source
from vqa.data.text import QuestionVocab
from vqa.errors import UserError


def ensure_synthetic(cfg: Config) -> None:
    """Generate the synthetic dataset a config points at when it is missing (`make train` on a fresh
    clone), or when its stats.json says it holds other files than vqa synth writes for the config
    (another format, other annotators, another VQA-CP re-split; vqa.synth.generate.stale_reason): a
    run never trains on data other than its config's without saying so."""
    root = Path(cfg.data.root)
    if not cfg.data.synth_preset:
        return
    from vqa.synth.generate import generate, stale_reason
    from vqa.synth.presets import PRESETS

    in_format = "" if cfg.data.synth_format == "vqa2" else f" in the {cfg.data.synth_format} format"
    what = f"the synthetic '{cfg.data.synth_preset}' preset{in_format}"
    stats_path = root / "stats.json"
    if stats_path.exists():
        held = stale_reason(io.read_json(stats_path, "synthetic data statistics"), cfg.data.synth_format)
        if held is None:
            return
        print(
            f"data: {root} holds {held}, not what the config asks for: regenerating {what} there", flush=True
        )
    else:
        print(f"data: {root} is missing; generating {what} there", flush=True)
    generate(root, seed=0, format=cfg.data.synth_format, **PRESETS[cfg.data.synth_preset])


def features_path(cfg: Config, split: str) -> Path:
    """The HDF5 file of `split`'s images (test-dev2015's live in test2015's file); `split` may also
    name an image folder. A split whose entries name their folder (VQA-CP) gives its first one."""
    source = get_source(cfg.data.source)
    info = source.splits.get(split)
    group = split if info is None else (info.images or source.image_groups[0])
    return Path(cfg.data.root) / cfg.data.features_file.format(split=group)


def _templates(cfg: Config) -> tuple[str, str]:
    """data.questions / data.annotations where changed from their defaults (VQA v2's names), else ""
    (the source's own file names)."""
    defaults = DataConfig()
    questions = "" if cfg.data.questions == defaults.questions else cfg.data.questions
    answers = "" if cfg.data.annotations == defaults.annotations else cfg.data.annotations
    return questions, answers


def split_files(cfg: Config, split: str) -> tuple[Path, Path | None]:
    """(questions file, answers file, or None where the questions file holds the answers) of `split`."""
    return get_source(cfg.data.source).files(Path(cfg.data.root), split, *_templates(cfg))


def load_records(cfg: Config, split: str) -> Records:
    """The Records of `split` of the configured source (its files: `split_files`)."""
    return get_source(cfg.data.source).load(Path(cfg.data.root), split, *_templates(cfg))


def open_features(
    cfg: Config, records: Records, expected_dim: int | None = None, opened: dict | None = None
) -> ImageFeatures:
    """The features of every image of `records`, from the feature file of each image's folder, each
    file checked against the expected feature size when opened; `opened` shares the stores between
    splits (VQA-CP's train and test read the same two files)."""
    opened = {} if opened is None else opened
    for group in records.groups:
        if group not in opened:
            path = Path(cfg.data.root) / cfg.data.features_file.format(split=group)
            store = opened[group] = FeatureStore(path, cfg.data.features, cfg.data.preload)
            expected = expected_dim or cfg.data.feature_dim
            if expected and store.dim != expected:
                raise UserError(
                    f"{store.path}: '{store.key}' has feature dim {store.dim} but {expected} is expected "
                    "(data.feature_dim, the training split or the checkpoint); use features of the same extractor"
                )
        expected_dim = expected_dim or opened[group].dim
    stores = {g: opened[g] for g in records.groups}
    return ImageFeatures.resolve(stores, records, records.split)


def release_freed_memory() -> None:
    """Hand the memory the JSON decoding freed back to the system (glibc keeps freed small blocks in
    its arenas: about 250 MiB after VQA v2's annotations). Forked DataLoader workers then start from
    a smaller parent, and the machine's memory is what the compact datasets hold, not the decoding's
    high-water mark."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc (macOS, musl): nothing to do
        pass


@dataclass
class Data:
    train: VQADataset
    val: VQADataset
    qvocab: QuestionVocab
    avocab: AnswerVocab
    image_dim: int
    lines: list[str] = field(default_factory=list)  # what was built and what was left out, for the log
    test: VQADataset | None = None  # data.test_split, when it is not the validation split


def build_datasets(
    cfg: Config, qvocab: QuestionVocab | None = None, avocab: AnswerVocab | None = None
) -> Data:
    """Train and val Datasets with vocabularies (from the training split unless given), and a
    report of every question left out or changed. Each split's files are read once; the text is
    dropped once encoded."""
    train_records, val_records, lines = _train_val_records(cfg)
    test_split = cfg.data.test_split if cfg.data.test_split not in ("", cfg.data.val_split) else ""
    test_records = load_records(cfg, test_split) if test_split else None
    for recs in (train_records, val_records, test_records):
        if recs is not None and not recs.annotated:
            raise UserError(
                f"split '{recs.split}' has no annotations; train, validate and test on annotated splits "
                "(data.train_split, data.val_split, data.test_split)"
            )
    qvocab = qvocab or QuestionVocab.build(train_records.question, cfg.data.min_token_count)
    if avocab is None:
        answers = train_records.answers
        best = np.bincount(answers.best[answers.best >= 0], minlength=len(answers.strings))
        counts = Counter({answers.strings[i]: int(best[i]) for i in np.flatnonzero(best).tolist()})
        avocab = AnswerVocab.from_answers(counts, cfg.data.max_answers)
    opened: dict[str, FeatureStore] = {}  # each feature file opened once
    train_feats = open_features(cfg, train_records, opened=opened)
    val_feats = open_features(cfg, val_records, expected_dim=train_feats.dim, opened=opened)
    max_len, oov = cfg.data.max_question_len, cfg.data.soft_targets_oov
    common = dict(qvocab=qvocab, avocab=avocab, max_question_len=max_len, oov=oov)
    # The hard loss has no target for a question whose most common answer is outside
    # the vocabulary; both losses train on the same questions so runs compare fairly.
    train = VQADataset(train_records, train_feats, split=cfg.data.train_split, drop_hard_oov=True, **common)
    val = VQADataset(val_records, val_feats, split=cfg.data.val_split, **common)
    test = None
    if test_records is not None:
        test_feats = open_features(cfg, test_records, expected_dim=train_feats.dim, opened=opened)
        test = VQADataset(test_records, test_feats, split=test_split, **common)
    features = f"image features {train_feats.kind} dim {train_feats.dim}"
    lines = [f"{len(qvocab):,} question words, {len(avocab):,} answers, {features}", *lines]
    lines += train.report.lines() + val.report.lines() + (test.report.lines() if test else [])
    if cfg.data.soft_target == "shuffled":  # the control: training targets only, validation stays human
        lines.append(shuffle_soft_targets(train, len(avocab), cfg.train.seed))
    release_freed_memory()
    return Data(train, val, qvocab, avocab, train_feats.dim, lines, test)


def _train_val_records(cfg: Config) -> tuple[Records, Records, list[str]]:
    """(training records, validation records, log lines): the validation split of the source, or
    with data.val_split heldout a part of the training split's images (vqa/data/heldout.py)."""
    train_records = load_records(cfg, cfg.data.train_split)
    if cfg.data.val_split != HELDOUT:
        return train_records, load_records(cfg, cfg.data.val_split), []
    train, held, line = hold_out(train_records, cfg.data.heldout_fraction, cfg.data.heldout_seed)
    return train, held, [line]


def build_split(
    cfg: Config,
    split: str,
    qvocab: QuestionVocab,
    avocab: AnswerVocab,
    image_dim: int,
    keep_text: bool = True,
) -> VQADataset:
    """Every question of `split` (test splits included), encoded with a trained run's vocabularies;
    `keep_text`: keep the question text and answers in its records (`vqa attention` shows them)."""
    records = load_records(cfg, split)
    features = open_features(cfg, records, expected_dim=image_dim)
    # keep_unscored: predict answers every question, also those `vqa eval` does not score
    max_len, oov = cfg.data.max_question_len, cfg.data.soft_targets_oov
    return VQADataset(
        records, features, qvocab, avocab, max_len, split, oov, keep_unscored=True, keep_text=keep_text
    )


@dataclass
class Loaders:
    train_sampler: EpochSampler  # set_epoch() and `start` (the resume position) are set per epoch
    train: Any  # DataLoader
    val: Any
    test: Any = None  # data.test_split's, when the Data has one


def build_loaders(
    cfg: Config,
    data: Data,
    batch_size: int,
    world: int = 1,
    rank: int = 0,
    pin_memory: bool = False,
    device: torch.device | None = None,
) -> Loaders:
    """This process's training loader (its shard of an epoch order fixed by (seed, epoch); questions
    of one image together with data.sampler=image_grouped) and validation loader (its shard, no
    padding: every question counts once). With `device`: batches on it (vqa.data.feed.DeviceFeed)."""
    by_image = cfg.data.sampler == "image_grouped"
    sampler = EpochSampler(
        data.train, world, rank, shuffle=True, seed=cfg.train.seed, group_by_image=by_image
    )
    workers, feed = cfg.data.num_workers, dict(pin_memory=pin_memory, device=device)
    train = build_loader(data.train, batch_size, sampler, workers, **feed)
    val, test = (
        None
        if ds is None
        else build_loader(ds, batch_size, ShardSampler(len(ds), world, rank), workers, **feed)
        for ds in (data.val, data.test)
    )
    return Loaders(sampler, train, val, test)
