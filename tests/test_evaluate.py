"""`vqa eval`: strict file checks, the official report, legacy vs current, the scoring benchmark."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from reference_eval import official_scores_reference

from vqa.bench.eval import bench_eval, official_loop, synthetic_eval_set
from vqa.cli import build_parser
from vqa.data.sources import get_source
from vqa.errors import UserError
from vqa.evaluate import (
    checked_report,
    eval_command,
    evaluate,
    format_report,
    load_annotations,
    load_questions,
    load_results,
    typed_report,
)
from vqa.io import dumps, loads, read_json

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


def typed(args, workers=None):
    """The fast path's report for parsed `vqa eval` arguments."""
    files = (args.annotations, args.questions, args.results)
    return typed_report(*files, get_source(args.source), args.legacy, cache=args.cache, workers=workers)


def checked(args):
    """The checked path's report for parsed `vqa eval` arguments."""
    return checked_report(
        args.annotations, args.questions, args.results, get_source(args.source), args.legacy
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
    assert set(report) == {"overall", "perAnswerType", "perQuestionType", "perAgreement", "perQuestion", "rules",
                           "questions"}  # fmt: skip
    # top counts 10, 6, 5 ("two" is "2"), 10, 7: questions 1 + 4, 5, 2 + 3; none with 3 or fewer
    assert report["perAgreement"] == {"10": 50.0, "7_9": 90.0, "4_6": 100.0, "le3": None}
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
    assert lines[10] == "per agreement (annotators giving the most common answer):"
    assert len(lines) == 6 + 4 + 1 + 4


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
    b = bench_eval(n_questions=3000, seed=1, repeats=2, reference_questions=500)
    assert b["identical"] is True and b["identical_unrounded"] is True
    assert b["questions"] == 3000 and b["answers"] == 30000 and b["reference_scaled"] is True
    assert b["reference_questions"] == 500 and len(b["eval_runs_s"]) == 2
    assert b["speedup"] > 0 and b["first_speedup"] > 0 and b["first_s"] > 0 and b["target_speedup"] == 15
    assert isinstance(b["target_holds"], bool)
    assert 40 < b["overall"] < 90  # realistic disagreement, not all-or-nothing


def test_bench_baseline_is_the_official_loop():
    """The eval benchmark times its own copy of the official loop; it equals the tests' reference."""
    annotations, preds = synthetic_eval_set(2000, seed=4)
    gts = {a["question_id"]: a["answers"] for a in annotations}
    assert official_loop(gts, preds) == official_scores_reference(gts, preds)


def test_eval_never_imports_torch(files, tmp_path):
    """`vqa eval` is a scoring tool: importing torch would cost seconds and it uses none of it."""
    a, q, r = files
    argv = ["eval", "--results", str(r), "--annotations", str(a), "--questions", str(q),
            "--out", str(tmp_path / "report.json")]  # fmt: skip
    code = f"import sys; from vqa.cli import main; rc = main({argv!r}); print('torch' in sys.modules); sys.exit(rc)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "False"
    assert json.loads((tmp_path / "report.json").read_text())["overall"] == 78.0


def _skipping_files(tmp_path):
    """CASES plus a question with 9 answers (not scored, absent from the results) and one with 11
    (not scored, answered anyway)."""
    anns = _annotations()
    extra = [
        {"question_id": 7, "image_id": 0, "question_type": "what is", "answer_type": "other",
         "multiple_choice_answer": "x", "answers": [{"answer_id": i + 1, "answer": "x"} for i in range(9)]},
        {"question_id": 8, "image_id": 0, "question_type": "what is", "answer_type": "other",
         "multiple_choice_answer": "x", "answers": [{"answer_id": i + 1, "answer": "x"} for i in range(11)]},
    ]  # fmt: skip
    anns = anns[:2] + extra + anns[2:]
    a = _write(tmp_path / "A.json", {"annotations": anns})
    q = _write(
        tmp_path / "Q.json",
        {"questions": [{"question_id": x["question_id"], "image_id": 0, "question": "?"} for x in anns]},
    )
    results = [{"question_id": qid, "answer": v[1]} for qid, v in CASES.items()] + [
        {"question_id": 8, "answer": "x"}
    ]
    r = _write(tmp_path / "R.json", results)
    return a, q, r


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("skipping", [False, True])
def test_typed_and_checked_paths_give_the_same_report(files, tmp_path, legacy, skipping):
    a, q, r = _skipping_files(tmp_path) if skipping else files
    args = _args(a, q, r, "--no-cache", *(["--legacy"] if legacy else []))
    fast = typed(args)
    assert fast is not None  # the plain official form takes the fast path
    slow = checked(args)
    assert fast == slow and list(fast) == list(slow)
    assert dumps(fast, 1) == dumps(slow, 1)
    for workers in (2, 3):  # forked processes, each a run of consecutive questions: the same report
        assert dumps(typed(args, workers=workers), 1) == dumps(slow, 1)
    cached = _args(a, q, r, *(["--legacy"] if legacy else []))
    for workers in (1, 2, 3, 1):  # the first call writes the annotation side, the others read it back
        assert dumps(typed(cached, workers=workers), 1) == dumps(slow, 1)
    if skipping:
        assert fast["skipped"]["question_ids"] == [7, 8] and fast["questions"] == 5


def _mutated(files, tmp_path, which, mutate):
    a, q, r = files
    path = {"annotations": a, "questions": q, "results": r}[which]
    data = json.loads(path.read_text())
    mutate(data)
    out = _write(tmp_path / f"mutated_{path.name}", data)
    return _args(*[out if p == path else p for p in (a, q, r)])


@pytest.mark.parametrize(
    "which, mutate",
    [
        ("annotations", lambda d: [x.pop("answer_id") for a in d["annotations"] for x in a["answers"]]),
        ("annotations", lambda d: d["annotations"][0]["answers"][1].update(answer_id=1)),  # a repeated id
        ("annotations", lambda d: d["annotations"][0]["answers"][1].update(answer_id="b")),
        ("annotations", lambda d: d["annotations"][1].update(question_type=None)),
        ("annotations", lambda d: d.update(annotations=d["annotations"] + d["annotations"][:1])),
        ("questions", lambda d: d["questions"].pop()),
        ("results", lambda d: d.append({"question_id": 1, "answer": "yes"})),
        ("results", lambda d: d[0].update(answer=3)),
    ],
)
def test_files_outside_the_plain_form_take_the_checked_path(files, tmp_path, which, mutate):
    """Anything the typed fast path does not take, the checked path scores (exactly) or words."""
    args = _mutated(files, tmp_path, which, mutate)
    assert typed(args) is None and typed(args, workers=2) is None
    clean = _args(*files)  # the cache of the unmutated annotations must not let the mutated ones pass
    if which != "annotations":
        assert typed(clean) is not None and typed(args) is None
    try:
        report = checked(args)
    except UserError:
        return
    results = {x["question_id"]: x["answer"] for x in read_json(args.results)}
    assert report == evaluate(results, load_annotations(args.annotations))


def test_large_answer_ids_stay_on_the_typed_path(files, tmp_path):
    args = _mutated(
        files, tmp_path, "annotations", lambda d: d["annotations"][4]["answers"][1].update(answer_id=2**40)
    )
    fast = typed(args)
    assert fast is not None and fast == checked(args)


def test_equal_answer_dicts_are_left_out_together_in_the_report(files, tmp_path):
    """Without answer ids, equal answer dicts are left out together (the official quirk): question 5
    (3 x cat, 7 x dog, prediction "Cat.") scores 7 x 1 / 10 instead of 0.9."""
    args = _mutated(files, tmp_path, "annotations",
                    lambda d: [x.pop("answer_id") for a in d["annotations"] for x in a["answers"]])  # fmt: skip
    assert typed(args) is None
    assert checked(args)["perQuestion"][5] == 70.0


def test_strict_json_reading_keeps_the_standard_library_wording(tmp_path):
    bad = _write(tmp_path / "bad.json", '{"a": 1,\n "b": [1, 2,, 3]}')
    with pytest.raises(
        UserError, match=r"bad\.json is not valid JSON \(Expecting value at line 2 column 13\)"
    ):
        read_json(bad)
    with pytest.raises(UserError, match="not strict JSON"):
        read_json(_write(tmp_path / "nan.json", "[1, NaN]"))
    (tmp_path / "latin.json").write_bytes(b'["caf\xe9"]')
    with pytest.raises(UserError, match=r"is not UTF-8 text \(byte 5\)"):
        read_json(tmp_path / "latin.json")
    # what the fast decoder refuses but JSON allows, the standard library decodes
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"a": [1e400, "\\ud800"]}')
    assert read_json(tmp_path / "bom.json") == {"a": [float("inf"), "\ud800"]}
    assert loads(b'{"x": [1, 2.5, null, true, "\\u00e9"]}') == {"x": [1, 2.5, None, True, "\u00e9"]}


