"""Names that the command line offers as `choices=` and config validation accepts, defined once here.
Pure Python: `vqa --help` imports it without torch."""

PRECISIONS = ("fp32", "bf16", "fp16")  # torch.autocast dtypes: train.precision, `vqa bench --precision`
CHECKPOINTS = ("last", "best")  # a run's checkpoints/<name>.pt: `vqa train --from`, `--checkpoint`
