"""`vqa eval`'s fast path: files in the plain official form, decoded straight into typed structs by
msgspec in forked processes, and the annotation side of the scoring cached per file.

`typed_report` gives the same report as vqa/evaluate.py's `checked_report` for every file it takes and
returns None for any other (then the checked path runs and words the problem): tests/test_evaluate.py
checks both on the same files, for any number of workers, cached or not.

The cache (`cache_dir`: $VQA_CACHE_DIR, else $XDG_CACHE_HOME/vqa, else ~/.cache/vqa; `off` for none)
holds one .npz per annotation file and rules (`Annotated`: ids, answer counts, the compared answer keys,
agreement, type codes; no pickle), used only while the file's real path, size, modification time and
first and last MiB match, so a later results file of the same split decodes only its predictions and
the questions.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from vqa.data.answers import ANSWERS_PER_QUESTION
from vqa.data.sources import Source, get_source
from vqa.data.sources.official import skipped_report
from vqa.io import atomic_path, mapped, read_json_as
from vqa.scoring import AnswerKeys, distinct_small_ids, intern


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


_SHARED: dict = {}  # what the forked scoring workers read (set before they start): see typed_report
_KEEP: list = []  # a worker's decoded annotations, never freed one by one (the worker ends with os._exit)
QUESTIONS_PER_WORKER = 50_000  # fewer per process are not worth a fork


def scoring_workers(questions: int) -> int:
    """How many processes score a file of `questions` (1: this one): one per core up to 8, one per
    QUESTIONS_PER_WORKER questions; 1 where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8, -(-questions // QUESTIONS_PER_WORKER)))


def _chunk_text(lo: int, hi: int) -> bytes:
    """The JSON array of annotations lo..hi-1: one copy of their bytes in the mapped file (msgspec's Raw
    values point into it), or the values joined where they do not (a copy made by the decoder)."""
    data, raws = _SHARED["data"], _SHARED["raws"]
    base = np.frombuffer(data, np.uint8).ctypes.data
    first, last = raws[lo], raws[hi - 1]
    start = np.frombuffer(first, np.uint8).ctypes.data - base
    end = np.frombuffer(last, np.uint8).ctypes.data - base + len(last)
    view = memoryview(data)
    if (
        0 <= start < end <= len(data)
        and view[start : start + len(first)] == first
        and view[end - len(last) : end] == last
    ):
        return b"".join((b"[", view[start:end], b"]"))  # between two values of an array: commas, spaces
    return b"[" + b",".join(raws[lo:hi]) + b"]"


@dataclass
class Annotated:
    """The annotation side of a report, all a results file is scored against (and what the cache keeps):
    every annotation's question id and answer count in file order, and for the scored ones (exactly 10
    answers) the compared answer keys, top counts and type codes."""

    ids: np.ndarray  # int64 [N]
    counts: np.ndarray  # int64 [N]
    gt: AnswerKeys  # of the scored annotations, in order
    top: np.ndarray  # int8 [scored]
    answer_types: tuple[list[str], np.ndarray]
    question_types: tuple[list[str], np.ndarray]

    @classmethod
    def join(cls, parts: list[Annotated]) -> Annotated:
        """The parts of consecutive runs of annotations as one (keys renumbered into one table)."""
        keys: dict[str, int] = {}
        gt_keys, splits = [], []
        for part in parts:
            renumber = np.fromiter((keys.setdefault(k, len(keys)) for k in part.gt.keys), np.int32)
            for _, gt_key, split in part.gt.groups:
                gt_keys.append(renumber[gt_key])
                splits.append(split)
        n = sum(len(p.top) for p in parts)
        groups = [(np.arange(n), np.concatenate(gt_keys), np.concatenate(splits))] if n else []

        def types(name: str) -> tuple[list[str], np.ndarray]:
            names: dict[str, int] = {}
            codes = [np.fromiter((names.setdefault(v, len(names)) for v in getattr(p, name)[0]), np.int32)
                     [getattr(p, name)[1]] for p in parts]  # fmt: skip
            return list(names), np.concatenate(codes)

        return cls(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.counts for p in parts]),
            AnswerKeys(keys, groups, n, parts[0].gt.legacy),
            np.concatenate([p.top for p in parts]),
            types("answer_types"),
            types("question_types"),
        )


def _vocab_codes(values: list[str]) -> tuple[list[str], np.ndarray]:
    codes, vocab = intern(values)
    return vocab, codes


