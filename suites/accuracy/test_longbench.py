"""LongBench: task table, loader, prompt split, middle truncation and the metrics against hand-worked values.

Every expected number below is worked by hand from the official rule (harness/kv/longbench_metrics.py docstrings;
THUDM/LongBench LongBench/metrics.py, eval.py). Chinese metrics are tested on the character fallback so the
numbers do not depend on whether jieba happens to be installed.
"""
from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

from harness.kv import longbench as lb
from harness.kv import longbench_metrics as lbm

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "longbench"
TREC_CLASSES = ["City", "Country", "Number of something", "Other location"]


@pytest.fixture
def chars(monkeypatch):
    monkeypatch.setattr(lbm, "jieba", None)
    assert lbm.zh_segmenter() == "chars"


# (metric, prediction, gold, kwargs, expected, how it is worked out)
CASES = [
    ("qa_f1_score", "the cat sat", "a cat sat down", {}, 0.8,
     "articles dropped: [cat sat] vs [cat sat down]; P=2/2, R=2/3, F1=2*1*(2/3)/(5/3)=0.8"),
    ("qa_f1_score", "The Cat, sat!", "cat sat", {}, 1.0, "lowercase + punctuation removed"),
    ("qa_f1_score", "cat cat", "cat", {}, 2 / 3, "multiset: overlap 1, P=1/2, R=1, F1=2/3"),
    ("qa_f1_score", "dog", "cat", {}, 0.0, "no overlap"),
    ("qa_f1_score", "the", "a", {}, 0.0, "both empty after normalization"),
    ("qa_f1_zh_score", "北京大学", "北京", {}, 2 / 3, "chars: overlap 2, P=2/4, R=2/2, F1=2/3"),
    ("qa_f1_zh_score", "北京。", "北京", {}, 1.0, "Chinese punctuation removed"),
    ("qa_f1_zh_score", "上海", "北京", {}, 0.0, "no overlap"),
    ("rouge_score", "the cat sat on the mat", "the cat lay on the mat", {}, 0.8,
     "distinct words m=n=5, LCS words {the,cat,on,mat}=4: P=R=0.8 (textbook ROUGE-L would say 5/6)"),
    ("rouge_score", "a b. c d", "c d. a b", {}, 1.0,
     "summary level: sentences split at '.', union of per-pair LCS words {a,b,c,d}=4, m=n=4"),
    ("rouge_score", "b a. b", "a b", {}, 0.5,
     "traceback of (a b, b a) keeps 'b' (ties step along the prediction), so union {b}: P=R=1/2"),
    ("rouge_score", "The cat", "the cat", {}, 0.5, "case-sensitive: LCS {cat}, P=R=1/2"),
    ("rouge_score", "", "the cat", {}, 0.0, "empty prediction: no sentence, official returns 0"),
    ("rouge_score", "...", "the cat", {}, 0.0, "only dots: no sentence"),
    ("rouge_zh_score", "今天开会", "今天不开会", {}, 8 / 9,
     "chars: n=4, m=5, LCS 今天开会=4: P=1, R=0.8, F=1.6/1.8"),
    ("classification_score", "City", "City", {"all_classes": TREC_CLASSES}, 1.0, "single exact match"),
    ("classification_score", "City or Country", "City", {"all_classes": TREC_CLASSES}, 0.5,
     "two classes named, gold among them: 1/2"),
    ("classification_score", "Country", "City", {"all_classes": TREC_CLASSES}, 0.0, "gold not named"),
    ("classification_score", "capital city", "capital city", {"all_classes": ["city", "capital city"]}, 1.0,
     "'city' is a proper substring of the gold, dropped: 1/1"),
    ("classification_score", "sports", "sports", {"all_classes": ["port", "sport", "sports"]}, 0.5,
     "official loop removes 'port' and then skips 'sport' (list mutated while iterated): [sport, sports] -> 1/2"),
    ("classification_score", "sports music", "sports", {"all_classes": ["port", "music", "sport", "sports"]}, 0.5,
     "removes 'port', 'sport' then (index 1 after the shift): [music, sports] -> 1/2"),
    ("retrieval_score", "Paragraph 3", "Paragraph 3", {}, 1.0, "numbers [3]"),
    ("retrieval_score", "Paragraph 3 or Paragraph 12", "Paragraph 3", {}, 0.5, "numbers [3, 12]: 1/2"),
    ("retrieval_score", "Paragraph 03", "Paragraph 3", {}, 0.0, "'03' != '3' as strings"),
    ("retrieval_score", "I do not know", "Paragraph 3", {}, 0.0, "no number"),
    ("retrieval_zh_score", "答案是段落5，不是段落15", "段落5", {}, 0.5, "numbers [5, 15]: 1/2"),
    ("retrieval_zh_score", "段落5", "段落5", {}, 1.0, "numbers [5]"),
    ("count_score", "7", "7", {}, 1.0, "numbers [7]"),
    ("count_score", "There are 7 unique paragraphs out of 10", "7", {}, 0.5, "numbers [7, 10]: 1/2"),
    ("count_score", "1, 2, 7", "7", {}, 1 / 3, "numbers [1, 2, 7]: 1/3"),
    ("count_score", "seven", "7", {}, 0.0, "no number"),
    ("code_sim_score", "return a + b", "return a + b", {}, 1.0, "equal strings: 100"),
    ("code_sim_score", "abcd", "abce", {}, 0.75, "difflib M=3 ('abc'), T=8: round(100*6/8)=75"),
    ("code_sim_score", "abcdeXYZ", "abcdeQRS", {}, 0.62, "M=5, T=16: 62.5 rounds half to even -> 62"),
    ("code_sim_score", "abc", "abd", {}, 0.67, "M=2, T=6: 66.7 -> 67"),
    ("code_sim_score", "\n```python\n# add them\nreturn a + b\n```", "return a + b", {}, 1.0,
     "leading newline, fence and comment lines skipped"),
    ("code_sim_score", "x = '#'\nreturn a + b", "return a + b", {}, 1.0,
     "a line with '#' anywhere is skipped, as in the official rule"),
    ("code_sim_score", "// only a comment", "return a + b", {}, 0.0, "no code line: '' vs gold -> 0"),
]


