"""Official normalization (docs/vqa-reference.md section 3), compared keys, vocabulary and targets, with
hand-worked values."""

import json
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vqa.data.answers import SCORE_OF_COUNT, WEIGHT_OF_COUNT, AnswerVocab, encode_targets, score_from_count
from vqa.data.keys import (
    ARTICLES,
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    Interner,
    clean_whitespace,
    compared_keys,
    intern,
    normalize_answer,
    process_digit_article,
    process_punctuation,
)
from vqa.data.sources.records import Answers
from vqa.errors import UserError

SHARED_TABLES = Path(__file__).resolve().parents[2] / "shared" / "docs" / "vqa-normalization-tables.json"


def test_tables_have_the_official_sizes():
    assert len(CONTRACTIONS) == 120
    assert len(PUNCTUATION) == len(set(PUNCTUATION)) == 21
    assert len(NUMBER_WORDS) == 12 and NUMBER_WORDS["none"] == "0"
    assert ARTICLES == {"a", "an", "the"}


@pytest.mark.skipif(not SHARED_TABLES.exists(), reason="shared reference tables not beside this checkout")
def test_tables_match_the_reference_json():
    t = json.loads(SHARED_TABLES.read_text())
    assert CONTRACTIONS == t["contractions"]
    assert list(PUNCTUATION) == t["punctuation"]
    assert NUMBER_WORDS == t["number_words"]
    assert sorted(ARTICLES) == sorted(t["articles"])


@pytest.mark.parametrize(
    "s, expected",
    [
        ("\tyes\n", "yes"),
        ("red\nwhite", "red white"),
        ("a\t\tb", "a  b"),  # each becomes a space; inner spaces are kept
        ("  yes  ", "yes"),
    ],
)
def test_clean_whitespace(s, expected):
    assert clean_whitespace(s) == expected


@pytest.mark.parametrize(
    "s, expected",
    [
        # periods: `(?!<=\d)(\.)(?!\d)` as written deletes every "." not followed by a digit
        ("5.", "5"),
        ("a.b.c", "abc"),
        ("3.5", "3.5"),
        (".5", ".5"),
        ("5.a", "5a"),  # a real lookbehind (?<!\d) would have kept this one
        ("1.5.", "1.5"),
        ("." * 32, ""),
        ("." * 33, "."),  # count=re.UNICODE=32: at most 32 periods go
        ("." * 40, "." * 8),
        ("a" + "." * 35, "a..."),
        # comma between digits: every punctuation character is deleted, not spaced
        ("1,000", "1000"),
        ("1,000 x-ray", "1000 xray"),
        ("1,2 a/b", "12 ab"),
        ("1,000.", "1000"),
        ("a,b", "a b"),
        ("a, b", "a b"),  # ", " occurs: "," deleted, the original space stays
        # `p + " "` / `" " + p` is checked on the ORIGINAL string and applies to every occurrence
        ("x-ray", "x ray"),
        ("a-b -c", "ab c"),
        ("a-b- c", "ab c"),
        ("x - ray", "x  ray"),
        ("what?", "what "),
        ("what ?", "what "),
        # never touched: apostrophes, colons and * # $ % & ^ ~ |
        ("don't", "don't"),
        ("10:30", "10:30"),
        ("*#$%&^~|", "*#$%&^~|"),
        ("a\n-b", "a\n b"),  # a newline is not a space for this rule
    ],
)
def test_process_punctuation(s, expected):
    assert process_punctuation(s) == expected


@pytest.mark.parametrize("p", PUNCTUATION)
def test_each_punctuation_character_is_spaced_or_deleted(p):
    if p == ",":
        assert process_punctuation("1,2") == "12"  # comma between digits
    else:
        assert process_punctuation(f"1{p}2") == "1 2"
    assert process_punctuation(f"1{p}2 {p}") == "12 "  # " " + p occurs: every p is deleted
    assert process_punctuation(f"x{p}y") == "x y"


@pytest.mark.parametrize(
    "s, expected",
    [
        ("none", "0"),
        ("None", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("Two dogs", "2 dogs"),
        ("the dog", "dog"),
        ("An Apple", "apple"),
        ("a", ""),
        ("the the", ""),
        ("a one", "1"),
        ("  red   car ", "red car"),
        ("dont", "don't"),
        ("Dont", "don't"),  # lowercased first, then mapped
        ("whats up", "what's up"),
        ("somebody'd", "somebodyd"),  # the official map has this one backwards; kept verbatim
        # keys with capitals never match: words are lowercased before the lookup
        ("Im", "im"),
        ("Ive", "ive"),
        ("Id've", "id've"),
        ("I'dve", "i'dve"),
    ],
)
def test_process_digit_article(s, expected):
    assert process_digit_article(s) == expected


def test_capitalized_contraction_keys_exist_but_are_dead():
    dead = [k for k in CONTRACTIONS if k != k.lower()]
    assert sorted(dead) == ["I'dve", "Id've", "Im", "Ive"]
    for k in dead:
        assert process_digit_article(k) == k.lower() != CONTRACTIONS[k]


@pytest.mark.parametrize(
    "s, expected",
    [
        ("Two dogs.", "2 dogs"),
        ("The T-shirt", "t shirt"),
        ("1,000 yen", "1000 yen"),
        ("None.", "0"),
        ("dont know?", "don't know"),
        ("?", ""),
    ],
)
def test_normalize_answer(s, expected):
    assert normalize_answer(s) == expected


def keyed(answers: list[str], rules: str = "current") -> list[str]:
    """The compared strings of one question's answers (vqa.data.keys.compared_keys)."""
    table = Interner()
    keys, _ = compared_keys(table, table.codes(answers).reshape(1, -1), rules)
    return [table.strings[c] for c in keys[0].tolist()]


def test_compared_keys_current_rules():
    assert keyed(["Yes"] * 10) == ["Yes"] * 10  # unanimous: exact, case-sensitive
    assert keyed([" Yes\n"] * 9 + ["Yes"]) == ["Yes"] * 10  # unanimous after cleaning: not normalized
    assert keyed(["Yes", "yes."]) == ["yes", "yes"]
    assert keyed(["two", "2", "the dog\t"]) == ["2", "2", "dog"]


def test_compared_keys_legacy_and_vizwiz_rules():
    assert keyed([" Yes\n"] * 10, "legacy") == [" Yes\n"] * 10  # never cleaned
    assert keyed(["Two", "two.", "x-ray"], "legacy") == ["Two", "two", "x ray"]  # punctuation only
    assert keyed(["Two", " two.", "x-ray"], "vizwiz") == ["Two", " two.", "x-ray"]  # as released
    with pytest.raises(ValueError, match="unknown rules"):
        keyed(["a"], "official")


def test_intern_numbers_in_order_of_first_appearance():
    codes, table = intern(["b", "a", None, "b", "c"])
    assert codes.tolist() == [0, 1, -1, 0, 2] and table == ["b", "a", "c"]
    assert codes.dtype == np.int32 and intern([], np.int8)[0].dtype == np.int8


def _brute_force(k: int, n: int) -> Fraction:
    answers = ["p"] * k + ["q"] * (n - k)
    total = Fraction(0)
    for i in range(n):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == "p")
        total += min(Fraction(1), Fraction(matches, 3))
    return total / n


