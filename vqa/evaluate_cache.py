"""`vqa eval`'s annotation cache: the annotation side of a scored file (`Annotated`), kept per file.

The cache (`cache_dir`: $VQA_CACHE_DIR, else $XDG_CACHE_HOME/vqa, else ~/.cache/vqa; `off` for none)
holds one .npz per annotation file and rules (numpy arrays, no pickle), used only while the file's real
path, size, modification time and first and last MiB match (`fingerprint`), so a later results file of
the same split decodes only its predictions and the questions.

An entry is trusted only when it is whole (`load_annotated`): every array present with its dtype and
rank, lengths consistent with the file's question count, every code in range, distinct key strings, and
a checksum of all arrays that matches. Anything else is a damaged entry: a one-line note on stderr, and
the file is scored from its JSON and the entry rewritten. The checksum guards against corruption and
stray edits, not against someone who rewrites it too (the cache is the user's own folder).
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqa.data.answers import ANSWERS_PER_QUESTION
from vqa.data.keys import Interner
from vqa.io import atomic_path
from vqa.scoring import AnswerKeys

CACHE_VERSION = 2  # bump when Annotated, the entry's arrays or the scoring of its keys change


@dataclass
class Annotated:
    """The annotation side of a report, all a results file is scored against (and what the cache keeps):
    every annotation's question id and answer count in file order, and for the scored ones (exactly 10
    answers) the compared answer keys, top counts and type codes."""

    ids: np.ndarray  # int64 [N]
    counts: np.ndarray  # int64 [N]
    gt: AnswerKeys  # of the scored annotations, in order, as one group
    top: np.ndarray  # int8 [scored]
    answer_types: tuple[list[str], np.ndarray]  # (names, int32 codes [scored])
    question_types: tuple[list[str], np.ndarray]

    @classmethod
    def join(cls, parts: list[Annotated]) -> Annotated:
        """The parts of consecutive runs of annotations as one (keys and types renumbered into one table)."""
        keys, gt_keys, normalized = Interner(), [], []
        for part in parts:
            renumber = keys.codes(part.gt.keys, len(part.gt.keys))
            for _, gt_key, norm in part.gt.groups:
                gt_keys.append(renumber[gt_key])
                normalized.append(norm)
        n = sum(len(p.top) for p in parts)
        groups = [(np.arange(n), np.concatenate(gt_keys), np.concatenate(normalized))] if n else []

        def types(name: str) -> tuple[list[str], np.ndarray]:
            table = Interner()
            codes = [table.codes(getattr(p, name)[0])[getattr(p, name)[1]] for p in parts]
            return table.strings, np.concatenate(codes).astype(np.int32)

        return cls(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.counts for p in parts]),
            AnswerKeys(dict(zip(keys.strings, range(len(keys.strings)))), groups, n, parts[0].gt.rules),
            np.concatenate([p.top for p in parts]),
            types("answer_types"),
            types("question_types"),
        )


def cache_dir() -> Path | None:
    """Where `vqa eval` keeps the annotation side of the files it scored: $VQA_CACHE_DIR (`off`: nowhere),
    else $XDG_CACHE_HOME/vqa, else ~/.cache/vqa."""
    where = os.environ.get("VQA_CACHE_DIR")
    if where is not None:
        return None if where.lower() in ("", "off", "0", "none") else Path(where)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vqa"


def fingerprint(path: Path, source: str, rules: str) -> tuple[str, str] | None:
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


# Every array of an entry: dtype and rank.
ENTRY = {
    "fingerprint": (np.uint8, 1),
    "rules": (np.uint8, 1),
    "ids": (np.int64, 1),
    "counts": (np.int64, 1),
    "gt_key": (np.int32, 2),
    "normalized": (np.bool_, 1),
    "top": (np.int8, 1),
    "at_codes": (np.int32, 1),
    "qt_codes": (np.int32, 1),
    **{
        f"{t}_{part}": (dtype, 1)
        for t in ("keys", "at", "qt")
        for part, dtype in (("blob", np.uint8), ("ends", np.int64))
    },
}


def checksum(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 [16]: blake2b of every array of ENTRY (name, dtype, shape and bytes), in ENTRY's order."""
    h = hashlib.blake2b(digest_size=16)
    for name in ENTRY:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), np.uint8)


def _blob(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    data = [s.encode("utf-8", "surrogatepass") for s in strings]
    return np.frombuffer(b"".join(data), np.uint8), np.cumsum([len(d) for d in data], dtype=np.int64)


def _strings_of(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    data = blob.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends.tolist())]


