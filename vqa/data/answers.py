"""Official VQA answer normalization, the answer vocabulary and per-question targets.

The normalization reproduces the official evaluator (GT-Vision-Lab/VQA, `vqaEval.py`) rule for rule,
quirks included (docs/vqa-reference.md section 3). Its tables are embedded below, copied verbatim from
the evaluator (120 contractions, 12 number words, 3 articles, 21 punctuation characters), so the package
needs no data file.

Two rule sets exist. Current rules (the evaluation server since 2021): ground truth and prediction are
whitespace-cleaned; if the ground-truth answers of a question are not all identical, both are normalized
(punctuation, then digits/articles); otherwise matching is exact and case-sensitive. Legacy rules (before
March 2021, vendored by OpenVQA): the prediction is always cleaned and normalized; ground truth is never
cleaned, only punctuation-processed, and only when not unanimous.

Training targets and the closed-form accuracy follow the current rules: `gt_keys` gives the strings the
evaluator compares, and the vocabulary holds only fixed points of `normalize_answer`, so a predicted vocab
string compares the same in both paths (see `AnswerVocab.build`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vqa.errors import UserError

if TYPE_CHECKING:
    from vqa.data.sources.records import Answers

# The official answer types of VQA v1 / v2 (annotation key `answer_type`), in the evaluator's order.
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")


def answer_type_key(answer_type: str) -> str:
    """'yes/no' -> 'yes_no': the suffix of the `val/accuracy_*` scalars and metrics.jsonl keys."""
    return answer_type.replace("/", "_").replace(" ", "_")


# --- The official evaluator's tables (verbatim; tests check them against docs/vqa-normalization-tables.json).
# fmt: off
CONTRACTIONS: dict[str, str] = {
    "'ow'sat": "'ow's'at", "'ows'at": "'ow's'at", "I'dve": "I'd've", "Id've": "I'd've", "Im": "I'm",
    "Ive": "I've", "aint": "ain't", "arent": "aren't", "cant": "can't", "couldn'tve": "couldn't've",
    "couldnt": "couldn't", "couldnt've": "couldn't've", "couldve": "could've", "didnt": "didn't",
    "doesnt": "doesn't", "dont": "don't", "hadn'tve": "hadn't've", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "he'dve": "he'd've", "hed": "he'd",
    "hed've": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "isnt": "isn't", "it'dve": "it'd've", "itd": "it'd", "itd've": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightn'tve": "mightn't've", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "shant": "shan't", "she'dve": "she'd've", "she's": "she's",
    "shed've": "she'd've", "shouldn'tve": "shouldn't've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldve": "should've", "somebody'd": "somebodyd",
    "somebody'dve": "somebody'd've", "somebodyd've": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someone'dve": "someone'd've", "someoned": "someone'd",
    "someoned've": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "something'dve": "something'd've", "somethingd": "something'd", "somethingd've": "something'd've",
    "somethingll": "something'll", "thats": "that's", "there'dve": "there'd've", "thered": "there'd",
    "thered've": "there'd've", "therere": "there're", "theres": "there's", "they'dve": "they'd've",
    "theyd": "they'd", "theyd've": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "we'dve": "we'd've", "wed've": "we'd've",
    "werent": "weren't", "weve": "we've", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "who'dve": "who'd've", "whod": "who'd", "whod've": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldn'tve": "wouldn't've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldve": "would've", "y'all'dve": "y'all'd've",
    "y'alld've": "y'all'd've", "y'allll": "y'all'll", "yall": "y'all", "yall'd've": "y'all'd've",
    "yall'll": "y'all'll", "you'dve": "you'd've", "youd": "you'd", "youd've": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# As written in the evaluator: `(?!<=\d)` was meant as a lookbehind `(?<!\d)` but is a lookahead that
# never fails at a ".", so in effect every "." not followed by a digit is deleted ("5." -> "5", "5.a" -> "5a").
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# The evaluator calls `periodStrip.sub("", text, re.UNICODE)`: the flag lands in the `count` slot, so at most
# re.UNICODE == 32 periods are deleted per string.
PERIOD_STRIP_COUNT = int(re.UNICODE)
# fmt: on


def clean_whitespace(s: str) -> str:
    """Current rules step 1: newlines and tabs become spaces, then surrounding whitespace is stripped."""
    return s.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(s: str) -> str:
    """The evaluator's processPunctuation, literally.

    Each of the 21 characters is deleted when `p + " "` or `" " + p` occurs in the ORIGINAL string, or when
    a comma between digits occurs anywhere in it (then every punctuation character is deleted); otherwise it
    becomes a space. Then up to 32 periods not followed by a digit are deleted. Apostrophes, colons and
    `* # $ % & ^ ~ |` are never touched.
    """
    out = s
    comma_between_digits = COMMA_STRIP.search(s) is not None
    for p in PUNCTUATION:
        if p + " " in s or " " + p in s or comma_between_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(s: str) -> str:
    """The evaluator's processDigitArticle: lowercase, number words to digits ("none" -> "0"), drop articles,
    expand contractions, join with single spaces. Contraction keys with capitals ("Im", "Ive", "Id've",
    "I'dve") never match because words are lowercased first."""
    words = [NUMBER_WORDS.get(w, w) for w in s.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(s: str) -> str:
    """What the evaluator applies to a non-unanimous question's answers and to the prediction."""
    return process_digit_article(process_punctuation(s))


