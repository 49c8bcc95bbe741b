"""`vqa eval`: score a results file with the official VQA accuracy and write the official report.

    vqa eval --results R.json --annotations A.json --questions Q.json [--legacy] [--out report.json]

The report has the official tool's structure (overall, perAnswerType, perQuestionType, per-question scores
as its evalQA) plus the rules used ("current", the server's since 2021, or "legacy", pre-2021 / OpenVQA):
on adversarial strings the two differ by many points, so a number without its rules is ambiguous.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from vqa.errors import UserError
from vqa.metrics import official_scores, official_scores_reference, summarize

RESULT_HINT = 'write exactly one {"question_id": int, "answer": str} per question of the annotations'
SHOW = 5  # offenders shown per problem


def _read_json(path, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} file {path} not found; check the path") from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{what} file {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); fix or regenerate it"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} file {path} ({e}); check the path") from None


def _show(items: list) -> str:
    """The first few offenders (ints or pre-formatted strings), comma-separated."""
    return ", ".join(_clip(str(x)) for x in items[:SHOW]) + (", ..." if len(items) > SHOW else "")


def _short(value) -> str:
    """A JSON value as one short line (repr quotes strings and escapes newlines)."""
    return _clip(repr(value))


def _clip(s: str) -> str:
    return s if len(s) <= 60 else s[:57] + "..."


def load_results(path, question_ids: set[int]) -> dict[int, str]:
    """{question_id: answer} from a results file covering exactly `question_ids`, strictly checked.

    Any problem (not a list, an entry that is not an object, a non-integer question_id, a non-string
    answer; else duplicate, missing or extra ids) raises one UserError line that names the file, counts the
    offenders of each kind and shows the first few.
    """
    data = _read_json(path, "results")
    if not isinstance(data, list):
        raise UserError(
            f"results file {path}: the top level is not a JSON list ({type(data).__name__}); {RESULT_HINT}"
        )
    not_object, bad_id, bad_answer = [], [], []
    results: dict[int, str] = {}
    duplicate: list[int] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            not_object.append(f"#{i} {_short(entry)}")
            continue
        qid, answer = entry.get("question_id"), entry.get("answer")
        if type(qid) is not int:  # bool is an int subclass: refused too
            bad_id.append(f"#{i} {_short(qid)}")
        elif not isinstance(answer, str):
            bad_answer.append(f"#{i} (question_id {qid}) {_short(answer)}")
        elif qid in results:
            duplicate.append(qid)
        else:
            results[qid] = answer
    problems = [
        f"{len(items)} {label} ({_show(items)})"
        for label, items in (
            ("entries that are not objects", not_object),
            ("entries without an integer question_id", bad_id),
            ("entries without a string answer", bad_answer),
        )
        if items
    ]
    if not problems:  # the id set is only meaningful once every entry is well-formed
        missing = sorted(question_ids - results.keys())
        extra = sorted(results.keys() - question_ids)
        dup = sorted(set(duplicate))
        problems = [
            f"{len(items)} {label} ({_show(items)})"
            for label, items in (
                ("duplicate question ids", dup),
                ("missing question ids", missing),
                ("question ids not in the annotations", extra),
            )
            if items
        ]
    if problems:
        raise UserError(f"results file {path}: {'; '.join(problems)}; {RESULT_HINT}")
    return results


def _records(path, what: str, key: str, required: tuple[str, ...]) -> list[dict]:
    data = _read_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise UserError(
            f"{what} file {path} has no list under key '{key}'; use an official VQA v2 {what} file"
        )
    records = data[key]
    seen: set[int] = set()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise UserError(
                f"{what} file {path}: {key}[{i}] is not an object; use an official VQA v2 {what} file"
            )
        for k in required:
            if k not in r:
                raise UserError(
                    f"{what} file {path}: {key}[{i}] has no key '{k}'; use an official VQA v2 {what} file"
                )
        qid = r["question_id"]
        if type(qid) is not int:
            raise UserError(f"{what} file {path}: {key}[{i}] has a non-integer question_id {_short(qid)}")
        if qid in seen:
            raise UserError(f"{what} file {path}: question_id {qid} appears twice in '{key}'; fix the file")
        seen.add(qid)
    return records


def load_annotations(path) -> list[dict]:
    """The `annotations` list of an official VQA v2 annotation file, with the keys scoring needs checked."""
    required = (
        "question_id",
        "image_id",
        "question_type",
        "answer_type",
        "multiple_choice_answer",
        "answers",
    )
    annotations = _records(path, "annotations", "annotations", required)
    for a in annotations:
        answers = a["answers"]
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers)
        ):
            raise UserError(
                f"annotations file {path}: question_id {a['question_id']} key 'answers' is not a non-empty list of "
                f'{{"answer": str, ...}} objects; use an official VQA v2 annotation file'
            )
    return annotations


def load_questions(path) -> list[dict]:
    """The `questions` list of an official VQA v2 question file."""
    return _records(path, "questions", "questions", ("question_id", "image_id", "question"))


def evaluate(results: dict[int, str], annotations: list[dict], legacy: bool = False) -> dict:
    """The official report for predictions `results` against `annotations` (the official evalQA and
    accuracy dicts): overall, perAnswerType, perQuestionType in percent, perQuestion {qid: round(100 *
    score, 2)}, plus the rules used and the number of questions. Questions are taken in annotation order,
    as the official tool takes them, so the rounded means match it exactly."""
    gts = {a["question_id"]: a["answers"] for a in annotations}
    scores = official_scores(gts, results, legacy=legacy)
    answer_types = {a["question_id"]: a["answer_type"] for a in annotations}
    question_types = {a["question_id"]: a["question_type"] for a in annotations}
    report = summarize(scores, answer_types, question_types)
    report["perQuestion"] = {qid: round(100 * s, 2) for qid, s in scores.items()}
    report["rules"] = "legacy" if legacy else "current"
    report["questions"] = len(scores)
    return report


def format_report(report: dict) -> str:
    """Human-readable lines: overall, then per answer type and per question type (sorted by name)."""
    lines = [
        f"VQA accuracy ({report['rules']} rules, {report['questions']} questions): {report['overall']:.2f}"
    ]
    for title, key in (("per answer type", "perAnswerType"), ("per question type", "perQuestionType")):
        table = report.get(key, {})
        width = max((len(t) for t in table), default=0)
        lines.append(f"{title}:")
        lines += [f"  {t:<{width}}  {table[t]:6.2f}" for t in sorted(table)]
    return "\n".join(lines)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results", required=True, help='results JSON: [{"question_id": int, "answer": str}, ...]'
    )
    p.add_argument("--annotations", required=True, help="official VQA v2 annotation JSON")
    p.add_argument("--questions", required=True, help="official VQA v2 question JSON of the same split")
    p.add_argument(
        "--legacy", action="store_true", help="pre-2021 rules (OpenVQA, papers scored before 2021)"
    )
    p.add_argument("--out", default=None, help="write the JSON report here")


def _write_json_atomic(path, obj) -> None:
    """Temp file in the target folder, then os.replace: a reader never sees a half-written report."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write report {path} ({e}); choose another --out") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write report {path} ({e}); choose another --out") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def eval_command(args: argparse.Namespace) -> int:
    """`vqa eval`: check the three files, score, print the report, write --out; 0 on success."""
    annotations = load_annotations(args.annotations)
    questions = load_questions(args.questions)
    ann_ids = {a["question_id"] for a in annotations}
    q_ids = {q["question_id"] for q in questions}
    if ann_ids != q_ids:
        only_q, only_a = sorted(q_ids - ann_ids), sorted(ann_ids - q_ids)
        raise UserError(
            f"questions file {args.questions} and annotations file {args.annotations} hold different question ids "
            f"({len(only_q)} only in the questions ({_show(only_q)}), {len(only_a)} only in the annotations "
            f"({_show(only_a)})); pass the two files of the same split"
        )
    results = load_results(args.results, ann_ids)
    report = evaluate(results, annotations, legacy=args.legacy)
    print(format_report(report))
    if args.out:
        _write_json_atomic(args.out, report)
        print(f"report written to {args.out}")
    return 0


