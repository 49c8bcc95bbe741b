"""`vqa eval`'s fast path: files in the plain official form, decoded straight into typed structs by
msgspec in forked processes, the annotation side of the scoring cached per file (vqa/evaluate_cache.py).

`typed_report` gives the same report as vqa/evaluate.py's `checked_report` for every file it takes and
returns None for any other (then the checked path runs and words the problem): tests/test_evaluate.py
checks both on the same files, for any number of workers, cached or not.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from vqa.data.answers import ANSWERS_PER_QUESTION
from vqa.data.keys import intern
from vqa.data.sources import Source
from vqa.data.sources.official import skipped_report
from vqa.evaluate_cache import Annotated, cache_dir, fingerprint, load_annotated, save_annotated
from vqa.io import mapped, read_json_as
from vqa.scoring import AnswerKeys, distinct_small_ids


# The plain official form, decoded straight into these by msgspec (only the fields named, types checked).
# A file that does not fit (a missing or mistyped key, answers without an integer answer_id, ...) is read
# by the checked path instead, which names any problem or scores the unusual form exactly.
class _Answer(msgspec.Struct, gc=False):
    answer: str
    answer_id: int


class _Annotation(msgspec.Struct, gc=False):  # where the source has no multiple_choice_answer (OK-VQA)
    question_id: int
    image_id: Any
    question_type: str
    answer_type: str
    answers: list[_Answer]


class _AnnotationMC(_Annotation, gc=False):  # the others: the key is required (checked while decoding)
    multiple_choice_answer: Any


class _Question(msgspec.Struct, gc=False):
    question_id: int
    image_id: Any
    question: Any


class _QuestionFile(msgspec.Struct, gc=False):
    questions: list[_Question]


class _Result(msgspec.Struct, gc=False):
    question_id: int
    answer: str


class _RawAnnotationFile(msgspec.Struct, gc=False):
    annotations: list[msgspec.Raw]  # each annotation's JSON text, not decoded yet (see _score_chunk)


QUESTIONS_PER_WORKER = 50_000  # fewer per process are not worth a fork


def scoring_workers(questions: int) -> int:
    """How many processes score a file of `questions` (1: this one): one per core up to 8, one per
    QUESTIONS_PER_WORKER questions; 1 where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8, -(-questions // QUESTIONS_PER_WORKER)))


def _forked(fn: Callable, args: tuple, conn) -> None:
    """A forked worker: send fn(*args, keep) back and end at once, without freeing what `keep` holds
    (millions of decoded objects, freed one by one otherwise)."""
    keep: list = []
    try:
        result = fn(*args, keep)
    except BaseException as e:  # handed to the parent, which raises it
        result = e
    try:
        conn.send(result)
    except Exception as e:  # an unpicklable result or error
        conn.send(RuntimeError(f"a scoring worker could not send its result: {e!r}"))
    conn.close()
    os._exit(0)


def run_forked(fn: Callable, calls: list[tuple]) -> list:
    """[fn(*args, keep) for args in calls]: in this process for one call, else each in a forked process
    of its own, which inherits its arguments (nothing is copied to it) and sends only its result back."""
    if len(calls) == 1:
        return [fn(*calls[0], [])]
    fork = multiprocessing.get_context("fork")
    workers, results = [], []
    try:
        for args in calls:
            receive, send = fork.Pipe(duplex=False)
            process = fork.Process(target=_forked, args=(fn, args, send), daemon=True)
            process.start()
            send.close()
            workers.append((process, receive))
        for process, receive in workers:
            try:
                results.append(receive.recv())
            except EOFError:
                process.join()
                raise RuntimeError(f"a scoring worker died (exit code {process.exitcode})") from None
    finally:
        for process, receive in workers:
            receive.close()
            if len(results) < len(workers):  # an error here: the others are not waited for
                process.kill()
            process.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _score_chunk(
    raws: list[msgspec.Raw], schema: type, preds: dict, rules: str, keep: list
) -> tuple[Annotated, np.ndarray] | None:
    """Decode and score a run of consecutive annotations (each one's JSON text): their annotation side
    and the scores of the predictions; None when a value is not in the plain official form or a scored
    question has no prediction (then `checked_report` runs and words it). The decoded annotations go
    to `keep`."""
    try:
        anns = msgspec.json.decode(b"[" + b",".join(raws) + b"]", type=schema)
    except msgspec.MsgspecError:
        return None
    keep.append(anns)
    scored = [a for a in anns if len(a.answers) == ANSWERS_PER_QUESTION]  # has_all_answers
    lengths = np.full(len(scored), ANSWERS_PER_QUESTION, np.int64)
    ids = [x.answer_id for a in scored for x in a.answers]
    distinct, undecided = distinct_small_ids(np.fromiter(ids, np.int64, len(ids)), lengths)
    for i in np.flatnonzero(undecided).tolist():
        distinct[i] = len({x.answer_id for x in scored[i].answers}) == ANSWERS_PER_QUESTION
    if not distinct.all():  # equal answer ids: the official loop compares whole answer dicts
        return None
    predicted = [preds.get(a.question_id) for a in scored]
    if any(p is None for p in predicted):
        return None
    gt = AnswerKeys.build([x.answer for a in scored for x in a.answers], lengths, rules)
    part = Annotated(
        np.fromiter((a.question_id for a in anns), np.int64, len(anns)),
        np.fromiter((len(a.answers) for a in anns), np.int64, len(anns)),
        gt,
        gt.top_counts(),
        _types([a.answer_type for a in scored]),
        _types([a.question_type for a in scored]),
    )
    return part, gt.scores(predicted)


def _types(values: list[str]) -> tuple[list[str], np.ndarray]:
    codes, names = intern(values)
    return names, codes


def _annotate(
    path, schema: type, wrapped: bool, preds: dict, rules: str, workers: int | None
) -> tuple[Annotated, np.ndarray] | None:
    """The annotation side of `path` and the scores of `preds`, from `workers` forked processes (default
    `scoring_workers`), each decoding and scoring a run of consecutive annotations (`_score_chunk`), joined
    in file order: the scores are per question, so the result is the same for any number of workers."""
    with mapped(path) as data:
        if data is None:
            return None
        parts = _annotate_mapped(data, schema, wrapped, preds, rules, workers)  # frees the views of data
    if parts is None or any(p is None for p in parts):
        return None
    return Annotated.join([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _annotate_mapped(data, schema: type, wrapped: bool, preds: dict, rules: str, workers: int | None):
    try:
        raws = msgspec.json.decode(data, type=_RawAnnotationFile if wrapped else list[msgspec.Raw])
    except msgspec.MsgspecError:
        return None
    raws = raws.annotations if wrapped else raws
    n = len(raws)
    if not n:
        return None
    workers = min(workers or scoring_workers(n), n)
    chunks = [raws[i * n // workers : (i + 1) * n // workers] for i in range(workers)]
    del raws
    return run_forked(_score_chunk, [(chunk, schema, preds, rules) for chunk in chunks])


def typed_report(
    annotations: Path,
    questions: Path,
    results: Path,
    source: Source,
    legacy: bool = False,
    cache: bool = True,
    workers: int | None = None,
) -> dict | None:
    """`vqa eval`'s report from the three files decoded straight into the plain official form (no dict per
    answer, scores vectorized), or None when a file is not in that form or fails a check (module
    docstring). The annotation side comes from the cache (`cache` True) or the JSON (`_annotation_side`);
    only the predictions are scored anew, so the report is the same either way."""
    wrapped = source.layout.wrapped
    rules = "legacy" if legacy else "current"
    decoded = read_json_as(questions, _QuestionFile if wrapped else list[_Question])
    decoded = decoded.questions if wrapped and decoded is not None else decoded
    answered = read_json_as(results, list[_Result])
    if decoded is None or answered is None:
        return None
    preds = {r.question_id: r.answer for r in answered}
    question_ids = {q.question_id for q in decoded}

    def fits(ann: Annotated) -> bool:
        return _covers(ann, question_ids, len(decoded), preds, len(answered))

    done = _annotation_side(Path(annotations), source, rules, preds, fits, cache, workers)
    if done is None:
        return None
    ann, scores = done
    full = ann.counts == ANSWERS_PER_QUESTION
    vocab_at, vocab_qt = np.array(ann.answer_types[0], object), np.array(ann.question_types[0], object)
    return skipped_report(
        ann.ids[full].tolist(),
        scores,
        vocab_at[ann.answer_types[1]].tolist(),
        vocab_qt[ann.question_types[1]].tolist(),
        rules,
        ann.ids[~full].tolist(),
        top_counts=ann.top,
    )


def _annotation_side(
    annotations: Path,
    source: Source,
    rules: str,
    preds: dict,
    fits: Callable,
    cache: bool,
    workers: int | None,
) -> tuple[Annotated, np.ndarray] | None:
    """(the annotation side, the scores of `preds`): from the cache entry when it holds the file as it is
    now and `fits` the other files; otherwise from the JSON (`_annotate`: forked workers), and then kept
    in the cache. None when the files do not fit together or are not in the plain form."""
    where = cache_dir() if cache else None
    entry = fingerprint(annotations, source.name, rules) if where else None
    ann = load_annotated(where / entry[0], entry[1], rules) if entry else None
    if ann is not None and fits(ann):
        qids = ann.ids[ann.counts == ANSWERS_PER_QUESTION].tolist()
        return ann, ann.gt.scores([preds[q] for q in qids])
    schema = list[_AnnotationMC] if source.layout.multiple_choice_answer else list[_Annotation]
    done = _annotate(annotations, schema, source.layout.wrapped, preds, rules, workers)
    if done is None or not fits(done[0]):
        return None
    if ann is not None:  # the entry was whole but not this file's: rewritten below
        print(
            f"note: scoring cache entry {where / entry[0]} did not match the annotations file; rebuilt it",
            file=sys.stderr,
        )
    if entry is not None:
        try:
            save_annotated(where / entry[0], entry[1], done[0])
        except OSError as e:  # scoring does not need the cache: say so once and go on
            print(
                f"note: cannot write the scoring cache in {where} ({e.strerror or e}); set VQA_CACHE_DIR "
                "to a writable folder, or pass --no-cache",
                file=sys.stderr,
            )
    return done


def _covers(ann: Annotated, question_ids: set, questions: int, preds: dict, results: int) -> bool:
    """Whether the annotations (each id once), the questions (the same ids) and the results (exactly the
    scored ids, each once; the skipped ones may be there or not) fit together."""
    all_ids = ann.ids.tolist()
    ann_ids = set(all_ids)
    if len(ann_ids) != len(all_ids) or questions != len(all_ids) or question_ids != ann_ids:
        return False
    full = ann.counts == ANSWERS_PER_QUESTION
    scored = int(full.sum())
    skipped = set(ann.ids[~full].tolist())
    return (
        bool(scored)
        and len(preds) == results
        and preds.keys() <= ann_ids
        and len(preds.keys() - skipped) == scored
    )
