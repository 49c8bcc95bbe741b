"""torch Dataset over records + features, read a batch at a time (samplers and the loader: loader.py).

Per-question inputs (tokens, targets) are encoded once, up front, into compact numpy arrays (the
text is dropped then); __getitem__ reads the image features and expands the answer counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from vqa.data.answers import (
    ANSWERS_PER_QUESTION,
    OOV_MODES,
    SCORE_OF_COUNT,
    WEIGHT_OF_COUNT,
    AnswerVocab,
    encode_targets,
)
from vqa.data.buffers import Layout, fresh
from vqa.data.features import FeatureStore
from vqa.data.image_features import ImageFeatures
from vqa.data.sources import Records
from vqa.data.text import QuestionVocab
from vqa.errors import UserError

K = ANSWERS_PER_QUESTION  # target slots: at most 10 unique answers per question


class Batch(NamedTuple):
    question: torch.Tensor  # long [B, T], 0 = padding
    question_len: torch.Tensor  # long [B]
    image: torch.Tensor  # float [B, N, D]
    image_mask: torch.Tensor  # bool [B, N]
    answer: torch.Tensor  # long [B], -1 = most common answer outside the vocabulary
    answer_idx: torch.Tensor  # long [B, K]
    answer_weight: torch.Tensor  # float [B, K], count / 10
    answer_score: torch.Tensor  # float [B, K], official per-answer score
    question_id: torch.Tensor  # long [B]
    question_type: torch.Tensor  # long [B]: code into the split's question types (-1: none); debiasing priors

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """The batch on `device`, image features as float32 (they travel as stored, float16 in our files,
        half the bytes through workers, pinned memory and the bus), except `question_len` and
        `question_id`, which stay on the CPU: ids are only ever read on the host, and the question
        encoder copies the lengths to the device without blocking (from pinned memory) when it needs them."""
        keep = ("question_len", "question_id")
        moved = {
            n: t.to(device, non_blocking=non_blocking) for n, t in self._asdict().items() if n not in keep
        }
        # features travel float16 and a grid batch as a transposed view (ImageFeatures.read_into):
        # one copy on the device makes them float32 and contiguous [B, N, D]
        moved["image"] = moved["image"].to(torch.float32, memory_format=torch.contiguous_format)
        return self._replace(**moved)

    def pin_memory(self) -> Batch:
        return Batch(*(t.pin_memory() for t in self))


@dataclass
class EncodeReport:
    """What encoding a split left out or changed, so nothing is dropped silently."""

    split: str
    questions: int = 0
    kept: int = 0
    hard_answer_oov: int = 0  # most common answer outside the vocabulary
    dropped_hard_oov: int = 0  # left out of training for that reason
    no_answer_in_vocab: int = 0  # no human answer in the vocabulary at all
    truncated: int = 0  # questions longer than max_question_len
    not_all_answers: list[int] = field(default_factory=list)  # ids of annotations without exactly 10 answers
    not_all_answers_kept: bool = False  # kept without targets (prediction) instead of left out
    target_weight_lost: float = 0.0  # mean share of the 10 answers outside the vocabulary

    def lines(self) -> list[str]:
        out = [
            f"{self.split}: {self.kept:,} of {self.questions:,} questions kept; "
            f"most common answer outside the vocabulary: {self.hard_answer_oov:,} "
            f"({self.dropped_hard_oov:,} left out of training); no answer in vocabulary: {self.no_answer_in_vocab:,}; "
            f"truncated questions: {self.truncated:,}; target weight outside vocabulary: {100 * self.target_weight_lost:.2f}%"
        ]
        if self.not_all_answers:
            ids = self.not_all_answers
            shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
            what = "kept without targets (not scored)" if self.not_all_answers_kept else "left out"
            out.append(
                f"{self.split}: {len(ids):,} questions whose annotation does not have exactly "
                f"{ANSWERS_PER_QUESTION} answers {what}, as `vqa eval` leaves them out (question ids {shown})"
            )
        return out

    def refuse_empty(self) -> None:
        """The UserError for a split with no question left."""
        if len(self.not_all_answers) == self.questions:
            raise UserError(
                f"split '{self.split}': no annotation has exactly {ANSWERS_PER_QUESTION} answers, so no question "
                "can be trained or scored; use official-format annotations (10 answers per question)"
            )
        raise UserError(
            f"split '{self.split}': no question left after filtering; check data.root and data.max_answers"
        )


class VQADataset(Dataset):
    """Questions of one split, encoded once into compact arrays (per question: tokens, image, hard
    target, the <= 10 unique in-vocabulary answers with their counts, question id); __getitem__
    reads the image features and turns counts into weights and official scores."""

    def __init__(
        self,
        records: Records,
        features: ImageFeatures | FeatureStore,
        qvocab: QuestionVocab,
        avocab: AnswerVocab,
        max_question_len: int,
        split: str,
        oov: str = "drop",
        drop_hard_oov: bool = False,
        keep_unscored: bool = False,
        keep_text: bool = False,
    ):
        """`keep_unscored`: keep a question whose annotation does not have exactly 10 answers (see
        `has_all_answers`) without targets, as a test question (to predict its answer), instead of
        leaving it out (training and validation). Either way it is counted in `report`.
        `keep_text`: keep the question text and answers in `records` (`vqa attention` shows them);
        otherwise they are dropped once encoded."""
        if oov not in OOV_MODES:
            raise UserError(f"unknown oov mode {oov!r}; use one of {', '.join(OOV_MODES)}")
        if isinstance(features, FeatureStore):  # one file holds every image of the split
            features = ImageFeatures.resolve({g: features for g in records.groups}, records, split)
        self.features, self.renormalize = features, oov == "renormalize"
        self.report = EncodeReport(split, questions=len(records), not_all_answers_kept=keep_unscored)
        scored = np.zeros(len(records), bool)
        if records.annotated:
            scored = records.answers.counts() == ANSWERS_PER_QUESTION  # has_all_answers
            self.report.not_all_answers = records.question_id[~scored].tolist()
        keep = scored | (keep_unscored or not records.annotated)  # bool [Q]
        targets = _encode_answers(records, avocab, scored, keep, drop_hard_oov, self.report)
        rows = np.flatnonzero(keep)
        if not len(rows):
            self.report.refuse_empty()
        tokens = _encode_questions(records, rows, qvocab, max_question_len, self.report)
        self.question, self.question_len = tokens
        self.records = (records if keep_text else records.without_text()).select(rows)
        self.report.kept = len(rows)
        self.annotated = records.annotated
        self.answer, self.answer_idx, self.answer_count, self.top_count = (t[rows] for t in targets)
        self.question_id = self.records.question_id  # int64 [Q]
        self.image = self.records.image  # int32 [Q]: row of the split's image table

    @property
    def image_id(self) -> np.ndarray:
        """int64 [Q]: one integer per image, what batches are grouped by: the COCO image id, or the
        row of the split's image table where images are keyed by file name."""
        keys = self.records.image_keys
        return self.image.astype(np.int64) if keys.dtype == object else keys[self.image]

    def nbytes(self) -> int:
        """Bytes of the per-question arrays held for training and scoring."""
        arrays = (self.question, self.question_len, self.answer, self.answer_idx, self.answer_count)
        return sum(a.nbytes for a in (*arrays, self.top_count)) + self.records.nbytes()

    def __len__(self) -> int:
        return len(self.question_id)

    def __getitem__(self, i: int) -> tuple:
        return (
            self.question[i],
            self.question_len[i],
            self.features.get(int(self.image[i])),
            self.answer[i],
            self.answer_idx[i],
            self._weights(np.array([i]))[0],
            SCORE_OF_COUNT[self.answer_count[i]],
            self.question_id[i],
            self.records.question_type[i],
        )

    def layout(self, batch_size: int, image: bool = True) -> Layout:
        """The buffer layout of this dataset's batches of at most `batch_size` questions (`image` False:
        without the image, which data.preload: device gathers on the device)."""
        f = self.features
        regions = f.max_regions if image else 0
        return Layout(batch_size, self.question.shape[1], K, regions, f.dim, f.dtype.name, f.grid)

    def __getitems__(self, indices: list[int]) -> Batch:
        """A whole batch at once, collated (DataLoader calls this, then `as_batch`), in a fresh buffer of
        its size (shared memory in a DataLoader worker): `fill`."""
        shared = torch.utils.data.get_worker_info() is not None  # in a DataLoader worker
        return self.fill(indices, lambda b, n: fresh(self.layout(b), b, n, shared))

    def fill(self, indices: list[int], buffers: Callable[[int, int], dict], image: bool = True) -> Batch:
        """The Batch of questions `indices`, written into the fields `buffers(b, n)` gives for b questions
        with at most n regions (vqa.data.buffers: fresh or reused): the fields by array indexing, each
        image's features read straight into the batch (ImageFeatures.read_into: a file's rows in one
        sorted pass). Equal to the items stacked (tests/helpers.py: collate). `image` False: the image
        and mask are left empty (data.preload: device gathers them on the device)."""
        rows = np.asarray(indices, np.int64)
        images = self.image[rows]
        n = int(self.features.regions(images).max(initial=0)) if image else 0
        batch = Batch(**buffers(len(rows), n))
        out = {name: t.numpy() for name, t in zip(batch._fields, batch)}
        for name in ("question", "question_len", "answer", "answer_idx", "question_id"):
            out[name][:] = getattr(self, name)[rows]
        out["answer_weight"][:] = self._weights(rows)
        out["answer_score"][:] = SCORE_OF_COUNT[self.answer_count[rows]]
        out["question_type"][:] = self.records.question_type[rows]
        if image:
            stored = batch.image.transpose(1, 2) if self.features.grid else batch.image  # as in the files
            self.features.read_into(images, stored.numpy(), out["image_mask"])
        return batch

    def will_need(self, indices: list[int]) -> None:
        """A hint that a batch of these questions comes next: the kernel starts reading their grid rows
        (FeatureStore.will_need), and nothing waits for it."""
        self.features.will_need(self.image[indices])

    def _weights(self, rows: np.ndarray) -> np.ndarray:
        """float32 [B, K] soft-target weights: count / 10, or with oov=renormalize the in-vocabulary
        weights rescaled to sum to 1 (in float64, summed slot by slot, then rounded to float32)."""
        count = self.answer_count[rows]  # [B, K]
        if not self.renormalize:
            return WEIGHT_OF_COUNT[count]
        w = count / ANSWERS_PER_QUESTION  # float64 [B, K]
        total = np.cumsum(w, axis=1)[:, -1:]  # [B, 1]
        return np.divide(w, total, out=np.zeros_like(w), where=total > 0).astype(np.float32)


