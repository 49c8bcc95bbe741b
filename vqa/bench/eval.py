"""Official-scoring benchmark: the whole `vqa eval` process (start to report written) on val2014-sized
official files against the literal per-question loop of the official evaluator (`official_loop`);
the report's per-question scores must equal the loop's as rounded, `official_scores` bit for bit.
The data is synthetic but shaped like val2014: 214,354 questions of ten answers, VQA v2's answer-type
mix, Zipf-like answers, annotator disagreement, surface forms the normalization must undo.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vqa.data.answers import ANSWER_TYPES
from vqa.data.keys import ARTICLES, COMMA_STRIP, CONTRACTIONS, NUMBER_WORDS, PERIOD_STRIP, PUNCTUATION
from vqa.io import read_json, write_json_atomic
from vqa.scoring import official_scores

VAL2014_QUESTIONS = 214354
_VARIANTS = (  # surface forms of a canonical answer, as human annotators and models produce them
    lambda s: s,
    lambda s: s.capitalize(),
    lambda s: s + ".",
    lambda s: "the " + s,
    lambda s: " " + s + "\n",
    lambda s: s.upper(),
)
_NUMBERS = [str(i) for i in range(21)] + ["none", "zero", "two", "three", "1,000", "2.5", "10:30", "100"]
_EXTRA = ["t-shirt", "black and white", "don't know", "dont know", "red/white", "mcdonald's", "tennis racket"]
# per answer type, in ANSWER_TYPES order (yes/no, number, other)
_TYPE_SHARE = [0.38, 0.12, 0.50]  # VQA v2's mix of answer types
_AGREE = np.array([0.9, 0.6, 0.55])  # chance an annotator gives the canonical answer
_CORRECT = np.array([0.8, 0.45, 0.5])  # chance the prediction does
_QUESTION_TYPES = ["is the", "how many", "what color is the", "what is"]


def _pools(rng: np.random.Generator) -> list[list[str]]:
    """Canonical answers per answer type: yes/no, numbers, and 4,000 made-up 'other' phrases."""
    syllables = "ba ke lo mi ru sa to ne di po ga fu re an is or".split()
    words = sorted({"".join(rng.choice(syllables, size=rng.integers(2, 4))) for _ in range(1500)})
    other = set(_EXTRA)
    while len(other) < 4000:
        a, b = (str(w) for w in rng.choice(words, size=2))
        other.add([a, f"{a} {b}", f"{a}-{b}", f"{a}, {b}"][rng.integers(0, 4)])
    return [["yes", "no"], _NUMBERS, sorted(other)]


def synthetic_eval_set(n: int, seed: int) -> tuple[list[dict], dict[int, str]]:
    """Val2014-like annotations (10 answers each, realistic disagreement, strings needing normalization)
    and predictions, built with numpy in a few seconds."""
    rng = np.random.default_rng(seed)
    pools = _pools(rng)
    offsets = np.cumsum([0] + [len(p) for p in pools])
    surface = np.array([[v(s) for v in _VARIANTS] for p in pools for s in p], dtype=object)  # [S, V]

    def draw(t: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:  # Zipf-like base answers of each type
        out = np.empty(shape, dtype=np.int64)
        for ti, pool in enumerate(pools):
            m = t == ti
            w = 1.0 / np.arange(1, len(pool) + 1) ** 1.1
            out[m] = offsets[ti] + rng.choice(len(pool), size=(int(m.sum()), *shape[1:]), p=w / w.sum())
        return out

    t = rng.choice(len(ANSWER_TYPES), size=n, p=_TYPE_SHARE)  # [n] answer type index
    truth = draw(t, (n,))
    base = np.where(rng.random((n, 10)) < _AGREE[t, None], truth[:, None], draw(t, (n, 10)))  # [n, 10]
    answers = surface[base, rng.choice(len(_VARIANTS), size=(n, 10), p=[0.8, 0.05, 0.04, 0.04, 0.03, 0.04])]
    pred_base = np.where(rng.random(n) < _CORRECT[t], truth, draw(t, (n,)))
    preds = surface[pred_base, rng.choice(len(_VARIANTS), size=n, p=[0.9, 0.02, 0.02, 0.02, 0.02, 0.02])]
    qids = (np.arange(n) // 5 * 1000 + np.arange(n) % 5).tolist()  # image_id * 1000 + k
    annotations = [
        {
            "question_id": qid,
            "question_type": _QUESTION_TYPES[ti],
            "answer_type": ANSWER_TYPES[ti],
            "multiple_choice_answer": row[0],
            "answers": [
                {"answer_id": j + 1, "answer": s, "answer_confidence": "yes"} for j, s in enumerate(row)
            ],
        }
        for qid, ti, row in zip(qids, t.tolist(), answers.tolist())
    ]
    return annotations, dict(zip(qids, preds.tolist()))


def official_loop(gts: dict[int, list[dict]], preds: dict[int, str]) -> dict[int, float]:
    """The baseline timed here: the official evaluator's per-question loop (vqaEval.py `evaluate`,
    current rules) with its processPunctuation and processDigitArticle, as written there. The package
    scores with its own code, which is what is measured; tests/reference_eval.py is the tests' copy of
    the loop, and tests/test_evaluate.py checks that the two agree."""
    scores = {}
    for qid, answers in gts.items():
        items = [dict(a) for a in answers]
        res = preds[qid].replace("\n", " ").replace("\t", " ").strip()
        for item in items:
            item["answer"] = item["answer"].replace("\n", " ").replace("\t", " ").strip()
        if len({item["answer"] for item in items}) > 1:
            for item in items:
                item["answer"] = _digit_article(_punctuation(item["answer"]))
            res = _digit_article(_punctuation(res))
        acc = []
        for gt in items:
            matching = [item for item in items if item != gt and item["answer"] == res]
            acc.append(min(1, float(len(matching)) / 3))
        scores[qid] = float(sum(acc)) / len(acc)
    return scores


def _punctuation(s: str) -> str:
    out = s
    for p in PUNCTUATION:
        if p + " " in s or " " + p in s or COMMA_STRIP.search(s) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, re.UNICODE)


def _digit_article(s: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in s.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


TARGET_SPEEDUP = 15.0  # the whole `vqa eval` process against the literal loop over the same files


def write_eval_files(folder: Path, n: int, seed: int) -> dict[str, Path]:
    """Official-format annotations, questions and results files of `n` synthetic questions in `folder`."""
    annotations, preds = synthetic_eval_set(n, seed)
    for a in annotations:
        a["image_id"] = a["question_id"] // 1000
    paths = {k: folder / f"{k}.json" for k in ("annotations", "questions", "results")}
    write_json_atomic(
        paths["annotations"], {"info": {}, "data_subtype": "val2014", "annotations": annotations}
    )
    questions = [
        {"question_id": a["question_id"], "image_id": a["image_id"], "question": "What is it?"}
        for a in annotations
    ]
    write_json_atomic(paths["questions"], {"info": {}, "questions": questions})
    write_json_atomic(paths["results"], [{"question_id": q, "answer": p} for q, p in preds.items()])
    return paths


def _run_eval(paths: dict[str, Path], out: Path, cache: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole `vqa eval` process, start to report written, with its
    annotation cache in `cache`."""
    cmd = [sys.executable, "-m", "vqa", "eval", "--out", str(out)]
    cmd += [f"--{k}={v}" for k, v in paths.items()]
    env = {**os.environ, "VQA_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_eval(
    n_questions: int = VAL2014_QUESTIONS,
    seed: int = 0,
    repeats: int = 3,
    reference_questions: int | None = None,
) -> dict:
    """Time the whole `vqa eval` process on `n_questions` synthetic questions against the literal loop over
    the same files, interleaved: the process, the loop over one chunk, `repeats` times.

    The first process decodes the annotations into an empty cache ("first", what --no-cache always pays);
    later ones read it back ("cached", their median). The loop covers the first `reference_questions`
    (None: all), its time then scaled to all ("reference_scaled"). "identical": both reports' perQuestion
    equal round(100 * loop score, 2); "identical_unrounded": `official_scores` equals the loop's floats.
    """
    with tempfile.TemporaryDirectory(prefix="vqa-bench-eval-") as tmp:
        folder = Path(tmp)
        paths = write_eval_files(folder, n_questions, seed)
        file_mb = {k: round(p.stat().st_size / 2**20, 1) for k, p in paths.items()}
        annotations = read_json(paths["annotations"], "annotations", key="annotations")
        gts = {a["question_id"]: a["answers"] for a in annotations}
        preds = {r["question_id"]: r["answer"] for r in read_json(paths["results"], "results")}
        del annotations
        m = n_questions if reference_questions is None else min(reference_questions, n_questions)
        qids = list(gts)[:m]
        chunks = [qids[i * m // repeats : (i + 1) * m // repeats] for i in range(repeats)]
        walls, cpus, reference, ref_seconds = _interleaved(paths, folder, gts, preds, chunks)
        reports = [read_json(folder / f"report{i}.json", "report") for i in (0, 1)]
        fast = official_scores({q: gts[q] for q in qids}, preds)
    return {
        "questions": n_questions,
        "answers": sum(len(a) for a in gts.values()),
        "file_mb": file_mb,
        "rules": reports[0]["rules"],
        **_timings(walls, cpus, *ref_seconds, m, n_questions),
        "identical": all(
            r["perQuestion"][str(q)] == round(100 * s, 2) for r in reports for q, s in reference.items()
        ),
        "identical_unrounded": all(fast[q] == s for q, s in reference.items()),
        "overall": reports[1]["overall"],
    }


def _interleaved(paths: dict[str, Path], folder: Path, gts: dict, preds: dict, chunks: list[list[int]]):
    """(process wall seconds, process CPU seconds, the loop's scores, (loop wall, loop CPU seconds)): the
    first process alone, then a process and the loop over one chunk, for each chunk."""
    walls, cpus, reference = [], [], {}
    ref_wall = ref_cpu = 0.0
    for i, chunk in enumerate([[], *chunks]):
        wall, cpu = _run_eval(paths, folder / f"report{min(i, 1)}.json", folder / "cache")
        walls.append(wall)
        cpus.append(cpu)
        part = {q: gts[q] for q in chunk}
        start, start_cpu = time.perf_counter(), time.process_time()
        reference.update(official_loop(part, preds))
        ref_wall += time.perf_counter() - start
        ref_cpu += time.process_time() - start_cpu
    return walls, cpus, reference, (ref_wall, ref_cpu)


def _timings(walls: list, cpus: list, ref_wall: float, ref_cpu: float, m: int, n_questions: int) -> dict:
    """The first and later processes' times against the loop's, scaled from `m` to all questions."""
    scale = n_questions / m
    ref = ref_wall * scale
    eval_wall, eval_cpu = statistics.median(walls[1:]), statistics.median(cpus[1:])
    speedup = ref / eval_wall
    return {
        "first_s": round(walls[0], 3),
        "first_cpu_s": round(cpus[0], 3),
        "first_speedup": round(ref / walls[0], 1),
        "eval_s": round(eval_wall, 3),
        "eval_runs_s": [round(w, 3) for w in walls[1:]],
        "eval_cpu_s": round(eval_cpu, 3),
        "reference_s": round(ref, 3),
        "reference_cpu_s": round(ref_cpu * scale, 3),
        "reference_questions": m,
        "reference_scaled": m < n_questions,
        "speedup": round(speedup, 1),
        "speedup_cpu": round(ref_cpu * scale / eval_cpu, 1),
        "target_speedup": TARGET_SPEEDUP,
        "target_holds": speedup >= TARGET_SPEEDUP,
    }


def run(opts: argparse.Namespace) -> dict:
    if opts.quick:
        return bench_eval(n_questions=20000)
    return bench_eval(n_questions=VAL2014_QUESTIONS)


def markdown(r: dict) -> list[str]:
    ref = "every question"
    if r.get("reference_scaled"):
        ref = f"{r['reference_questions']:,} questions, scaled to all"
    holds = "holds" if r["target_holds"] else "does NOT hold"
    return [
        f"### Official scoring (val2014 has {VAL2014_QUESTIONS:,} questions): "
        f"{r['questions']:,} questions, {r['answers']:,} answers, "
        f"files of {' + '.join(f'{v:.0f}' for v in r['file_mb'].values())} MB",
        "",
        "| path | wall s | CPU s |",
        "|---|---:|---:|",
        f"| whole `vqa eval` process, start to report written, first run on the file (annotations decoded "
        f"and cached) | {r['first_s']:.2f} | {r['first_cpu_s']:.2f} |",
        f"| whole `vqa eval` process, later runs (annotation side from the cache; median of "
        f"{len(r['eval_runs_s'])}) | {r['eval_s']:.2f} | {r['eval_cpu_s']:.2f} |",
        f"| literal per-question loop of the official evaluator, {r['rules']} rules ({ref}) "
        f"| {r['reference_s']:.2f} | {r['reference_cpu_s']:.2f} |",
        "",
        f"- speed-up of the whole process over the loop, later runs: **{r['speedup']:.1f}x** wall "
        f"({r['speedup_cpu']:.1f}x CPU); target >= {r['target_speedup']:.0f}x: **{holds}**",
        f"- the first run on a file (and every run with --no-cache): **{r['first_speedup']:.1f}x** wall",
        f"- per-question scores identical to the loop's: report {r['identical']}, "
        f"unrounded {r['identical_unrounded']}",
        "",
    ]