def gt_keys(answers: list[str], legacy: bool = False) -> list[str]:
    """The strings the evaluator compares for one question's ground-truth answers.

    Current rules: whitespace-cleaned; normalized if the cleaned answers are not all identical, else left
    exact (case-sensitive). Legacy rules: not cleaned; punctuation-processed only, and only when the raw
    answers are not all identical.
    """
    if legacy:
        return [process_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    cleaned = [clean_whitespace(a) for a in answers]
    return [normalize_answer(a) for a in cleaned] if len(set(cleaned)) > 1 else cleaned


def prediction_key(answer: str, unanimous: bool, legacy: bool = False) -> str:
    """The string the evaluator compares for a prediction; `unanimous` is whether the question's ground
    truth is unanimous (as decided inside `gt_keys`). Legacy rules always normalize the prediction."""
    answer = clean_whitespace(answer)
    return normalize_answer(answer) if legacy or not unanimous else answer


def score_from_count(k: int, n: int = 10) -> float:
    """Official accuracy of a prediction equal to k of n distinct ground-truth answers (section 2).

    Leave-one-out: each of the k matching answers sees k - 1 matches among the others, each of the n - k
    others sees k; the score is the mean over the n of min(1, matches / 3): 0, .3, .6, .9, 1 for n = 10.
    Returned as the double nearest the exact rational; the evaluator's own float sum may differ in the last
    bit depending on where the matches sit (vqa.scoring.official_scores reproduces that bit exactly).
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    thirds = k * min(3, k - 1) + (n - k) * min(3, k) if k else 0  # sum of min(3, matches), in thirds
    return thirds / (3 * n)


class AnswerVocab:
    """Answer strings <-> class indices. Every entry is a non-empty fixed point of `normalize_answer`."""

    def __init__(self, itos: list[str]):
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("answer vocabulary has duplicate entries")

    @classmethod
    def build(cls, annotations: list[dict], max_answers: int) -> AnswerVocab:
        """The `max_answers` most frequent normalized `multiple_choice_answer`s of the training annotations,
        ties broken by string.

        Only fixed points of `normalize_answer` are kept. Why: the evaluator compares the prediction after
        normalizing it (non-unanimous questions), while the training loop compares class indices built from
        `gt_keys`. A vocab string s with normalize_answer(s) != s (e.g. a string with more than 32 periods,
        which a second pass shortens further) would be decoded to s, normalized again by the evaluator and
        matched against different keys than its index was: the two scores would disagree. For a fixed point
        s, clean_whitespace(s) == s as well, so both paths compare the same string against the same keys.
        The empty string (e.g. an answer "?") is dropped too: it is no answer to predict.
        """
        return cls.from_answers(Counter(a["multiple_choice_answer"] for a in annotations), max_answers)

    @classmethod
    def from_answers(cls, counts: Counter, max_answers: int) -> AnswerVocab:
        """`build` from {multiple_choice_answer: number of questions} (the compact records' form)."""
        normalized: Counter = Counter()
        for a, n in counts.items():
            normalized[normalize_answer(clean_whitespace(a))] += n
        kept = [s for s in normalized if s and normalize_answer(s) == s]
        kept.sort(key=lambda s: (-normalized[s], s))
        return cls(kept[:max_answers])

    def __len__(self) -> int:
        return len(self.itos)

    def index(self, s: str) -> int:
        """Class index of `s`, -1 when it is not in the vocabulary."""
        return self.stoi.get(s, -1)

    def to_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict) -> AnswerVocab:
        itos = d.get("itos") if isinstance(d, dict) else None
        if not isinstance(itos, list) or not all(isinstance(s, str) for s in itos):
            raise UserError("answer vocabulary: key 'itos' must be a list of strings; rebuild the vocabulary")
        return cls(itos)


# Every question of the official VQA v1 / v2 annotations has exactly 10 human answers (OK-VQA lists its
# 5 answers twice; VizWiz has 10): the 0 / .3 / .6 / .9 / 1 scores and the K <= 10 target slots assume it.
ANSWERS_PER_QUESTION = 10


def has_all_answers(annotation: dict) -> bool:
    """Whether an annotation holds exactly ANSWERS_PER_QUESTION answers. The rule, the same for training,
    validation and `vqa eval`: a question without them is left out of training and of scoring alike,
    counted and reported (vqa.data.dataset.EncodeReport, vqa.evaluate), never an error or a traceback."""
    answers = annotation.get("answers")
    return isinstance(answers, list) and len(answers) == ANSWERS_PER_QUESTION


@dataclass
class Targets:
    """Per-question targets (the Batch contract of DESIGN.md, before padding)."""

    answer: int  # vocab index of the most common answer, -1 when outside the vocabulary
    answer_idx: list[int]  # unique in-vocabulary ground-truth keys, in order of first appearance
    answer_weight: list[float]  # count / n (n = 10 in VQA): the paper's soft targets
    answer_score: list[float]  # score_from_count(count, n): the official per-answer score
    oov_weight: float  # count / n summed over the keys outside the vocabulary


OOV_MODES = ("drop", "renormalize")


def build_targets(annotation: dict, vocab: AnswerVocab, oov: str = "drop") -> Targets:
    """Hard, soft and score targets of one annotation, keyed like the evaluator (`gt_keys`, current rules).

    With these keys, `sum(answer_score[answer_idx == pred])` equals the official accuracy of the decoded
    prediction `vocab.itos[pred]` whenever the ground-truth answers are distinct (unique answer_id, as in
    every VQA release). oov="drop" keeps the weights as count / n, so they sum to less than 1 when some
    answers are outside the vocabulary (the authors' code); "renormalize" rescales the in-vocabulary weights
    to sum to 1 (when any is in the vocabulary). Scores and oov_weight are never rescaled.
    """
    if oov not in OOV_MODES:
        raise UserError(f"unknown oov mode {oov!r}; use one of {', '.join(OOV_MODES)}")
    raw = [a["answer"] for a in annotation["answers"]]
    keys = gt_keys(raw)
    n = len(keys)
    unanimous = len(set(keys)) <= 1
    answer = vocab.index(prediction_key(annotation["multiple_choice_answer"], unanimous))
    idx: list[int] = []
    weight: list[float] = []
    score: list[float] = []
    oov_weight = 0.0
    for key, count in Counter(keys).items():  # insertion order = first appearance
        i = vocab.index(key)
        if i < 0:
            oov_weight += count / n
            continue
        idx.append(i)
        weight.append(count / n)
        score.append(score_from_count(count, n))
    total = sum(weight)
    if oov == "renormalize" and total > 0:
        weight = [w / total for w in weight]
    return Targets(answer, idx, weight, score, oov_weight)


# float32 weight and official score of an answer given by c of the 10 annotators, c = 0 .. 10
# (the values build_targets stores: count / n and score_from_count, rounded to float32 once)
WEIGHT_OF_COUNT = np.array([c / ANSWERS_PER_QUESTION for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)
SCORE_OF_COUNT = np.array([score_from_count(c) for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)


@dataclass
class TargetArrays:
    """`build_targets` of many questions at once, compact: weights and scores follow from the counts."""

    answer: np.ndarray  # int32 [n]: vocab index of the most common answer, -1 outside the vocabulary
    idx: np.ndarray  # int32 [n, K]: unique in-vocabulary keys, in order of first appearance (0 = padding)
    count: np.ndarray  # uint8 [n, K]: how many of the 10 answers gave each (0 = padding)
    oov_weight: np.ndarray  # float64 [n]: count / 10 summed over the keys outside the vocabulary


def encode_targets(answers: Answers, vocab: AnswerVocab, rules: str = "current") -> TargetArrays:
    """Targets of every question of `answers` (each with exactly 10 answers), equal to `build_targets`
    on its annotation question by question, computed on interned strings: every distinct string is
    cleaned and normalized once and the counting is array work.

    rules="current" keys the answers as `gt_keys` does (the VQA evaluator); "vizwiz" keys them as
    released (VizWiz's evaluator normalizes only the prediction, vqa/data/sources/vizwiz.py)."""
    n_q, n = len(answers.start) - 1, ANSWERS_PER_QUESTION
    if not np.all(answers.counts() == n):
        raise ValueError(f"encode_targets needs exactly {n} answers per question")
    table = _Table()
    strings, ids, best = answers.strings, answers.ids.astype(np.int64), answers.best.astype(np.int64)
    if rules == "vizwiz":  # ground truth as released; a prediction is one of its strings or nothing
        codes = table.codes(strings)
        key, pred = codes[ids], np.where(best >= 0, codes[best], -1)
    else:
        clean = table.codes([clean_whitespace(s) for s in strings])  # distinct string -> cleaned key
        key = clean[ids].reshape(n_q, n)  # [Q, 10]
        split = (key != key[:, :1]).any(1)  # not unanimous once cleaned: normalize (gt_keys)
        key = table.normalized(key, split)
        unanimous = (key == key[:, :1]).all(1)  # prediction_key's flag, as build_targets computes it
        cleaned_best = np.where(best >= 0, clean[best], 0)
        pred = np.where(unanimous, cleaned_best, table.normalized(cleaned_best, ~unanimous))
        pred = np.where(best >= 0, pred, -1)
        key = key.reshape(-1)
    in_vocab = np.fromiter((vocab.index(s) for s in table.strings), np.int64, len(table.strings))
    answer = np.where(pred >= 0, in_vocab[pred], -1).astype(np.int32)
    row = np.repeat(np.arange(n_q), n)
    code = row * len(table.strings) + key  # one per (question, key)
    unique, first, count = np.unique(code, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")  # question by question, keys in order of first appearance
    unique, count = unique[order], count[order]
    r, v = unique // len(table.strings), in_vocab[unique % len(table.strings)]
    oov_weight = np.zeros(n_q)
    for q, c in zip(r[v < 0].tolist(), count[v < 0].tolist()):  # in build_targets' order of additions
        oov_weight[q] += c / n
    r, v, count = r[v >= 0], v[v >= 0], count[v >= 0]
    slot = np.arange(len(r)) - np.searchsorted(r, r)
    idx, counts = np.zeros((n_q, n), np.int32), np.zeros((n_q, n), np.uint8)
    idx[r, slot], counts[r, slot] = v, count
    return TargetArrays(answer, idx, counts, oov_weight)


class _Table:
    """Interned key strings for encode_targets: codes of strings, normalized forms of codes."""

    def __init__(self):
        self.strings: list[str] = []
        self.code: dict[str, int] = {}

    def _add(self, s: str) -> int:
        if s not in self.code:
            self.code[s] = len(self.strings)
            self.strings.append(s)
        return self.code[s]

    def codes(self, strings: list[str]) -> np.ndarray:
        return np.fromiter(map(self._add, strings), np.int64, len(strings))

    def normalized(self, codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """codes with every entry of the selected rows replaced by the code of its normalize_answer
        form (each distinct string normalized once); other entries are returned as they are."""
        needed = np.unique(codes[rows])
        out = np.zeros(len(self.strings), np.int64)
        out[needed] = self.codes([normalize_answer(self.strings[c]) for c in needed.tolist()])
        return np.where(rows.reshape(-1, *([1] * (codes.ndim - 1))), out[codes], codes)
