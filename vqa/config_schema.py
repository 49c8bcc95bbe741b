"""The config's schema: the dataclasses a YAML file maps onto, the valid values of every enumerated
setting (vqa.config adds the registries' names when it validates) and every numeric range."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vqa.choices import PRECISIONS


@dataclass
class DataConfig:
    root: str = "data/synthetic/small"  # folder holding the JSON files and features
    source: str = "vqa2"  # a key of vqa.data.sources.SOURCES: vqa2 | vqa1 | vqacp2 | vizwiz | okvqa
    train_split: str = "train2014"
    val_split: str = "val2014"  # a split of the source, or "heldout": data.heldout_fraction of train
    heldout_fraction: float = 0.1  # val_split heldout: the share of the training split's images held out
    heldout_seed: int = 0  # val_split heldout: which images (fixed for a seed, whatever the file order)
    test_split: str = ""  # scored once, at the epoch chosen on val_split ("" = none; vqa/data/heldout.py)
    questions: str = "v2_OpenEnded_mscoco_{split}_questions.json"  # relative to root
    annotations: str = "v2_mscoco_{split}_annotations.json"
    features_file: str = "features_{split}.h5"
    features: str = "grid"  # grid | boxes
    feature_dim: int = 0  # expected image feature size; 0 = take it from the file
    max_answers: int = 3000  # top-K multiple_choice_answer of the training split
    max_question_len: int = 14  # longer questions are truncated (counted and reported)
    min_token_count: int = 1  # rarer question words map to <unk>
    soft_targets_oov: str = "drop"  # drop (paper's code) | renormalize in-vocabulary weights
    soft_target: str = "human"  # human | shuffled (control: weights moved to answers of the same type)
    preload: str = "none"  # none | ram (a feature file in memory) | device (held on the GPU; data/README.md)
    num_workers: int = 0  # DataLoader worker processes (pinned memory on CUDA, persistent workers)
    sampler: str = "random"  # random | image_grouped (one image's questions per batch: features read once)
    synth_preset: str = ""  # a key of vqa.synth.presets.PRESETS: generate data into root when it is missing
    synth_format: str = "vqa2"  # a key of vqa.synth.formats.FORMATS: the dataset synth_preset imitates


@dataclass
class ModelConfig:
    name: str = "avg"  # a key of vqa.models.MODELS
    embed_dim: int = 300  # word vectors
    rnn: str = "lstm"  # lstm | gru
    rnn_dim: int = 1024  # question encoder size (2400 in the paper's code)
    hidden_dim: int = 1024  # fused / classifier hidden size
    attention_dim: int = 512  # attention MLP size
    glimpses: int = 2
    mcb_dim: int = 16000  # compact bilinear output size (Fukui et al. 2016)
    heads: int = 8  # MCAN: attention heads (hidden_dim must be a multiple)
    ff_dim: int = 2048  # MCAN: feed-forward size of each attention layer
    layers: int = 6  # MCAN: encoder layers, and as many decoder layers
    dropout: float = 0.5
    fc_dropout: float = 0.2  # BAN: dropout on the inputs of its other linear layers (authors: 0.2)
    normalize_image: bool = True  # L2-normalize image feature vectors
    word_vectors: str = ""  # GloVe .txt / fastText .vec (.gz too) to initialize the embedding; "" = random


@dataclass
class TrainConfig:
    loss: str = "soft_ce"  # a key of vqa.losses.LOSSES
    debias: str = "none"  # a key of vqa.debias.DEBIAS: a branch and loss around the model (docs/debias.md)
    debias_entropy: float = 0.36  # lmh: weight of the gate's entropy penalty (0 = learned-mixin)
    debias_gamma: float = 5.0  # lpf: exponent of the feedback weight (1 - p_q(y))^gamma
    debias_question_weight: float = 1.0  # rubi, lpf, gge: weight of the question-only branch's loss
    label_smoothing: float = 0.1  # label_smoothing's eps (`vqa stats` prints the matching one)
    # bce: the answer layer's bias starts at each answer's training log-odds (Lin et al. 2017; docs/debias.md);
    # false: PyTorch's default start, as the published bottom-up attention code
    bce_prior_init: bool = True
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"  # adam | adamw | adamax | sgd
    lr: float = 1e-4
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw, adamax
    adam_eps: float = 1e-8  # adam, adamw, adamax
    weight_decay: float = 0.0
    lr_decay_epochs: list[int] = field(default_factory=lambda: [30, 60])  # authors: /10 at 30, /100 at 60
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0  # warm-up over this many epochs, then the step decay
    warmup: str = "linear"  # linear: from 0, per step | epochwise: x k/(W+1) in epoch k of W (MCAN, BAN)
    early_stop_patience: int = 0  # stop after this many epochs without a better val accuracy; 0 = never
    precision: str = "fp32"  # vqa.choices.PRECISIONS (torch.autocast; fp16 uses a gradient scaler)
    compile: bool = False  # torch.compile the model
    grad_clip: float = 0.0  # max grad norm; 0 disables
    accumulate: int = 1  # gradient accumulation: one optimizer step every N micro-batches of batch_size / N
    tf32: bool = True  # CUDA: TF32 for fp32 matmuls and cuDNN convolutions (~10 mantissa bits; not on CPU)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50  # steps between train/loss scalars


@dataclass
class Config:
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


CHOICES = {
    "data.features": ("grid", "boxes"),
    "data.soft_target": ("human", "shuffled"),
    "train.precision": PRECISIONS,
    "model.rnn": ("lstm", "gru"),
    "train.optimizer": ("adam", "adamw", "adamax", "sgd"),
    "train.warmup": ("linear", "epochwise"),
}

# what a number must be -> (the test, the settings it applies to)
RANGES = {
    "positive": (
        lambda v: v > 0,
        "data.max_answers data.max_question_len train.epochs train.batch_size model.embed_dim model.rnn_dim "
        "model.hidden_dim model.attention_dim model.glimpses model.mcb_dim model.heads model.ff_dim "
        "model.layers train.log_every train.lr train.accumulate train.adam_eps",
    ),
    ">= 0": (
        lambda v: v >= 0,
        "train.weight_decay train.grad_clip train.warmup_epochs train.early_stop_patience data.num_workers "
        "data.min_token_count data.feature_dim train.debias_entropy train.debias_gamma "
        "train.debias_question_weight data.heldout_seed",
    ),
    "in (0, 1)": (lambda v: 0 < v < 1, "data.heldout_fraction"),
    "in [0, 1)": (lambda v: 0 <= v < 1, "model.dropout model.fc_dropout train.label_smoothing"),
    "in (0, 1]": (lambda v: 0 < v <= 1, "train.lr_decay_factor"),
    "in [0, 2**32 - 1] (numpy's seed range)": (lambda v: 0 <= v < 2**32, "train.seed"),
}

# file names formatted with the split's name ("train2014"): {split} is their only placeholder
SPLIT_TEMPLATES = ("data.questions", "data.annotations", "data.features_file")
