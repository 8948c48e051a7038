"""RULER generators and scoring (harness/kv/ruler.py) on the embedded model's tokenizer: no model is run.

Checks that every sample fits its token budget, that the gold answers really are the answers of the text
(needles present, the variable chain resolves to them, the common/frequent words are the most counted),
determinism under (seed, trial), and RULER's string_match_all recall.
"""
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import pytest

from harness.kv import ruler

LENGTHS = (512, 1024, 4096)
SLACK = 8  # cwe stops short of the budget by less than one list item; all other tasks fill it exactly


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from harness.lm.model import embedded_gguf_path

    p = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)


@pytest.fixture(scope="module")
def sample(tokenizer):
    @lru_cache(maxsize=None)
    def make(task: str, length: int, seed: int = 0, trial: int = 0) -> ruler.RulerSample:
        return ruler.make_sample(task, length, tokenizer, seed=seed, trial=trial)
    return make


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("task", ruler.TASKS)
def test_sample_fits_length(sample, task, length):
    s = sample(task, length)
    assert length - SLACK <= s.n_tokens <= length, f"make_sample({task!r}, {length}): {s.n_tokens} tokens"
    assert (s.task, s.length) == (task, length)
    assert s.question_ids and s.question.startswith("\n") and s.question.rstrip().endswith(("is", "are", ":"))


def _check_niah(s: ruler.RulerSample) -> None:
    spec = ruler.NIAH_SPECS[s.task]
    needles = re.findall(r"A special magic \w+ for (\S+) is (\S+)\.", s.context)
    key_of = {v: k for k, v in needles}
    assert len(s.answers) == spec.num_values * spec.num_queries
    for a in s.answers:
        assert a in key_of, f"{s.task} at {s.length}: gold value {a} is in no needle"
        assert key_of[a] in s.question, f"{s.task} at {s.length}: the needle of {a} has key {key_of[a]}, not queried"
    assert len(s.depths) == spec.num_keys * spec.num_values
    if spec.num_keys > spec.num_queries or spec.haystack == "needle":
        assert len(needles) > len(s.answers), f"{s.task}: no distractor needles"


def _check_vt(s: ruler.RulerSample) -> None:
    value = re.search(r"assigned the value (\d+) in the text above\?", s.question).group(1)
    expr = dict(re.findall(r"VAR ([A-Z]+) = (VAR [A-Z]+|\d+)", s.context))

    def resolve(v: str) -> str:
        while expr[v].startswith("VAR "):
            v = expr[v][4:]
        return expr[v]
    assert sorted(v for v in expr if resolve(v) == value) == sorted(s.answers)
    assert len(s.answers) == ruler.VT_HOPS + 1


def _top(counts: Counter, k: int) -> list[str]:
    ranked = counts.most_common()
    assert ranked[k - 1][1] > ranked[k][1], f"tie at rank {k}: {ranked[:k + 1]}"
    return [w for w, _ in ranked[:k]]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("task", ruler.TASKS)
def test_answers_are_in_the_context(sample, task, length):
    s = sample(task, length)
    for a in s.answers:
        assert a in s.context, f"{task} at {length}: gold {a!r} missing from the context"
    if task in ruler.NIAH_SPECS:
        _check_niah(s)
    elif task == "vt":
        _check_vt(s)
    elif task == "cwe":
        counts = Counter(re.findall(r"\d+\. ([a-z]+)", s.context))
        assert sorted(_top(counts, ruler.CWE_NUM_COMMON)) == sorted(s.answers)
    elif task == "fwe":
        words = s.context.split()
        assert Counter(words).most_common(1)[0][0] == "..."
        counts = Counter(w for w in words if re.fullmatch(r"[a-z]{6}", w))
        assert _top(counts, ruler.FWE_NUM_ANSWERS) == s.answers


@pytest.mark.parametrize("task", ruler.TASKS)
def test_deterministic_and_trials_differ(sample, tokenizer, task):
    s = sample(task, 1024)
    assert ruler.make_sample(task, 1024, tokenizer, seed=0, trial=0) == s
    other = sample(task, 1024, 0, 1)
    assert other.answers != s.answers and other.context_ids != s.context_ids
    assert sample(task, 1024, 1, 0).answers != s.answers


def test_needle_depth_is_drawn_from_the_seed(sample):
    depths = {sample("niah_single_2", 512, seed).depths for seed in range(8)}
    assert len(depths) > 1 and all(0.0 <= d[0] <= 1.0 for d in depths)


@pytest.mark.parametrize("task", ruler.TASKS)
def test_score_is_string_match_all(sample, task):
    answers = sample(task, 1024).answers
    assert ruler.score(task, " ".join(answers), answers) == 1.0
    assert ruler.score(task, " ".join(answers).upper() + " and more", answers) == 1.0
    assert ruler.score(task, "I could not find it.", answers) == 0.0
    for k in range(1, len(answers)):
        assert ruler.score(task, ", ".join(answers[:k]), answers) == pytest.approx(k / len(answers))


def test_bad_arguments_raise(tokenizer):
    with pytest.raises(ValueError, match="task"):
        ruler.make_sample("niah_single_9", 1024, tokenizer, seed=0)
    with pytest.raises(ValueError, match="task"):
        ruler.score("qa_1", "x", ["x"])
    with pytest.raises(ValueError, match="answers"):
        ruler.score("vt", "x", [])
    for task in ruler.TASKS:
        for length in (0, 48):
            with pytest.raises(ValueError, match="length"):
                ruler.make_sample(task, length, tokenizer, seed=0)


def test_max_new_tokens_follow_ruler():
    assert set(ruler.DEFAULT_MAX_NEW_TOKENS) == set(ruler.TASKS)
    assert ruler.DEFAULT_MAX_NEW_TOKENS["niah_multikey_3"] == 128
    assert (ruler.DEFAULT_MAX_NEW_TOKENS["vt"], ruler.DEFAULT_MAX_NEW_TOKENS["cwe"], ruler.DEFAULT_MAX_NEW_TOKENS["fwe"]) == (30, 120, 50)