@pytest.mark.parametrize("indent", [None, 1, 2, 4])
def test_dumps_is_the_standard_library_text(indent):
    obj = {"a": {}, "b": [], "c": [1, {"x": "\u00e9\n", "y": None, "z": [[]]}], 1: 2.5, "big": 10**20,
           "f": [1e16, 1e-7, -0.0, 0.1], "t": True, "lone": "\ud800"}  # fmt: skip
    assert dumps(obj, indent) == json.dumps(obj, indent=indent, allow_nan=False)
    with pytest.raises(ValueError):
        dumps({"a": [float("nan")]}, indent)


def test_the_annotation_cache_follows_the_file(files, tmp_path, monkeypatch, capsys):
    """The cache holds the annotation side of a file as it is: a cached report equals a fresh one, an
    edited file (same path) is scored anew, a corrupt entry is rebuilt, and a cache folder that cannot
    be written costs only a note on stderr."""
    from vqa import evaluate_fast as ev

    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "cache"))
    a, q, r = files
    args = _args(a, q, r)
    first = typed(args)
    entries = list((tmp_path / "cache").glob("eval-*.npz"))
    assert len(entries) == 1
    calls = []
    real = ev._annotate
    monkeypatch.setattr(ev, "_annotate", lambda *x: calls.append(1) or real(*x))
    assert typed(args) == first and calls == []  # read back: no annotation decoded
    assert first == checked(args)
    data = json.loads(a.read_text())  # question 1's answers all become "maybe": a different score
    for x in data["annotations"][0]["answers"]:
        x["answer"] = "maybe"
    _write(a, data)
    edited = typed(args)
    assert calls == [1] and edited == checked(args) and edited != first
    entries[0].write_bytes(b"not a zip file")
    assert typed(args) == edited and calls == [1, 1]
    assert typed(args) == edited and calls == [1, 1]  # rebuilt, then read back
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("VQA_CACHE_DIR", str(blocked))
    assert typed(args) == edited
    assert "cannot write the scoring cache" in capsys.readouterr().err
    monkeypatch.setenv("VQA_CACHE_DIR", "off")
    assert ev.cache_dir() is None and typed(args) == edited


