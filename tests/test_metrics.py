"""Official accuracy: closed form vs exact string path vs the literal official loop (tests/reference_eval.py),
hand-worked cases."""

import copy
import random
import string
from collections import Counter

import numpy as np
import pytest
import reference_eval
import torch
from reference_eval import build_targets, gt_keys, official_scores_reference, prediction_key

from vqa.agreement import (
    AGREEMENT_BUCKETS,
    accuracy_by_agreement,
    bucket_label,
    bucket_names,
    bucket_of,
    top_counts,
)
from vqa.data.answers import AnswerVocab, score_from_count
from vqa.data.keys import normalize_answer, process_punctuation
from vqa.metrics import batch_accuracy, percent_scores, summarize, summarize_scores
from vqa.scoring import AnswerKeys, distinct_small_ids, official_scores

# Strings that exercise every normalization rule, several of which collide after normalization.
TRICKY = [
    "yes", "Yes", "YES", "yes.", " yes\n", "no", "No", "two", "2", "Two", "none", "0", "zero", "the dog",
    "dog", "a dog", "Dog", "x-ray", "x ray", "x - ray", "1,000", "1000", "1,000.", "3.5", "5.", "5", "a.b.c",
    "abc", "dont", "don't", "Dont", "Im", "im", "I'm", "what?", "what", "red/white", "red white", "red, white",
    "\tred white", "10:30", "." * 40, "a" + "." * 35, "?", "", "somebody'd", "somebodyd", "Ive", "ive",
]  # fmt: skip


def _random_question(rng: random.Random, n: int = 10) -> list[str]:
    candidates = rng.sample(TRICKY, rng.randint(1, 4))
    weights = [rng.random() ** 2 + 0.01 for _ in candidates]
    return rng.choices(candidates, weights, k=n)


