"""The strings the official VQA evaluator compares, as integer keys: its normalization, interning, and
the compared keys of a question's answers under each rule set. One implementation for the targets
(vqa/data/answers.py), the agreement buckets (vqa/agreement.py), `vqa eval` (vqa/scoring.py) and the
synthetic statistics (vqa/synth/stats.py).

The normalization reproduces the official evaluator (GT-Vision-Lab/VQA, `vqaEval.py`) rule for rule,
quirks included (docs/vqa-reference.md section 3). Its tables are embedded below, copied verbatim from
the evaluator (120 contractions, 12 number words, 3 articles, 21 punctuation characters), so the package
needs no data file; tests/reference_eval.py holds the evaluator's functions literally and the tests
compare the two.

Rule sets (`RULES`):

    current  the evaluation server since 2021: ground truth and prediction are whitespace-cleaned; if a
             question's cleaned answers are not all identical, both are normalized (punctuation, then
             digits / articles); otherwise matching is exact and case-sensitive
    legacy   before March 2021 (vendored by OpenVQA): the prediction is always cleaned and normalized;
             ground truth is never cleaned, only punctuation-processed, and only when not unanimous
    vizwiz   VizWiz's evaluator: the prediction cleaned and normalized, ground truth as released

Strings become int32 codes (`intern`, `Interner`): every distinct string is cleaned and normalized once,
and the per-answer work is array work on codes (equal codes = equal strings).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np

RULES: tuple[str, ...] = ("current", "legacy", "vizwiz")

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


# The characters processPunctuation acts on: its 21 and the period.
_TOUCHED = re.compile("[" + re.escape("".join(PUNCTUATION) + ".") + "]")


def process_punctuation(s: str) -> str:
    """The evaluator's processPunctuation.

    Each of the 21 characters is deleted when `p + " "` or `" " + p` occurs in the ORIGINAL string, or when
    a comma between digits occurs anywhere in it (then every punctuation character is deleted); otherwise it
    becomes a space. Then up to 32 periods not followed by a digit are deleted. Apostrophes, colons and
    `* # $ % & ^ ~ |` are never touched.

    Only the characters present are handled (about 3x faster than the evaluator's 21 replaces): for an
    absent one its replace is a no-op, and whether a character is deleted or spaced depends only on the
    original string, so the order of the replaces does not matter.
    """
    present = set(_TOUCHED.findall(s))
    if not present:
        return s
    out = s
    every = COMMA_STRIP.search(s) is not None  # a comma between digits: every character is deleted
    for p in present - {"."}:
        out = out.replace(p, "" if every or p + " " in s or " " + p in s else " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT) if "." in present else out


def process_digit_article(s: str) -> str:
    """The evaluator's processDigitArticle: lowercase, number words to digits ("none" -> "0"), drop articles,
    expand contractions, join with single spaces. Contraction keys with capitals ("Im", "Ive", "Id've",
    "I'dve") never match because words are lowercased first."""
    words = [NUMBER_WORDS.get(w, w) for w in s.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(s: str) -> str:
    """What the evaluator applies to a non-unanimous question's answers and to the prediction."""
    return process_digit_article(process_punctuation(s))


class Interner(dict):
    """str -> int code, numbered 0, 1, ... in order of first appearance; `strings[code]` is the string.
    None is never added: its code is -1."""

    def __init__(self, strings: Iterable[str] = ()):
        super().__init__()
        self.strings: list[str] = []
        self.codes(strings)

    def __missing__(self, s: str) -> int:
        if s is None:
            return -1
        code = self[s] = len(self.strings)
        self.strings.append(s)
        return code

    def codes(self, strings: Iterable, n: int = -1, dtype=np.int32) -> np.ndarray:
        """The codes of `strings` (n of them, when known), adding the new ones."""
        return np.fromiter(map(self.__getitem__, strings), dtype, n)


def intern(values: list, dtype=np.int32) -> tuple[np.ndarray, list]:
    """(codes [n], table): table[codes[i]] == values[i], the table in order of first appearance; None
    becomes code -1."""
    table = Interner()
    return table.codes(values, len(values), dtype), table.strings


def remap(table: Interner, fn: Callable[[str], str], codes: np.ndarray, rows: np.ndarray | None = None):
    """`codes` (>= 0, into `table`; [Q] or [Q, n]) with every entry of the selected rows (bool [Q]; default
    all) replaced by the code of fn(its string), fn run once per distinct code; other rows as they are."""
    selected = codes if rows is None else codes[rows]
    mark = np.zeros(len(table.strings), bool)
    mark[selected] = True
    needed = np.flatnonzero(mark).tolist()
    image = np.zeros(len(table.strings), np.int32)
    strings = table.strings
    image[needed] = table.codes((fn(strings[c]) for c in needed), len(needed))
    if rows is None:
        return image[codes]
    return np.where(rows.reshape(-1, *[1] * (codes.ndim - 1)), image[codes], codes)


def unanimous(keys: np.ndarray) -> np.ndarray:
    """bool [Q]: whether each row of keys [Q, n] holds one key only."""
    return (keys == keys[:, :1]).all(1)


def compared_keys(
    table: Interner, codes: np.ndarray, rules: str = "current"
) -> tuple[np.ndarray, np.ndarray]:
    """The keys the evaluator of `rules` compares for answers `codes` [Q, n] (interned in `table`, which
    receives the cleaned and normalized strings): (keys int32 [Q, n], normalized bool [Q]: whether the
    question's prediction is normalized before it is compared)."""
    if rules == "current":  # cleaned; normalized unless the cleaned answers are unanimous
        clean = remap(table, clean_whitespace, codes)
        split = ~unanimous(clean)
        return remap(table, normalize_answer, clean, split), split
    always = np.ones(len(codes), bool)
    if rules == "legacy":  # as given; punctuation only, unless unanimous
        return remap(table, process_punctuation, codes, ~unanimous(codes)), always
    if rules == "vizwiz":  # as released
        return np.asarray(codes, np.int32), always
    raise ValueError(f"unknown rules {rules!r}; use one of {', '.join(RULES)}")


def prediction_keys(table: Interner, codes: np.ndarray, normalized: np.ndarray) -> np.ndarray:
    """The keys of predictions `codes` [Q] (>= 0, interned in `table`): whitespace-cleaned, and normalized
    where `normalized` [Q] says so."""
    return remap(table, normalize_answer, remap(table, clean_whitespace, codes), normalized)


def most_common_count(keys: np.ndarray) -> np.ndarray:
    """int8 [Q]: per row of keys [Q, n], how many equal the most common one (the longest run of the
    sorted row)."""
    keys = np.sort(np.asarray(keys), axis=1)
    top = np.ones(len(keys), np.int8) if keys.shape[1] else np.zeros(len(keys), np.int8)
    run = top.copy()
    for j in range(1, keys.shape[1]):
        run = np.where(keys[:, j] == keys[:, j - 1], run + 1, 1).astype(np.int8)
        np.maximum(top, run, out=top)
    return top