def test_score_from_count_hand_values():
    assert [score_from_count(k) for k in range(11)] == [0.0, 0.3, 0.6, 0.9] + [1.0] * 7


@pytest.mark.parametrize("n", range(1, 13))
def test_score_from_count_is_the_leave_one_out_average(n):
    for k in range(n + 1):
        assert score_from_count(k, n) == float(_brute_force(k, n))


def test_score_from_count_rejects_impossible_counts():
    with pytest.raises(ValueError):
        score_from_count(11, 10)
    with pytest.raises(ValueError):
        score_from_count(0, 0)


def test_vocab_normalizes_counts_and_filters():
    many_periods = "b" + "." * 40  # -> "b" + 8 periods, which a second pass shortens: not a fixed point
    mcas = ["yes", "Yes", "yes.", "no", "no", "two", "2", "the dog", "dog", "cat", "?"] + [many_periods] * 5
    vocab = AnswerVocab.from_answers(Counter(mcas), max_answers=10)
    # counts: yes 3, 2 2, dog 2, no 2, cat 1; "" and the non-fixed point are dropped; ties by string
    assert vocab.itos == ["yes", "2", "dog", "no", "cat"]
    assert normalize_answer(many_periods) == "b" + "." * 8 and normalize_answer("b" + "." * 8) == "b"
    assert AnswerVocab.from_answers(Counter(mcas), max_answers=2).itos == ["yes", "2"]
    assert vocab.index("dog") == 2 and vocab.index("the dog") == -1
    assert len(vocab) == 5
    again = AnswerVocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.itos == vocab.itos and again.stoi == vocab.stoi
    with pytest.raises(UserError):
        AnswerVocab.from_dict({"words": []})


def _targets(questions: list[tuple[str, list[str]]], vocab: AnswerVocab, rules: str = "current"):
    """encode_targets of (multiple-choice answer, answers) questions: what training runs."""
    return encode_targets(Answers.build([a for _, a in questions], [m for m, _ in questions]), vocab, rules)


def test_targets_soft_weights_scores_and_oov():
    vocab = AnswerVocab(["yes", "no", "2"])
    t = _targets([("yes", ["yes"] * 6 + ["Yes"] + ["no"] * 2 + ["maybe"])], vocab)  # "Yes" -> "yes"
    assert t.answer.tolist() == [0] and t.top.tolist() == [7]
    assert t.idx[0, :2].tolist() == [0, 1] and t.count[0].tolist() == [7, 2] + [0] * 8
    assert WEIGHT_OF_COUNT[t.count[0, :2]].tolist() == pytest.approx([0.7, 0.2])
    assert SCORE_OF_COUNT[t.count[0]].tolist() == pytest.approx([1.0, 0.6] + [0.0] * 8)
    assert t.oov_weight.tolist() == pytest.approx([0.1])


def test_score_and_weight_tables_hand_values():
    assert SCORE_OF_COUNT.tolist() == pytest.approx([0, 0.3, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1])
    assert WEIGHT_OF_COUNT.tolist() == pytest.approx([c / 10 for c in range(11)])
    assert SCORE_OF_COUNT.dtype == WEIGHT_OF_COUNT.dtype == np.float32


def test_targets_of_a_unanimous_question_are_exact():
    vocab = AnswerVocab(["yes", "2"])
    # ten "Yes": the evaluator compares exactly, so "yes" would score 0 and "Yes" is out of vocabulary
    t = _targets([("Yes", ["Yes"] * 10), ("two", ["two"] * 3 + ["2"] + ["three"] * 6)], vocab)
    assert t.answer[0] == -1 and not t.count[0].any() and t.oov_weight[0] == 1.0 and t.top[0] == 10
    # "two" among other answers normalizes to "2"; the most common answer is keyed the same way
    assert (t.answer[1], t.idx[1, 0], t.count[1, 0], t.count[1, 1]) == (1, 1, 4, 0)
    assert t.oov_weight[1] == pytest.approx(0.6) and t.top[1] == 6


def test_targets_need_ten_answers():
    with pytest.raises(ValueError, match="exactly 10"):
        _targets([("a", ["a"] * 9)], AnswerVocab(["a"]))