def _random_set(seed: int, questions: int = 400, dicts: bool = False):
    rng = random.Random(seed)
    gts, preds = {}, {}
    for qid in range(questions):
        answers = _random_question(rng, 10 if rng.random() < 0.9 else rng.randint(1, 12))
        if dicts:
            style = rng.random()
            ids = rng.sample(range(1, 100), len(answers))
            if style < 0.5:  # official: unique answer ids
                answers = [
                    {"answer_id": i, "answer": a, "answer_confidence": "yes"} for i, a in zip(ids, answers)
                ]
            elif style < 0.8:  # no answer ids: equal dicts are left out together by the official loop
                answers = [{"answer": a, "answer_confidence": rng.choice(["yes", "no"])} for a in answers]
            else:  # repeated ids
                answers = [{"answer_id": rng.randint(1, 3), "answer": a} for a in answers]
        gts[qid] = answers
        preds[qid] = rng.choice(TRICKY)
    return gts, preds


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("dicts", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_equals_official_loop_exactly(seed, dicts, legacy):
    gts, preds = _random_set(seed, dicts=dicts)
    fast = official_scores(gts, preds, legacy=legacy)
    ref = official_scores_reference(gts, preds, legacy=legacy)
    assert fast == ref  # bit for bit, including the float sum order
    assert len({round(s, 6) for s in fast.values()}) >= 4  # the random set is not degenerate


@pytest.mark.parametrize("legacy", [False, True])
def test_distinct_answers_score_by_count(legacy):
    gts, preds = _random_set(3)
    fast = official_scores(gts, preds, legacy=legacy)
    for qid, answers in gts.items():
        keys = gt_keys(answers, legacy=legacy)
        k = keys.count(prediction_key(preds[qid], len(set(keys)) <= 1, legacy=legacy))
        assert fast[qid] == pytest.approx(score_from_count(k, len(keys)), abs=1e-15)


def test_unanimous_ground_truth_is_case_sensitive():
    assert official_scores({1: ["Yes"] * 10}, {1: "yes"}) == {1: 0.0}
    assert official_scores({1: ["Yes"] * 10}, {1: "Yes"}) == {1: 1.0}
    assert official_scores({1: ["Yes"] * 9 + ["yes"]}, {1: "YES"}) == {1: 1.0}  # not unanimous: normalized
    assert official_scores({1: ["yes\n"] * 10}, {1: "\tyes "}) == {1: 1.0}  # cleaned, then exact


def test_answers_are_distinct_by_answer_id():
    cats_with_ids = [{"answer_id": i, "answer": "cat"} for i in (1, 2, 3)]
    cats_without = [{"answer": "cat"} for _ in range(3)]
    dogs = [{"answer_id": i, "answer": "dog"} for i in range(4, 11)]
    for score in (official_scores, official_scores_reference):
        # 3 matches among 10 distinct answers: 3 x 2/3 + 7 x 1 = 9, / 10
        assert score({1: cats_with_ids + dogs}, {1: "cat"}) == {1: 0.9}
        assert score({1: ["cat"] * 3 + ["dog"] * 7}, {1: "cat"}) == {1: 0.9}
        # equal dicts are left out together: each cat sees 0 other cats, each dog sees 3: 7 x 1 / 10
        assert score({1: cats_without + dogs}, {1: "cat"}) == {1: 0.7}


def test_scoring_does_not_mutate_and_is_repeatable():
    answers = [{"answer_id": i + 1, "answer": a} for i, a in enumerate(["Yes"] * 5 + ["yes"] * 5)]
    gts, preds = {1: answers}, {1: "YES"}
    before = copy.deepcopy(gts)
    assert official_scores(gts, preds) == official_scores(gts, preds) == {1: 1.0}
    assert official_scores_reference(gts, preds) == official_scores_reference(gts, preds) == {1: 1.0}
    assert gts == before
    # The official code normalizes in place: the second pass sees ten "yes", unanimous, and no longer
    # normalizes the prediction "YES".
    assert official_scores_reference(gts, preds, in_place=True) == {1: 1.0}
    assert official_scores_reference(gts, preds, in_place=True) == {1: 0.0}
    assert gts != before


ADVERSARIAL = {
    # qid: (answers, prediction, answer type, current score, legacy score)
    1: (["Yes"] * 10, "Yes", "yes/no", 1.0, 0.0),  # legacy normalizes the prediction to "yes"
    2: (["red\n"] * 4 + ["blue"] * 6, "red", "other", 1.0, 0.0),  # legacy never cleans ground truth
    3: (["two"] * 3 + ["2"] * 2 + ["three"] * 5, "2", "number", 1.0, 0.6),  # legacy: no number words in gt
    4: (["2"] * 10, "two", "number", 0.0, 1.0),  # current: unanimous, exact "two" != "2"
}


@pytest.mark.parametrize("legacy", [False, True])
def test_legacy_and_current_rules_differ_on_adversarial_answers(legacy):
    gts = {q: v[0] for q, v in ADVERSARIAL.items()}
    preds = {q: v[1] for q, v in ADVERSARIAL.items()}
    expected = {q: v[4 if legacy else 3] for q, v in ADVERSARIAL.items()}
    fast = official_scores(gts, preds, legacy=legacy)
    assert fast == official_scores_reference(gts, preds, legacy=legacy)
    # the official float sum gives 0.6000000000000001 for matches at positions 4-5: compare to 1e-12
    assert fast == pytest.approx(expected, abs=1e-12)


def test_missing_prediction_is_an_error():
    with pytest.raises(ValueError, match="no prediction"):
        official_scores({1: ["a"], 2: ["b"]}, {1: "a"})


def test_batch_accuracy_hand_case():
    pred = torch.tensor([0, 2, 5, 4])
    answer_idx = torch.tensor([[3, 0, 0], [2, 1, 0], [4, 5, 0], [4, 0, 0]])
    answer_score = torch.tensor([[1.0, 0, 0], [0.6, 0.9, 0], [0.3, 0.6, 0], [1.0, 0, 0]])
    # row 0: class 0 meets only padding (index 0, score 0)
    assert batch_accuracy(pred, answer_idx, answer_score).tolist() == pytest.approx([0.0, 0.6, 0.6, 1.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_closed_form_equals_string_path_on_vocab_predictions(seed):
    rng = random.Random(seed)
    annotations = []
    for qid in range(500):
        answers = _random_question(rng)
        mca = max(set(answers), key=lambda a: (answers.count(a), a))
        annotations.append(
            {
                "question_id": qid,
                "multiple_choice_answer": mca,
                "answers": [{"answer_id": i + 1, "answer": a} for i, a in enumerate(answers)],
            }
        )
    vocab = AnswerVocab.from_answers(
        Counter(a["multiple_choice_answer"] for a in annotations), max_answers=1000
    )
    assert len(vocab) >= 15
    targets = [build_targets([x["answer"] for x in a["answers"]], a["multiple_choice_answer"], vocab.stoi)
               for a in annotations]  # fmt: skip
    K = max(max(len(t.answer_idx) for t in targets), 1)
    idx = torch.zeros(len(targets), K, dtype=torch.long)  # padding: index 0, score 0
    score = torch.zeros(len(targets), K, dtype=torch.float64)
    for i, t in enumerate(targets):
        idx[i, : len(t.answer_idx)] = torch.tensor(t.answer_idx, dtype=torch.long)
        score[i, : len(t.answer_score)] = torch.tensor(t.answer_score, dtype=torch.float64)
    pred = torch.tensor([rng.randrange(len(vocab)) for _ in annotations])
    # half the time predict the question's most common answer, so matches are frequent
    for i, t in enumerate(targets):
        if t.answer >= 0 and rng.random() < 0.5:
            pred[i] = t.answer
    closed = batch_accuracy(pred, idx, score).tolist()
    exact = official_scores(
        {a["question_id"]: a["answers"] for a in annotations},
        {a["question_id"]: vocab.itos[p] for a, p in zip(annotations, pred.tolist())},
    )
    assert closed == pytest.approx([exact[a["question_id"]] for a in annotations], abs=1e-12)
    assert sum(1 for s in closed if 0 < s < 1) >= 10 and sum(1 for s in closed if s == 1) >= 10


def test_summarize_rounds_means_of_unrounded_scores():
    scores = {1: 1.0, 2: 0.9, 3: 0.0, 4: 0.6, 5: 0.3, 6: 0.3}
    answer_types = {1: "yes/no", 2: "yes/no", 3: "yes/no", 4: "number", 5: "number", 6: "other"}
    question_types = {1: "is the", 2: "is the", 3: "how many", 4: "how many", 5: "how many", 6: "what"}
    s = summarize(scores, answer_types, question_types)
    assert s["overall"] == 51.67  # 100 * 3.1 / 6 = 51.666..., not the mean of the per-type figures
    assert s["perAnswerType"] == {"yes/no": 63.33, "number": 45.0, "other": 30.0}
    assert s["perQuestionType"] == {"is the": 95.0, "how many": 30.0, "what": 30.0}
    assert summarize({1: 1 / 3, 2: 0.0}, {1: "x", 2: "x"})["overall"] == 16.67  # 16.666...
    assert "perQuestionType" not in summarize(scores, answer_types)
    with pytest.raises(ValueError):
        summarize({}, {})


def test_fast_punctuation_equals_the_official_function():
    """vqa.data.keys.process_punctuation handles only the characters present; it must equal the
    evaluator's processPunctuation (tests/reference_eval.py), and normalize_answer its pair of functions."""
    rng = random.Random(0)
    alphabets = [string.printable + "\u00e9\u00a0", ';/[]"{}()=+\\_-><@`,?!. 0123456789ab', "., 1234 a"]
    for i in range(30000):
        if i % 4:
            s = "".join(rng.choice(alphabets[i % 3]) for _ in range(rng.randint(0, 14)))
        else:
            s = " ".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 3)))
        assert process_punctuation(s) == reference_eval.process_punctuation(s), repr(s)
        assert normalize_answer(s) == reference_eval.normalize_answer(s), repr(s)


