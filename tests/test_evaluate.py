"""`vqa eval`: strict file checks, the official report, legacy vs current, the scoring benchmark."""

import copy
import json

import pytest

from vqa.bench.eval import bench_eval
from vqa.cli import build_parser
from vqa.errors import UserError
from vqa.evaluate import (
    eval_command,
    evaluate,
    format_report,
    load_annotations,
    load_questions,
    load_results,
)

# qid: (answers, prediction, answer type, question type, current score, legacy score), worked by hand
CASES = {
    1: (["Yes"] * 10, "Yes", "yes/no", "is the", 1.0, 0.0),
    2: (["red\n"] * 4 + ["blue"] * 6, "red", "other", "what color is the", 1.0, 0.0),
    3: (["two"] * 3 + ["2"] * 2 + ["three"] * 5, "2", "number", "how many", 1.0, 0.6),
    4: (["2"] * 10, "two", "number", "how many", 0.0, 1.0),
    5: (["cat"] * 3 + ["dog"] * 7, "Cat.", "other", "what is", 0.9, 0.9),
}


def _annotations():
    return [
        {
            "question_id": qid,
            "image_id": qid // 1000,
            "question_type": qt,
            "answer_type": at,
            "multiple_choice_answer": answers[0],
            "answers": [
                {"answer_id": i + 1, "answer": a, "answer_confidence": "yes"} for i, a in enumerate(answers)
            ],
        }
        for qid, (answers, _, at, qt, _, _) in CASES.items()
    ]


def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path):
    anns = _annotations()
    a = _write(tmp_path / "A.json", {"info": {}, "annotations": anns})
    q = _write(
        tmp_path / "Q.json",
        {"questions": [{"question_id": x["question_id"], "image_id": 0, "question": "?"} for x in anns]},
    )
    r = _write(tmp_path / "R.json", [{"question_id": qid, "answer": v[1]} for qid, v in CASES.items()])
    return a, q, r