def _score_chunk(lo: int, hi: int) -> tuple[Annotated, np.ndarray] | None:
    """Decode and score annotations lo..hi-1 (in a forked worker or in this process): their annotation side
    and the scores of the predictions; None when a value is not in the plain official form or a scored
    question has no prediction (then `checked_report` runs and words it)."""
    try:
        anns = msgspec.json.decode(_chunk_text(lo, hi), type=_SHARED["schema"])
    except msgspec.MsgspecError:
        return None
    _KEEP.append(anns)
    scored = [a for a in anns if len(a.answers) == ANSWERS_PER_QUESTION]  # has_all_answers
    lengths = np.full(len(scored), ANSWERS_PER_QUESTION, np.int64)
    ids = [x.answer_id for a in scored for x in a.answers]
    distinct, undecided = distinct_small_ids(np.fromiter(ids, np.int64, len(ids)), lengths)
    for i in np.flatnonzero(undecided).tolist():
        distinct[i] = len({x.answer_id for x in scored[i].answers}) == ANSWERS_PER_QUESTION
    if not distinct.all():  # equal answer ids: the official loop compares whole answer dicts
        return None
    preds = _SHARED["preds"]
    predicted = [preds.get(a.question_id) for a in scored]
    if any(p is None for p in predicted):
        return None
    gt = AnswerKeys.build([x.answer for a in scored for x in a.answers], lengths, _SHARED["legacy"])
    part = Annotated(
        np.fromiter((a.question_id for a in anns), np.int64, len(anns)),
        np.fromiter((len(a.answers) for a in anns), np.int64, len(anns)),
        gt,
        gt.top_counts(),
        _vocab_codes([a.answer_type for a in scored]),
        _vocab_codes([a.question_type for a in scored]),
    )
    return part, gt.scores(predicted)