@pytest.mark.parametrize("legacy", [False, True])
def test_long_and_mixed_answer_lists_equal_the_official_loop(legacy):
    """Questions with 1 to 40 answers (beyond the 32 of a match pattern, scored one by one)."""
    rng = random.Random(5)
    gts = {q: rng.choices(rng.sample(TRICKY, 3), k=rng.choice([1, 3, 10, 33, 40])) for q in range(300)}
    preds = {q: rng.choice(TRICKY) for q in gts}
    assert official_scores(gts, preds, legacy=legacy) == official_scores_reference(gts, preds, legacy=legacy)
    texts = [a for answers in gts.values() for a in answers]
    lengths = [len(a) for a in gts.values()]
    scores = AnswerKeys.build(texts, lengths, "legacy" if legacy else "current").scores(list(preds.values()))
    assert scores.tolist() == list(official_scores_reference(gts, preds, legacy=legacy).values())


def test_distinct_small_ids():
    ids = np.array([1, 2, 3, 1, 1, 2, 40, 1, 0, 31])
    distinct, undecided = distinct_small_ids(ids, np.array([3, 3, 2, 2]))
    assert distinct.tolist() == [True, False, False, True] and undecided.tolist() == [
        False,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    "ids, scored_like_strings",
    [
        ([1, 2, 3], True),
        ([1, 1, 2], False),  # equal dicts left out together
        ([True, 2, 3], True),  # True == 1 in Python, still distinct from 2 and 3
        ([True, 1, 3], False),
        ([1.0, 2.5, 3], True),
        (["1", 1, 2], True),  # "1" != 1
        ([None, None, 2], False),
        ([[1], [2], [3]], True),
        ([2**70, 2**70 + 1, -5], True),
    ],
)
def test_answer_ids_of_any_type_decide_the_leave_one_out(ids, scored_like_strings):
    answers = [{"answer_id": i, "answer": a} for i, a in zip(ids, ["cat", "cat", "dog"])]
    gts, preds = {1: answers}, {1: "cat"}
    fast = official_scores(gts, preds)
    assert fast == official_scores_reference(gts, preds)
    assert (fast == official_scores({1: ["cat", "cat", "dog"]}, preds)) is scored_like_strings


