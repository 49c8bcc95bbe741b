"""`make mutants`: deliberate one-line mistakes in the numbers the study reports, each made in a temporary
copy of the tree, and the fast tests that must notice.

    python tests/mutants.py [NAME ...]     # all mutants, or the named ones

For each mutant the tree (vqa/, tests/, pyproject.toml) is copied to a temporary folder, the one line is
replaced there, and SUBSET runs there (`pytest -x`, the copy first on PYTHONPATH, checked to be the code
imported). The real files are never edited: their sha256 are compared before and after. Prints
`mutant -> killed by <first failing test>` or `SURVIVED`, and exits 1 if any mutant survives or a copy
cannot run its tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ["tests/test_numbers.py", "tests/test_answers.py", "tests/test_metrics.py", "tests/test_losses.py"]


class Mutant(NamedTuple):
    name: str
    path: str  # relative to the repository root
    old: str  # a line that occurs exactly once in the file
    new: str


MUTANTS = [
    Mutant(
        "score table: 3 of 10 answers score 1.0",
        "vqa/data/answers.py",
        "SCORE_OF_COUNT = np.array([score_from_count(c) for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)",
        "SCORE_OF_COUNT = np.array([score_from_count(c) for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)\n"
        "SCORE_OF_COUNT[3] = 1.0",
    ),
    Mutant(
        "validation loss averaged over every row",
        "vqa/training/validation.py",
        "            self.counts[name] += per_question.numel()",
        "            self.counts[name] += batch.answer.numel()",
    ),
    Mutant(
        "accuracy: any match is full credit",
        "vqa/metrics.py",
        "    return (answer_score * hit).sum(dim=1)  # [B]",
        "    return hit.any(dim=1).to(answer_score.dtype)  # [B]",
    ),
    Mutant(
        "soft weights: min(1, count / 3)",
        "vqa/data/answers.py",
        "WEIGHT_OF_COUNT = np.array([c / ANSWERS_PER_QUESTION for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)",
        "WEIGHT_OF_COUNT = np.array([min(1.0, c / 3) for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)",
    ),
    Mutant(
        "renormalized weights not renormalized",
        "vqa/data/dataset.py",
        "        total = np.cumsum(w, axis=1)[:, -1:]  # [B, 1]",
        "        total = np.ones_like(w[:, :1])  # [B, 1]",
    ),
    Mutant(
        "normalization: no lowercasing",
        "vqa/data/keys.py",
        "    words = [NUMBER_WORDS.get(w, w) for w in s.lower().split()]",
        "    words = [NUMBER_WORDS.get(w, w) for w in s.split()]",
    ),
    Mutant(
        "unanimity decided before whitespace cleaning",
        "vqa/data/keys.py",
        "        split = ~unanimous(clean)",
        "        split = ~unanimous(codes)",
    ),
    Mutant(
        "legacy rules: prediction not normalized",
        "vqa/data/keys.py",
        "    always = np.ones(len(codes), bool)",
        "    always = np.zeros(len(codes), bool)",
    ),
    Mutant(
        "hard target keyed as if unanimity were inverted",
        "vqa/data/answers.py",
        "        pred = np.where(best >= 0, prediction_keys(table, np.maximum(best, 0), ~unanimous(key)), -1)",
        "        pred = np.where(best >= 0, prediction_keys(table, np.maximum(best, 0), unanimous(key)), -1)",
    ),
    Mutant(
        "oov weight: count / 9",
        "vqa/data/answers.py",
        "    oov_weight = np.bincount(r[oov], weights=count[oov] / n, minlength=n_q)  # summed in that order",
        "    oov_weight = np.bincount(r[oov], weights=count[oov] / 9, minlength=n_q)  # summed in that order",
    ),
    Mutant(
        "hard_ce averaged over every row",
        "vqa/losses.py",
        "    return per_question.sum() / valid.sum().clamp(min=1)",
        "    return per_question.mean()",
    ),
    Mutant(
        "soft_ce weighted by the scores",
        "vqa/losses.py",
        "    return _reduce(-(batch.answer_weight * _picked_log_probs(logits, batch.answer_idx)).sum(1), reduction)",
        "    return _reduce(-(batch.answer_score * _picked_log_probs(logits, batch.answer_idx)).sum(1), reduction)",
    ),
    Mutant(
        "official leave-one-out: min(1, matches / 4)",
        "vqa/scoring.py",
        "        gt_acc.append(min(1, float(len(matching)) / 3))",
        "        gt_acc.append(min(1, float(len(matching)) / 4))",
    ),
    Mutant(
        "official rounding to one decimal",
        "vqa/metrics.py",
        "    return round(100 * float(sum(values)) / len(values), 2)",
        "    return round(100 * float(sum(values)) / len(values), 1)",
    ),
    Mutant(
        "agreement bucket 7_9 from 6 on",
        "vqa/agreement.py",
        'AGREEMENT_BUCKETS = (("10", 10, 10), ("7_9", 7, 9), ("4_6", 4, 6), ("le3", 0, 3))',
        'AGREEMENT_BUCKETS = (("10", 10, 10), ("7_9", 6, 9), ("4_6", 4, 6), ("le3", 0, 3))',
    ),
]


def apply(mutant: Mutant, root: Path) -> None:
    """Replace the mutant's line in the copy at `root`; an error unless it occurs exactly once."""
    path = root / mutant.path
    lines = path.read_text().split("\n")
    hits = [i for i, line in enumerate(lines) if line == mutant.old]
    if len(hits) != 1:
        raise ValueError(f"mutant {mutant.name!r}: its line occurs {len(hits)} times in {mutant.path}")
    lines[hits[0]] = mutant.new
    path.write_text("\n".join(lines))


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("vqa", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run_mutant(mutant: Mutant, tests: list[str] = SUBSET) -> tuple[str, str]:
    """("killed", test) / ("survived", "") / ("error", output tail) of one mutant, in a temporary copy."""
    with tempfile.TemporaryDirectory(prefix="vqa-mutant-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        apply(mutant, root)
        env = {**os.environ, "PYTHONPATH": str(root), "VQA_CACHE_DIR": "off"}
        where = subprocess.run(
            [sys.executable, "-c", "import vqa; print(vqa.__file__)"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if not where.stdout.startswith(str(root)):
            return (
                "error",
                f"the copy is not the code imported: {where.stdout.strip() or where.stderr[-300:]}",
            )
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--tb=no", "-rf", *tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode == 0:
        return "survived", ""
    failed = re.search(r"^FAILED (\S+)", proc.stdout, re.M)
    if proc.returncode == 1 and failed:
        return "killed", failed.group(1)
    return "error", (proc.stdout + proc.stderr)[-600:]


def _hashes() -> dict[str, str]:
    return {m.path: hashlib.sha256((ROOT / m.path).read_bytes()).hexdigest() for m in MUTANTS}


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    if names and len(chosen) != len(set(names)):
        print(f"unknown mutant; the mutants are: {', '.join(m.name for m in MUTANTS)}", file=sys.stderr)
        return 2
    before = _hashes()
    bad = 0
    for m in chosen:
        status, detail = run_mutant(m)
        bad += status != "killed"
        line = {"killed": f"killed by {detail}", "survived": "SURVIVED", "error": f"ERROR: {detail}"}[status]
        print(f"{m.name} ({m.path}) -> {line}", flush=True)
    if _hashes() != before:
        print("the real files changed while the mutants ran", file=sys.stderr)
        return 1
    print(f"{len(chosen) - bad} of {len(chosen)} mutants killed; the real files are unchanged (sha256)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