def entry_arrays(fingerprint: str, ann: Annotated) -> dict[str, np.ndarray]:
    """The arrays of `ann`'s cache entry, its checksum included."""
    ((_, gt_key, normalized),) = ann.gt.groups or [
        (None, np.zeros((0, ANSWERS_PER_QUESTION), np.int32), np.zeros(0, bool))
    ]
    arrays = {
        "fingerprint": np.frombuffer(fingerprint.encode(), np.uint8),
        "rules": np.frombuffer(ann.gt.rules.encode(), np.uint8),
        "ids": ann.ids,
        "counts": ann.counts,
        "gt_key": gt_key,
        "normalized": normalized,
        "top": ann.top,
        "at_codes": ann.answer_types[1],
        "qt_codes": ann.question_types[1],
    }
    for name, strings in (
        ("keys", list(ann.gt.keys)),
        ("at", ann.answer_types[0]),
        ("qt", ann.question_types[0]),
    ):
        arrays[f"{name}_blob"], arrays[f"{name}_ends"] = _blob(strings)
    arrays = {name: np.asarray(arrays[name], dtype) for name, (dtype, _) in ENTRY.items()}
    return {**arrays, "checksum": checksum(arrays)}


def save_annotated(path: Path, fingerprint: str, ann: Annotated) -> None:
    """Write `ann` to the cache file `path` (numpy arrays, no pickle), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **entry_arrays(fingerprint, ann))


def load_annotated(path: Path, fingerprint: str, rules: str) -> Annotated | None:
    """The cache entry at `path` if it holds `fingerprint`'s annotation side and is whole, else None: no
    entry or a stale one (the file changed) silently, a damaged one with a note on stderr; the file is
    then scored from its JSON and the entry rewritten."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "fingerprint" in z.files and z["fingerprint"].tobytes() != fingerprint.encode():
                return None
            a = {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        return _damaged(path, f"unreadable: {e}")
    problem = _problem(a, rules)
    if problem:
        return _damaged(path, problem)
    try:
        keys = _strings_of(a["keys_blob"], a["keys_ends"])
        at, qt = _strings_of(a["at_blob"], a["at_ends"]), _strings_of(a["qt_blob"], a["qt_ends"])
    except UnicodeDecodeError:
        return _damaged(path, "a string is not UTF-8")
    if len(set(keys)) != len(keys):
        return _damaged(path, "two keys hold the same string")
    n = len(a["top"])
    groups = [(np.arange(n), a["gt_key"], a["normalized"])] if n else []
    gt = AnswerKeys(dict(zip(keys, range(len(keys)))), groups, n, rules)
    return Annotated(a["ids"], a["counts"], gt, a["top"], (at, a["at_codes"]), (qt, a["qt_codes"]))


def _damaged(path: Path, why: str) -> None:
    print(
        f"note: scoring cache entry {path} is damaged ({why}); scoring the annotations anew", file=sys.stderr
    )


def _problem(a: dict[str, np.ndarray], rules: str) -> str | None:
    """What is wrong with an entry's arrays `a` (None: nothing): each array present with its dtype and
    rank, the checksum matching, the lengths consistent, every code in range."""
    for name, (dtype, ndim) in {**ENTRY, "checksum": (np.uint8, 1)}.items():
        if name not in a:
            return f"no array {name!r}"
        if a[name].dtype != dtype or a[name].ndim != ndim:
            return f"array {name!r} is {a[name].dtype} of rank {a[name].ndim}, not {np.dtype(dtype)} of rank {ndim}"
    if not np.array_equal(a["checksum"], checksum(a)):
        return "the checksum does not match its arrays"
    if a["rules"].tobytes() != rules.encode():
        return f"rules {a['rules'].tobytes()!r}, not {rules!r}"
    scored = int((a["counts"] == ANSWERS_PER_QUESTION).sum())
    if len(a["ids"]) != len(a["counts"]) or a["gt_key"].shape != (scored, ANSWERS_PER_QUESTION):
        return f"{len(a['ids'])} ids, {len(a['counts'])} answer counts, keys {a['gt_key'].shape} for {scored} scored"
    if any(len(a[name]) != scored for name in ("normalized", "top", "at_codes", "qt_codes")):
        return f"a per-question array does not have the {scored} scored questions"
    for t in ("keys", "at", "qt"):
        ends = a[f"{t}_ends"]
        last = ends[-1] if len(ends) else 0
        if last != len(a[f"{t}_blob"]) or (len(ends) and (ends[0] < 0 or np.any(np.diff(ends) < 0))):
            return f"string table {t!r} is cut"
    for codes, table in (("gt_key", "keys"), ("at_codes", "at"), ("qt_codes", "qt")):
        size = len(a[f"{table}_ends"])
        if a[codes].size and (a[codes].min() < 0 or a[codes].max() >= size):
            return f"array {codes!r} has codes outside 0..{size - 1}"
    if scored and (a["top"].min() < 1 or a["top"].max() > ANSWERS_PER_QUESTION):
        return "a top count outside 1..10"
    return None