def test_array_summaries_equal_the_dict_ones():
    rng = random.Random(1)
    scores = {q: rng.choice([0.0, 0.3, 0.6, 0.9, 1.0, 0.6000000000000001, 1 / 3]) for q in range(500)}
    answer_types = {q: rng.choice(["yes/no", "number", "other"]) for q in scores}
    question_types = {q: rng.choice(["what", "how many", "is the", "why"]) for q in scores}
    values = np.array(list(scores.values()))
    expected = {
        "overall": round(100 * sum(scores.values()) / len(scores), 2),
        "perAnswerType": {
            t: round(
                100
                * sum(s for q, s in scores.items() if answer_types[q] == t)
                / sum(1 for q in scores if answer_types[q] == t),
                2,
            )
            for t in dict.fromkeys(answer_types.values())
        },
    }
    assert summarize(scores, answer_types) == expected
    assert list(summarize(scores, answer_types)["perAnswerType"]) == list(
        dict.fromkeys(answer_types.values())
    )
    both = summarize_scores(values, list(answer_types.values()), list(question_types.values()))
    assert both == summarize(scores, answer_types, question_types)
    assert percent_scores(values) == [round(100 * s, 2) for s in values.tolist()]


# --- accuracy by human agreement (vqa/agreement.py)


def test_agreement_buckets_cover_every_top_count_once():
    names = [name for name, _, _ in AGREEMENT_BUCKETS]
    assert names == ["10", "7_9", "4_6", "le3"]
    assert [bucket_of(c) for c in range(11)] == ["le3"] * 4 + ["4_6"] * 3 + ["7_9"] * 3 + ["10"]
    assert bucket_names(np.array([10, 9, 4, 1], np.int8)) == ["10", "7_9", "4_6", "le3"]
    assert [bucket_label(n) for n in names] == ["10", "7-9", "4-6", "<=3"]
    # the edges follow the official score: full credit from 4 matching answers on
    assert [score_from_count(c) for c in (3, 4)] == [0.9, 1.0]
    with pytest.raises(ValueError):
        bucket_of(11)