def _annotate(path, schema: type, wrapped: bool, preds: dict, legacy: bool,
              workers: int | None) -> tuple[Annotated, np.ndarray] | None:  # fmt: skip
    """The annotation side of `path` and the scores of `preds`, from `workers` forked processes (default
    `scoring_workers`), each decoding and scoring a run of consecutive annotations (`_score_chunk`), joined
    in file order: the scores are per question, so the result is the same for any number of workers."""
    with mapped(path) as data:
        if data is None:
            return None
        try:
            raws = msgspec.json.decode(data, type=_RawAnnotationFile if wrapped else list[msgspec.Raw])
        except msgspec.MsgspecError:
            return None
        raws = raws.annotations if wrapped else raws
        if not raws:
            return None
        n = len(raws)
        workers = min(workers or scoring_workers(n), n)
        bounds = [(i * n // workers, (i + 1) * n // workers) for i in range(workers)]
        _SHARED.update(data=data, raws=raws, preds=preds, legacy=legacy, schema=schema)
        try:
            if workers == 1:
                chunks = [_score_chunk(*bounds[0])]
            else:
                fork = multiprocessing.get_context("fork")
                with ProcessPoolExecutor(workers, mp_context=fork) as pool:
                    chunks = list(pool.map(_score_chunk, *zip(*bounds)))
        finally:
            _SHARED.clear()
            _KEEP.clear()
            del raws
    if any(c is None for c in chunks):
        return None
    return Annotated.join([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


CACHE_VERSION = 1  # bump when Annotated or the scoring of its keys changes


def cache_dir() -> Path | None:
    """Where `vqa eval` keeps the annotation side of the files it scored: $VQA_CACHE_DIR (`off`: nowhere),
    else $XDG_CACHE_HOME/vqa, else ~/.cache/vqa."""
    where = os.environ.get("VQA_CACHE_DIR")
    if where is not None:
        return None if where.lower() in ("", "off", "0", "none") else Path(where)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vqa"


def _fingerprint(path: Path, source: str, rules: str) -> tuple[str, str] | None:
    """(cache file name, fingerprint) of an annotation file: its real path, source and rules name the
    entry; size, modification time and the hash of its first and last MiB must match for it to be used."""
    try:
        real = path.resolve()
        st = real.stat()
        with open(real, "rb") as f:
            head = f.read(2**20)
            f.seek(max(0, st.st_size - 2**20))
            tail = f.read(2**20)
    except OSError:
        return None
    name = hashlib.blake2b(f"{real}|{source}|{rules}".encode(), digest_size=16).hexdigest()
    content = hashlib.blake2b(head + tail, digest_size=16).hexdigest()
    return (
        f"eval-{name}.npz",
        f"v{CACHE_VERSION}|{real}|{source}|{rules}|{st.st_size}|{st.st_mtime_ns}|{content}",
    )


def _blob(strings: list[str]) -> dict[str, np.ndarray]:
    data = [s.encode("utf-8", "surrogatepass") for s in strings]
    return {
        "blob": np.frombuffer(b"".join(data), np.uint8),
        "ends": np.cumsum([len(d) for d in data], dtype=np.int64),
    }


def _strings_of(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    data = blob.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends.tolist())]


def save_annotated(path: Path, fingerprint: str, ann: Annotated) -> None:
    """Write `ann` to the cache file `path` (numpy arrays, no pickle), atomically."""
    ((rows, gt_key, split),) = ann.gt.groups or [
        (None, np.zeros((0, ANSWERS_PER_QUESTION), np.int32), np.zeros(0, bool))
    ]
    arrays = {"fingerprint": np.frombuffer(fingerprint.encode(), np.uint8), "ids": ann.ids, "counts": ann.counts,
              "gt_key": gt_key, "split": split, "top": ann.top, "legacy": np.array(ann.gt.legacy),
              "at_codes": ann.answer_types[1], "qt_codes": ann.question_types[1]}  # fmt: skip
    for name, strings in (
        ("keys", list(ann.gt.keys)),
        ("at", ann.answer_types[0]),
        ("qt", ann.question_types[0]),
    ):
        arrays.update({f"{name}_{k}": v for k, v in _blob(strings).items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_annotated(path: Path, fingerprint: str) -> Annotated | None:
    """The cache entry at `path` if it holds `fingerprint`'s annotation side, else None (missing, stale
    or unreadable: the file is then scored from its JSON and the entry rewritten)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if z["fingerprint"].tobytes().decode() != fingerprint:
                return None
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    keys = _strings_of(a["keys_blob"], a["keys_ends"])
    n = len(a["top"])
    groups = [(np.arange(n), a["gt_key"], a["split"])] if n else []
    return Annotated(
        a["ids"],
        a["counts"],
        AnswerKeys(dict(zip(keys, range(len(keys)))), groups, n, bool(a["legacy"])),
        a["top"],
        (_strings_of(a["at_blob"], a["at_ends"]), a["at_codes"]),
        (_strings_of(a["qt_blob"], a["qt_ends"]), a["qt_codes"]),
    )


def typed_report(args: argparse.Namespace, workers: int | None = None) -> dict | None:
    """`vqa eval`'s report from the three files decoded straight into the plain official form (the fast
    path: no dict per answer, scores vectorized), or None when a file is not in that form or fails a
    check; then `checked_report` runs, which words the problem (or scores the unusual form). For files
    in the plain form both give the same report and accept the same files (tests/test_evaluate.py).

    The annotation side (`Annotated`) comes from the cache (`cache_dir`, unless args.cache is False) when
    it holds this file as it is now; otherwise from the JSON (`_annotate`: forked workers), and is then
    kept there. Only the predictions are scored anew: the report is the same either way."""
    source = source_of(args)
    wrapped, mc = source.layout.wrapped, source.layout.multiple_choice_answer
    rules = "legacy" if args.legacy else "current"
    where = cache_dir() if getattr(args, "cache", True) else None
    entry = _fingerprint(Path(args.annotations), source.name, rules) if where else None
    ann = load_annotated(where / entry[0], entry[1]) if entry else None
    questions = read_json_as(args.questions, _QuestionFile if wrapped else list[_Question])
    questions = questions.questions if wrapped and questions is not None else questions
    results = read_json_as(args.results, list[_Result])
    if questions is None or results is None:
        return None
    preds = {r.question_id: r.answer for r in results}
    scores = None
    if ann is None:
        done = _annotate(args.annotations, list[_AnnotationMC] if mc else list[_Annotation], wrapped, preds,
                         args.legacy, workers)  # fmt: skip
        if done is None:
            return None
        ann, scores = done
    all_ids = ann.ids.tolist()
    ann_ids = set(all_ids)
    if (
        len(ann_ids) != len(all_ids)
        or len(questions) != len(all_ids)
        or {q.question_id for q in questions} != ann_ids
    ):
        return None
    full = ann.counts == ANSWERS_PER_QUESTION
    skipped = ann.ids[~full].tolist()
    qids = ann.ids[full].tolist()
    # exactly the scored ids, each once; the skipped ones may be there or not
    if (
        not qids
        or len(preds) != len(results)
        or not preds.keys() <= ann_ids
        or len(preds.keys() - set(skipped)) != len(qids)
    ):
        return None
    if scores is None:
        scores = ann.gt.scores([preds[q] for q in qids])
    elif entry is not None:
        try:
            save_annotated(where / entry[0], entry[1], ann)
        except OSError as e:  # scoring does not need the cache: say so once and go on
            print(f"note: cannot write the scoring cache in {where} ({e.strerror or e}); set VQA_CACHE_DIR "
                  "to a writable folder, or pass --no-cache", file=sys.stderr)  # fmt: skip
    vocab_at, vocab_qt = np.array(ann.answer_types[0], object), np.array(ann.question_types[0], object)
    return skipped_report(
        qids,
        scores,
        vocab_at[ann.answer_types[1]].tolist(),
        vocab_qt[ann.question_types[1]].tolist(),
        rules,
        skipped,
        top_counts=ann.top,
    )


def source_of(args: argparse.Namespace) -> Source:
    """The dataset `vqa eval --source` names (vqa2 when the namespace has none, as predict's)."""
    return get_source(getattr(args, "source", "vqa2"))