@pytest.mark.parametrize("name,prediction,gold,kwargs,expected,why", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_metric_hand_worked(chars, name, prediction, gold, kwargs, expected, why):
    got = lbm.METRICS[name](prediction, gold, **kwargs)
    assert got == pytest.approx(expected, abs=1e-7), f"{name}({prediction!r}, {gold!r}, {kwargs}) = {got}: {why}"
    assert 0.0 <= got <= 1.0


def test_retrieval_gold_without_paragraph_number_is_an_error():
    with pytest.raises(ValueError, match="does not name a paragraph"):
        lbm.retrieval_score("Paragraph 1", "the first one")


def test_fuzz_ratio_edge_cases():
    assert lbm.fuzz_ratio("", "") == 100  # equality is checked before emptiness, as in fuzzywuzzy
    assert lbm.fuzz_ratio("", "x") == 0
    assert lbm.fuzz_ratio("kitten", "sitting") == 62  # M=4 (ittn), T=13: 61.5 -> 62


# --- score(): max over answers, first-line rule ---

def test_score_takes_max_over_answers():
    # "Black" vs "the Black Sea" -> [black] vs [black sea]: P=1, R=1/2, F1=2/3; vs "Black Sea" the same.
    assert lb.score("triviaqa", "Black", ["Paris", "the Black Sea"]) == pytest.approx(2 / 3)
    assert lb.score("triviaqa", "Black Sea", ["Paris", "the Black Sea"]) == 1.0


def test_first_line_rule():
    prediction = "\nCountry\nType: City"
    assert lbm.classification_score(prediction, "Country", all_classes=TREC_CLASSES) == 0.5
    assert lb.score("trec", prediction, ["Country"], TREC_CLASSES) == 1.0  # only "Country" is scored
    assert lb.score("triviaqa", "Paris\nLondon", ["London"]) == 0.0
    # Not a first-line task: the second line counts.
    assert lb.score("multifieldqa_en", "Paris\nLondon", ["London"]) == pytest.approx(2 / 3)
    assert {t.name for t in lb.TASKS.values() if t.first_line_only} == {"trec", "triviaqa", "samsum", "lsht"}


# --- task table ---

def test_task_table():
    assert len(lb.TASKS) == 21
    sizes = {g: sum(t.group == g for t in lb.TASKS.values()) for g in lb.GROUPS}
    assert sizes == {"single-doc QA": 4, "multi-doc QA": 4, "summarization": 4, "few-shot": 4, "synthetic": 3,
                     "code": 2}
    assert {t.name for t in lb.TASKS.values() if t.language == "zh"} == {
        "multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh"}
    assert sum(t.in_longbench_e for t in lb.TASKS.values()) == 13
    for t in lb.TASKS.values():
        assert t.metric in lbm.METRICS, t
        assert t.prompt.count("{context}") == 1, t.name
        assert t.max_new_tokens in (32, 64, 128, 512), t.name
    # spot checks against dataset2maxlen.json
    assert (lb.TASKS["gov_report"].max_new_tokens, lb.TASKS["hotpotqa"].max_new_tokens,
            lb.TASKS["lcc"].max_new_tokens, lb.TASKS["narrativeqa"].max_new_tokens) == (512, 32, 64, 128)
    with pytest.raises(ValueError, match="unknown LongBench task"):
        lb.get_task("nq")


@pytest.mark.parametrize("length,bucket", [(0, "0-4k"), (3999, "0-4k"), (4000, "4-8k"), (7999, "4-8k"),
                                           (8000, "8k+"), (50000, "8k+")])
def test_length_bucket(length, bucket):
    assert lb.length_bucket(length) == bucket


# --- prompts and truncation ---

def synthetic_row(task: str) -> dict:
    # Braces in the values must survive: str.format does not re-read substituted text.
    return {"input": "QUESTION {x}?", "context": "CONTEXT {y} body", "answers": ["a"], "length": 5,
            "dataset": task, "language": "en", "all_classes": None, "_id": "synthetic"}


@pytest.mark.parametrize("task", list(lb.TASKS))
def test_prompt_split_rebuilds_official_prompt(task):
    row = synthetic_row(task)
    context_text, question_text = lb.build_prompt(task, row)
    assert context_text + question_text == lb.TASKS[task].prompt.format(**row)
    assert context_text.endswith(row["context"])
    assert "CONTEXT" not in question_text
    if "{input}" in lb.TASKS[task].prompt:
        assert row["input"] in question_text and row["input"] not in context_text


def test_prompt_split_examples():
    row = synthetic_row("lcc")
    assert lb.build_prompt("lcc", row) == ("Please complete the code given below. \nCONTEXT {y} body",
                                           "Next line of code:\n")
    assert lb.build_prompt("trec", row)[1] == "\nQUESTION {x}?"


@pytest.mark.parametrize("n,max_len,expected", [
    (10, 6, [0, 1, 2, 7, 8, 9]),
    (10, 7, [0, 1, 2, 7, 8, 9]),  # odd limit: 2 * (7 // 2) tokens, as pred.py
    (10, 10, list(range(10))),
    (4, 10, list(range(4))),
    (5, 2, [0, 4]),
    (5, 1, []),  # half = 0 on each side
])
def test_truncate_middle(n, max_len, expected):
    assert lb.truncate_middle(list(range(n)), max_len) == expected


def test_truncate_middle_rejects_negative_limit():
    with pytest.raises(ValueError):
        lb.truncate_middle([1, 2, 3], -1)


# --- loader ---

EXPECTED_ROWS = {"narrativeqa": 2, "multifieldqa_zh": 2, "gov_report": 2, "vcsum": 2, "trec": 3, "triviaqa": 2,
                 "samsum": 2, "lsht": 2, "passage_count": 2, "passage_retrieval_en": 2, "passage_retrieval_zh": 2,
                 "lcc": 2}


def test_fixture_set_is_complete():
    assert sorted(p.stem for p in FIXTURES.glob("*.jsonl")) == sorted(EXPECTED_ROWS)
    metrics = {lb.TASKS[t].metric for t in EXPECTED_ROWS}
    assert metrics == set(lbm.METRICS)  # one fixture per metric at least


@pytest.mark.parametrize("task", sorted(EXPECTED_ROWS))
def test_fixture_loads_and_gold_scores_itself(chars, recwarn, task):
    rows = lb.load_rows(task, data_dir=FIXTURES)
    assert len(rows) == EXPECTED_ROWS[task]
    for row in rows:
        assert row["dataset"] == task
        context_text, question_text = lb.build_prompt(task, row)
        assert row["context"] in context_text
        got = lb.score(task, row["answers"][0], row["answers"], row["all_classes"])
        assert got == pytest.approx(1.0, abs=1e-7), f"{task} {row['_id']}: gold scores {got} against itself"
    if task != "narrativeqa":
        assert not [w for w in recwarn if "row skipped" in str(w.message)]


def test_malformed_fixture_row_is_skipped_with_warning():
    with pytest.warns(UserWarning) as caught:
        rows = lb.load_rows("narrativeqa", data_dir=FIXTURES)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"narrativeqa\.jsonl:2: field 'answers' is missing; row skipped", m) for m in messages)
    assert any(m.endswith("narrativeqa.jsonl: skipped 1 malformed row of 3") for m in messages)  # the summary
    assert [r["_id"] for r in rows] == ["fixture-narrativeqa-0", "fixture-narrativeqa-1"]