@pytest.mark.parametrize("rules", ["current", "legacy", "vizwiz"])
def test_top_counts_count_the_answers_as_the_evaluator_compares_them(rules):
    """The top count is that of the evaluator's keys (gt_keys), every answer counted: "Yes", "yes" and
    " yes\\n" are one answer of a split question under the current rules, three under VizWiz's."""
    rng = random.Random(11)
    questions = [_random_question(rng) for _ in range(500)]
    keys = {
        "current": gt_keys,
        "legacy": lambda a: gt_keys(a, legacy=True),
        "vizwiz": list,
    }[rules]
    expected = [Counter(keys(q)).most_common(1)[0][1] for q in questions]
    texts = [a for q in questions for a in q]
    assert top_counts(texts, rules).tolist() == expected
    assert len(set(expected)) >= 5  # not degenerate
    # `vqa eval`'s fast path reads them off its own keys, in the same pass as the scores
    assert AnswerKeys.build(texts, [10] * len(questions), rules).top_counts().tolist() == expected
    assert top_counts(["Yes", "yes", " yes\n"] + ["no"] * 7, rules).tolist() == [
        {"current": 7, "legacy": 7, "vizwiz": 7}[rules]
    ]
    assert top_counts(["Yes"] * 5 + ["yes"] * 5, rules).tolist() == [{"current": 10}.get(rules, 5)]


def test_accuracy_by_agreement_rounds_as_the_official_tool_and_leaves_empty_buckets_null():
    scores = np.array([1.0, 0.3, 0.9, 0.6, 1.0])
    buckets = ["10", "le3", "le3", "4_6", "10"]
    assert accuracy_by_agreement(scores, buckets) == {"10": 100.0, "7_9": None, "4_6": 60.0, "le3": 60.0}
    assert accuracy_by_agreement(np.array([]), []) == {"10": None, "7_9": None, "4_6": None, "le3": None}


@pytest.mark.parametrize("legacy", [False, True])
def test_eval_report_per_agreement_hand_worked(legacy):
    """`vqa eval`'s perAgreement on hand-worked questions (answers, prediction, top count current / legacy)."""
    from vqa.evaluate import evaluate  # the report form of `vqa eval`

    cases = [
        (["Yes"] * 10, "Yes"),  # 10 / 10; scores 1 / 0 (legacy normalizes only the prediction)
        (["yes"] * 5 + ["Yes"] * 5, "yes"),  # 10 (normalized, one answer) / 5 (two); scores 1 / 1
        (["cat"] * 3 + ["dog"] * 7, "dog"),  # 7 / 7; scores 1 / 1
        (["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2, "b"),  # 3 / 3; scores .9 / .9
    ]
    annotations = [
        {"question_id": q, "answer_type": "other", "question_type": "what",
         "answers": [{"answer_id": j, "answer": a} for j, a in enumerate(answers)]}
        for q, (answers, _) in enumerate(cases)
    ]  # fmt: skip
    report = evaluate({q: pred for q, (_, pred) in enumerate(cases)}, annotations, legacy=legacy)
    if legacy:
        assert report["perAgreement"] == {"10": 0.0, "7_9": 100.0, "4_6": 100.0, "le3": 90.0}
    else:
        assert report["perAgreement"] == {"10": 100.0, "7_9": 100.0, "4_6": None, "le3": 90.0}