def _reseal(a: dict) -> dict:
    """The entry's arrays with their checksum recomputed (a tamper the checksum alone cannot see)."""
    from vqa.evaluate_cache import checksum

    return {**a, "checksum": checksum(a)}


def _drop(a: dict, name: str) -> dict:
    return {k: v for k, v in a.items() if k != name}


def _with(a: dict, **arrays) -> dict:
    return {**a, **arrays}


def _out_of_range(a: dict) -> dict:
    gt_key = a["gt_key"].copy()
    gt_key[0, 0] = len(a["keys_ends"]) + 3
    return _reseal(_with(a, gt_key=gt_key))


TAMPERS = {
    "missing array": lambda a: _drop(a, "top"),
    "missing checksum": lambda a: _drop(a, "checksum"),
    "short ids": lambda a: _reseal(_with(a, ids=a["ids"][:-1], counts=a["counts"][:-1])),
    "short keys": lambda a: _reseal(_with(a, gt_key=a["gt_key"][:-1])),
    "short top counts": lambda a: _reseal(_with(a, top=a["top"][:-1])),
    "out-of-range keys": _out_of_range,
    "out-of-range type codes": lambda a: _reseal(_with(a, at_codes=a["at_codes"] + 7)),
    "negative type codes": lambda a: _reseal(_with(a, qt_codes=a["qt_codes"] - 9)),
    "top count 11": lambda a: _reseal(_with(a, top=a["top"] + 10)),
    "wrong dtype": lambda a: _reseal(_with(a, ids=a["ids"].astype("int32"))),
    "cut string table": lambda a: _reseal(_with(a, keys_ends=a["keys_ends"] + 1)),
    "other rules": lambda a: _reseal(_with(a, rules=np.frombuffer(b"legacy", np.uint8))),
    # values altered, fingerprint kept: question 1's keys all become question 5's (another score)
    "altered values": lambda a: _with(a, gt_key=np.concatenate([a["gt_key"][-1:], a["gt_key"][1:]])),
    "ids of another file": lambda a: _reseal(_with(a, ids=a["ids"] + 100)),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_tampered_cache_entry_is_rebuilt_never_trusted(files, tmp_path, monkeypatch, capsys, tamper):
    """An entry whose fingerprint matches but whose arrays are incomplete, inconsistent, out of range or
    altered is never used: the report is the fresh one, one note says so, and the entry is rewritten."""
    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "cache"))
    args = _args(*files)
    truth = checked(args)
    assert typed(args) == truth
    (entry,) = (tmp_path / "cache").glob("eval-*.npz")
    with np.load(entry) as z:
        arrays = TAMPERS[tamper]({k: z[k] for k in z.files})
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    capsys.readouterr()
    assert typed(args) == truth
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("note: scoring cache entry") and str(entry) in err[0]
    with np.load(entry) as z:  # rewritten whole: read back without a note
        assert "checksum" in z.files and z["top"].shape == (len(CASES),)
    assert typed(args) == truth and capsys.readouterr().err == ""


def test_a_trusted_entry_would_change_the_score(files, tmp_path, monkeypatch):
    """The tampers above are not harmless: the altered keys, were they trusted, give another report."""
    from vqa.evaluate_cache import Annotated, load_annotated

    monkeypatch.setenv("VQA_CACHE_DIR", str(tmp_path / "cache"))
    args = _args(*files)
    truth = typed(args)
    (entry,) = (tmp_path / "cache").glob("eval-*.npz")
    with np.load(entry) as z:
        arrays = _reseal(TAMPERS["altered values"]({k: z[k] for k in z.files}))
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    fingerprint = arrays["fingerprint"].tobytes().decode()
    ann = load_annotated(entry, fingerprint, "current")
    assert isinstance(ann, Annotated)  # resealed: whole, so trusted
    assert typed(args) != truth  # a forged checksum is the one tamper the cache cannot see