# --- Benchmark: val2014-sized scoring, fast path vs the literal per-question loop (called by vqa.bench).

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


def _pools(rng: np.random.Generator) -> list[list[str]]:
    syllables = "ba ke lo mi ru sa to ne di po ga fu re an is or".split()
    words = sorted({"".join(rng.choice(syllables, size=rng.integers(2, 4))) for _ in range(1500)})
    other = set(_EXTRA)
    while len(other) < 4000:
        a, b = (str(w) for w in rng.choice(words, size=2))
        other.add([a, f"{a} {b}", f"{a}-{b}", f"{a}, {b}"][rng.integers(0, 4)])
    return [["yes", "no"], _NUMBERS, sorted(other)]


def _synthetic_eval_set(n: int, seed: int) -> tuple[list[dict], dict[int, str]]:
    """Val2014-like annotations (10 answers each, realistic disagreement, strings needing normalization)
    and predictions, built with numpy in a few seconds."""
    rng = np.random.default_rng(seed)
    pools = _pools(rng)
    types = ["yes/no", "number", "other"]
    agree = np.array([0.9, 0.6, 0.55])  # chance an annotator gives the canonical answer
    correct = np.array([0.8, 0.45, 0.5])  # chance the prediction does
    offsets = np.cumsum([0] + [len(p) for p in pools])
    surface = np.array([[v(s) for v in _VARIANTS] for p in pools for s in p], dtype=object)  # [S, V]

    def draw(t: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:  # Zipf-like base answers of each type
        out = np.empty(shape, dtype=np.int64)
        for ti, pool in enumerate(pools):
            m = t == ti
            w = 1.0 / np.arange(1, len(pool) + 1) ** 1.1
            out[m] = offsets[ti] + rng.choice(len(pool), size=(int(m.sum()), *shape[1:]), p=w / w.sum())
        return out

    t = rng.choice(3, size=n, p=[0.38, 0.12, 0.50])
    truth = draw(t, (n,))
    base = np.where(rng.random((n, 10)) < agree[t, None], truth[:, None], draw(t, (n, 10)))  # [n, 10]
    answers = surface[base, rng.choice(len(_VARIANTS), size=(n, 10), p=[0.8, 0.05, 0.04, 0.04, 0.03, 0.04])]
    pred_base = np.where(rng.random(n) < correct[t], truth, draw(t, (n,)))
    preds = surface[pred_base, rng.choice(len(_VARIANTS), size=n, p=[0.9, 0.02, 0.02, 0.02, 0.02, 0.02])]
    qids = (np.arange(n) // 5 * 1000 + np.arange(n) % 5).tolist()  # image_id * 1000 + k
    qtypes = ["is the", "how many", "what color is the", "what is"]
    annotations = [
        {
            "question_id": qid,
            "question_type": qtypes[ti],
            "answer_type": types[ti],
            "multiple_choice_answer": row[0],
            "answers": [
                {"answer_id": j + 1, "answer": s, "answer_confidence": "yes"} for j, s in enumerate(row)
            ],
        }
        for qid, ti, row in zip(qids, t.tolist(), answers.tolist())
    ]
    return annotations, dict(zip(qids, preds.tolist()))


def bench_eval(n_questions: int = 214354, seed: int = 0, reference_questions: int = 10000) -> dict:
    """Time `official_scores` on a val2014-sized synthetic set against the literal per-question loop.

    The reference loop runs on the first `reference_questions` questions and its time is scaled linearly
    to the whole set ("reference_scaled"); "agree" says whether both gave identical (==) scores there.
    """
    annotations, preds = _synthetic_eval_set(n_questions, seed)
    gts = {a["question_id"]: a["answers"] for a in annotations}
    t0 = time.perf_counter()
    fast = official_scores(gts, preds)
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = evaluate(preds, annotations)
    evaluate_s = time.perf_counter() - t0
    m = min(reference_questions, n_questions)
    subset = dict(list(gts.items())[:m])
    t0 = time.perf_counter()
    ref = official_scores_reference(subset, preds)
    ref_measured = time.perf_counter() - t0
    ref_s = ref_measured * n_questions / m
    return {
        "questions": n_questions,
        "answers": sum(len(a) for a in gts.values()),
        "rules": "current",
        "fast_s": round(fast_s, 3),
        "evaluate_s": round(evaluate_s, 3),
        "reference_s": round(ref_s, 3),
        "reference_questions": m,
        "reference_measured_s": round(ref_measured, 3),
        "reference_scaled": m < n_questions,
        "speedup": round(ref_s / fast_s, 1),
        "agree": all(fast[q] == s for q, s in ref.items()),
        "overall": report["overall"],
    }
