"""`vqa` command line: one sub-command per task.

User errors (vqa.errors.UserError) end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqa.errors import UserError


def _train(args) -> int:
    from vqa.config import load_config
    from vqa.train import fit

    if args.resume:
        if args.config:
            raise UserError(
                "pass either --config (a new run) or --resume RUN_DIR (its config.yaml is used), not both"
            )
        cfg = load_config(Path(args.resume) / "config.yaml", args.overrides)
        if cfg.run_dir.resolve() != Path(args.resume).resolve():
            cfg.out_dir, cfg.name = str(Path(args.resume).parent), Path(args.resume).name
    else:
        cfg = load_config(args.config, args.overrides)
    fit(cfg, resume=bool(args.resume))
    return 0


def _synth(args) -> int:
    from vqa.data.synthetic import synth_command

    return synth_command(args)


def _eval(args) -> int:
    from vqa.evaluate import eval_command

    return eval_command(args)


def _predict(args) -> int:
    from vqa.predict import predict_command

    return predict_command(args)


def _attention(args) -> int:
    from vqa.attention import attention_command

    return attention_command(args)


def _extract(args) -> int:
    from vqa.features_extract import extract_command

    return extract_command(args)


def _convert(args) -> int:
    from vqa.convert import convert_command

    return convert_command(args)


def _compare(args) -> int:
    from vqa.compare import compare_command

    return compare_command(args)


def build_parser() -> argparse.ArgumentParser:
    from vqa.attention import add_attention_args
    from vqa.compare import add_compare_args
    from vqa.convert import add_convert_args
    from vqa.data.synthetic import add_synth_args
    from vqa.evaluate import add_eval_args
    from vqa.features_extract import add_extract_args
    from vqa.predict import add_predict_args

    parser = argparse.ArgumentParser(
        prog="vqa", description="VQA training framework: losses, models, official scoring."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", help="YAML experiment file (configs/...)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoints/last.pt")
    p.add_argument(
        "overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=3e-4 model.name=pool"
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("synth", help="write a synthetic VQA v2 dataset (official JSON + HDF5 features)")
    add_synth_args(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser("eval", help="score a results file exactly as the VQA evaluation server")
    add_eval_args(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "predict", help="answer every question of a split with a trained run; write a results file"
    )
    add_predict_args(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "attention", help="draw where an attention model looked, one PNG per validation question"
    )
    add_attention_args(p)
    p.set_defaults(func=_attention)

    p = sub.add_parser("extract", help="image folder -> HDF5 grid features (ResNet-152, resumable)")
    add_extract_args(p)
    p.set_defaults(func=_extract)

    p = sub.add_parser("convert", help="precomputed features (bottom-up attention TSV) -> HDF5")
    add_convert_args(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "compare", help="run folders -> the paper's table (mean, std, paired CI), convergence, figures"
    )
    add_compare_args(p)
    p.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