def _encode_answers(
    records: Records, avocab: AnswerVocab, scored, keep, drop_hard_oov: bool, report
) -> tuple:
    """(answer int32 [Q], idx int32 [Q, K], count uint8 [Q, K], top int8 [Q]) of every question, zero
    (answer -1) where it is not `scored`; `keep` loses the questions dropped, `report` counts them."""
    n = len(records)
    answer = np.full(n, -1, np.int32)
    idx, count = np.zeros((n, K), np.int32), np.zeros((n, K), np.uint8)
    top = np.zeros(n, np.int8)  # how many annotators gave the most common answer (0: not scored)
    if not scored.any():
        return answer, idx, count, top
    t = encode_targets(records.answers.select(scored), avocab, records.rules)
    rows = np.flatnonzero(scored)
    answer[rows], idx[rows], count[rows] = t.answer, t.idx, t.count
    top[rows] = t.top  # every answer counts, in the vocabulary or not (vqa.agreement's buckets)
    report.hard_answer_oov = int((t.answer < 0).sum())
    if drop_hard_oov:
        report.dropped_hard_oov = report.hard_answer_oov
        keep[rows[t.answer < 0]] = False
    trained = keep[rows]
    report.no_answer_in_vocab = int((count[rows][trained, 0] == 0).sum())
    lost = np.cumsum(t.oov_weight[trained])  # summed in order, question by question
    report.target_weight_lost = float(lost[-1] if len(lost) else 0.0) / max(1, n)
    return answer, idx, count, top


def _encode_questions(records: Records, rows: np.ndarray, qvocab: QuestionVocab, max_len: int, report):
    """(tokens int32 [R, T], lengths int32 [R]) of the questions at `rows`; `report` counts the truncated."""
    tokens = np.zeros((len(rows), max_len), np.int32)  # [Q, T]
    lengths = np.zeros(len(rows), np.int32)
    for j, i in enumerate(rows.tolist()):
        tokens[j], lengths[j], truncated = qvocab.encode(records.question[i], max_len)
        report.truncated += truncated
    return tokens, lengths