def _args(a, q, r, *extra):
    """`vqa eval` arguments, parsed by the real command line."""
    return build_parser().parse_args(
        ["eval", "--results", str(r), "--annotations", str(a), "--questions", str(q), *extra]
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_evaluate_report_hand_values(legacy):
    results = {qid: v[1] for qid, v in CASES.items()}
    report = evaluate(results, _annotations(), legacy=legacy)
    col = 5 if legacy else 4
    assert report["perQuestion"] == {qid: round(100 * v[col], 2) for qid, v in CASES.items()}
    if legacy:  # [0, 0, .6, 1, .9]: 2.5 / 5
        assert report["overall"] == 50.0
        assert report["perAnswerType"] == {"yes/no": 0.0, "other": 45.0, "number": 80.0}
        assert report["perQuestionType"]["how many"] == 80.0
    else:  # [1, 1, 1, 0, .9]: 3.9 / 5
        assert report["overall"] == 78.0
        assert report["perAnswerType"] == {"yes/no": 100.0, "other": 95.0, "number": 50.0}
        assert report["perQuestionType"]["how many"] == 50.0
    assert report["rules"] == ("legacy" if legacy else "current") and report["questions"] == 5


def test_evaluating_twice_gives_the_same_result_and_keeps_inputs():
    anns = _annotations()
    results = {qid: v[1] for qid, v in CASES.items()}
    before = copy.deepcopy(anns)
    assert evaluate(results, anns) == evaluate(results, anns)
    assert anns == before


def test_eval_command_prints_and_writes_report(files, capsys, tmp_path):
    a, q, r = files
    out = tmp_path / "reports" / "report.json"
    assert eval_command(_args(a, q, r, "--out", str(out))) == 0
    printed = capsys.readouterr().out
    assert "VQA accuracy (current rules, 5 questions): 78.00" in printed
    lines = printed.splitlines()
    assert "  yes/no  100.00" in lines
    assert "  how many            50.00" in lines  # padded to the longest, "what color is the"
    report = json.loads(out.read_text())
    assert set(report) == {"overall", "perAnswerType", "perQuestionType", "perQuestion", "rules", "questions"}
    assert report["perQuestion"] == {"1": 100.0, "2": 100.0, "3": 100.0, "4": 0.0, "5": 90.0}
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # no temp file left behind
    assert eval_command(_args(a, q, r, "--legacy", "--out", str(out))) == 0
    assert json.loads(out.read_text())["overall"] == 50.0


def test_format_report_lists_every_type():
    text = format_report(evaluate({qid: v[1] for qid, v in CASES.items()}, _annotations()))
    lines = text.splitlines()
    assert lines[0] == "VQA accuracy (current rules, 5 questions): 78.00"
    assert lines[1] == "per answer type:" and lines[5] == "per question type:"
    assert lines[2:5] == ["  number   50.00", "  other    95.00", "  yes/no  100.00"]
    assert len(lines) == 6 + 4


def test_eval_command_rejects_mismatched_questions(files, tmp_path):
    a, _, r = files
    q = _write(tmp_path / "Q2.json", {"questions": [{"question_id": 1, "image_id": 0, "question": "?"}]})
    with pytest.raises(UserError, match=r"Q2\.json.*0 only in the questions.*4 only in the annotations"):
        eval_command(_args(a, q, r))


IDS = {1, 2, 3}


@pytest.mark.parametrize(
    "content, message",
    [
        ("[{", r"is not valid JSON \(Expecting"),
        ({"1": "yes"}, r"the top level is not a JSON list \(dict\)"),
        ([1, [], {"question_id": 2, "answer": "a"}], r"2 entries that are not objects \(#0 1, #1 \[\]\)"),
        (
            [
                {"question_id": "1", "answer": "a"},
                {"question_id": 2.0, "answer": "a"},
                {"question_id": True, "answer": "a"},
            ],
            r"3 entries without an integer question_id \(#0 '1', #1 2\.0, #2 True\)",
        ),
        (
            [{"question_id": 1, "answer": 5}, {"question_id": 2}],
            r"2 entries without a string answer \(#0 \(question_id 1\) 5, #1",
        ),
        (
            [{"question_id": i, "answer": "a"} for i in (1, 1, 2, 2, 2, 3)],
            r"2 duplicate question ids \(1, 2\); write exactly one",
        ),
        ([{"question_id": 1, "answer": "a"}], r"2 missing question ids \(2, 3\)"),
        (
            [{"question_id": i, "answer": "a"} for i in (1, 2, 3, 9, 4)],
            r"2 question ids not in the annotations \(4, 9\)",
        ),
        (
            [{"question_id": i, "answer": "a"} for i in (1, 1, 2, 7)],
            r"1 duplicate question ids \(1\); 1 missing question ids \(3\); 1 question ids not in the annotations \(7\)",
        ),
    ],
)
def test_load_results_rejections_are_one_line(tmp_path, content, message):
    path = _write(tmp_path / "R.json", content)
    with pytest.raises(UserError, match=message) as e:
        load_results(path, IDS)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_load_results_counts_and_truncates(tmp_path):
    path = _write(tmp_path / "R.json", [{"question_id": 0, "answer": "a"}])
    with pytest.raises(UserError, match=r": 12 missing question ids \(1, 2, 3, 4, 5, \.\.\.\); write") as e:
        load_results(path, set(range(13)))
    assert "\n" not in str(e.value)


def test_load_results_accepts_exact_cover(tmp_path):
    path = _write(tmp_path / "R.json", [{"question_id": i, "answer": f"a{i}", "extra": 1} for i in (3, 1, 2)])
    assert load_results(path, IDS) == {1: "a1", 2: "a2", 3: "a3"}
    with pytest.raises(UserError, match="not found"):
        load_results(tmp_path / "nope.json", IDS)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("annotations"), "has no list under key 'annotations'"),
        (lambda d: d["annotations"][1].pop("answer_type"), r"annotations\[1\] has no key 'answer_type'"),
        (lambda d: d["annotations"][2].update(question_id=1), "question_id 1 appears twice"),
        (
            lambda d: d["annotations"][0].update(answers="yes"),
            "question_id 1 key 'answers' is not a list",
        ),
        (lambda d: d["annotations"][0]["answers"][3].pop("answer"), "question_id 1 key 'answers'"),
    ],
)
def test_load_annotations_rejections(tmp_path, mutate, message):
    data = {"annotations": _annotations()}
    mutate(data)
    path = _write(tmp_path / "A.json", data)
    with pytest.raises(UserError, match=message) as e:
        load_annotations(path)
    assert "A.json" in str(e.value) and "\n" not in str(e.value)


def test_load_questions(tmp_path):
    good = {"questions": [{"question_id": 1, "image_id": 0, "question": "What?"}]}
    assert load_questions(_write(tmp_path / "Q.json", good)) == good["questions"]
    with pytest.raises(UserError, match=r"Q\.json: questions\[0\] has no key 'question'"):
        load_questions(_write(tmp_path / "Q.json", {"questions": [{"question_id": 1, "image_id": 0}]}))
    with pytest.raises(UserError, match=r"Q\.json is not valid JSON"):
        load_questions(_write(tmp_path / "Q.json", "{"))


def test_bench_eval_agrees_on_a_small_set():
    b = bench_eval(n_questions=3000, seed=1, reference_questions=500)
    assert b["agree"] is True
    assert b["questions"] == 3000 and b["answers"] == 30000 and b["reference_scaled"] is True
    assert b["speedup"] > 1
    assert 40 < b["overall"] < 90  # realistic disagreement, not all-or-nothing