def write_jsonl(path: Path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")


def test_loader_reports_each_bad_row(tmp_path):
    good = synthetic_row("hotpotqa")
    wrong_type = dict(good, length="12")
    not_json = '{"input": "x", '
    write_jsonl(tmp_path / "hotpotqa.jsonl", [good, wrong_type, "", not_json, dict(good, _id="b")])
    with pytest.warns(UserWarning) as record:
        rows = lb.load_rows("hotpotqa", data_dir=tmp_path)
    messages = [str(w.message) for w in record]
    assert [r["_id"] for r in rows] == ["synthetic", "b"]
    assert any("hotpotqa.jsonl:2: field 'length' should be an integer" in m for m in messages), messages
    assert any("hotpotqa.jsonl:4: not valid JSON" in m for m in messages), messages


def test_loader_limit_and_longbench_e(tmp_path):
    write_jsonl(tmp_path / "qasper_e.jsonl", [dict(synthetic_row("qasper"), _id=str(i)) for i in range(5)])
    assert [r["_id"] for r in lb.load_rows("qasper", data_dir=tmp_path, e=True, limit=2)] == ["0", "1"]
    with pytest.raises(FileNotFoundError, match="qasper.jsonl"):
        lb.load_rows("qasper", data_dir=tmp_path)
    with pytest.raises(ValueError, match="not part of LongBench-E"):
        lb.load_rows("narrativeqa", data_dir=tmp_path, e=True)


def test_no_datasets_package_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    with pytest.raises(RuntimeError, match=r"not installed.*--data-dir.*data\.zip"):
        lb.load_rows("trec")


def test_unreachable_hub_gives_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(RuntimeError, match=r"ConnectionError: hub unreachable.*--data-dir"):
        lb.load_rows("trec", e=True)


def test_hub_rows_are_validated(monkeypatch):
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return [synthetic_row("trec"), dict(synthetic_row("trec"), answers="City")]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.warns(UserWarning, match=r"THUDM/LongBench:trec_e row 1: field 'answers'"):
        rows = lb.load_rows("trec", e=True)
    assert calls == [("THUDM/LongBench", "trec_e", "test")] and len(rows) == 1
