"""The dLLM's synthetic tasks (harness/dllm/tasks.py): prompt lengths, findable needles, targets, exact match, held-out.

Each example is drawn from `random.Random(seed)` with the seed (and length) in hypothesis' failure report, so a
failing case is reproduced by `make_example(task, length, random.Random(seed))`.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from harness.dllm import tasks
from harness.dllm.tasks import (BOS, DIGITS, EOS, FILLER, KEY, KV_KEY, KV_VALUE, MASK, N_SPANS, PASSKEY,
                                PASSKEY_DIGITS, SEP, SPAN_CLOSE, SPAN_LEN, SPAN_OPEN, SYMBOLS, TASK_TOKEN, TASKS, VALUE,
                                VOCAB_SIZE, held_out, is_correct, make_example, target_tokens)
from suites.strategies import seeds

HEAD = 2  # BOS, task token
# The query that ends each prompt, and the needle record that answers it, as functions of the example.
QUERY_LEN = {"passkey": 3, "kv": 3 + KV_KEY + 1, "copy": 4}
ANSWER_LEN = {"passkey": PASSKEY_DIGITS, "kv": KV_VALUE, "copy": SPAN_LEN}
ANSWER_VOCAB = {"passkey": set(DIGITS), "kv": set(SYMBOLS), "copy": set(SYMBOLS) | set(FILLER)}
# Shortest prompt of each task: head + query + every record (kv has at least 2 pairs, copy N_SPANS spans).
MIN_LENGTH = {"passkey": HEAD + 3 + 1 + PASSKEY_DIGITS,
              "kv": HEAD + 3 + KV_KEY + 1 + 2 * (1 + KV_KEY + 1 + KV_VALUE),
              "copy": HEAD + 4 + N_SPANS * (SPAN_LEN + 3)}


def occurrences(seq: list[int], sub: list[int]) -> list[int]:
    return [i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub]


def needle_and_query(ex: tasks.Example) -> tuple[list[int], list[int]]:
    """(the marker that must occur once in the context, right before the answer; the query the prompt ends with),
    read from the prompt's own query (the answer's key / span name), not from the generator's internals."""
    query = ex.prompt[-QUERY_LEN[ex.task]:]
    if ex.task == "passkey":
        return [PASSKEY], [SEP, TASK_TOKEN["passkey"], PASSKEY]
    if ex.task == "kv":
        key = query[3:3 + KV_KEY]
        return [KEY, *key, VALUE], [SEP, TASK_TOKEN["kv"], KEY, *key, VALUE]
    return [SPAN_OPEN, query[3]], [SEP, TASK_TOKEN["copy"], SPAN_OPEN, query[3]]


def test_vocabulary_groups_are_disjoint_and_fit():
    groups = [[BOS, EOS, MASK, SEP], DIGITS, [PASSKEY, KEY, VALUE, SPAN_OPEN, SPAN_CLOSE],
              list(TASK_TOKEN.values()), FILLER, SYMBOLS]
    flat = [t for g in groups for t in g]
    assert len(flat) == len(set(flat)) and min(flat) >= 0 and max(flat) < VOCAB_SIZE


@pytest.mark.parametrize("task", TASKS)
@given(length=st.integers(64, 2000), seed=seeds())
@example(length=64, seed=0)
@example(length=2000, seed=1)
def test_prompt_length_and_the_needle_at_its_depth(task, length, seed):
    ex = make_example(task, length, random.Random(seed))
    assert ex.task == task and len(ex.prompt) == length
    assert ex.prompt[:HEAD] == [BOS, TASK_TOKEN[task]]
    assert all(0 <= t < VOCAB_SIZE and t not in (MASK, EOS) for t in ex.prompt)
    assert len(ex.answer) == ANSWER_LEN[task] and set(ex.answer) <= ANSWER_VOCAB[task]
    marker, query = needle_and_query(ex)
    assert ex.prompt[-len(query):] == query
    body = ex.prompt[HEAD:-len(query)]
    found = occurrences(body, marker)
    assert len(found) == 1, f"{task} marker {marker} occurs at {found} in the context (must be unique)"
    start = found[0]
    assert body[start + len(marker):start + len(marker) + len(ex.answer)] == ex.answer  # answer right after it
    assert 0 <= ex.depth < 1 and round(ex.depth * len(body)) == start


@pytest.mark.parametrize("task", TASKS)
def test_needle_depth_spans_the_context(task):
    """Over many seeds the needle lands near the start and near the end: no depth is systematically untested."""
    depths = [make_example(task, 256, random.Random(s)).depth for s in range(200)]
    assert min(depths) < 0.1 and max(depths) > 0.8, (min(depths), max(depths))


@given(length=st.integers(96, 2000), seed=seeds())
def test_kv_keys_are_distinct_and_the_query_key_is_in_one_record(length, seed):
    ex = make_example("kv", length, random.Random(seed))
    body = ex.prompt[HEAD:-QUERY_LEN["kv"]]
    records = occurrences(body, [KEY])  # KEY only starts records (filler and symbols never hold it)
    keys = [tuple(body[i + 1:i + 1 + KV_KEY]) for i in records]
    assert len(records) == max(2, length // 96) and len(set(keys)) == len(keys)
    assert all(body[i + 1 + KV_KEY] == VALUE for i in records)
    assert keys.count(tuple(ex.prompt[-QUERY_LEN["kv"] + 3:-1])) == 1


@pytest.mark.parametrize("task", TASKS)
def test_make_example_rejects_a_length_too_short(task):
    assert len(make_example(task, MIN_LENGTH[task], random.Random(0)).prompt) == MIN_LENGTH[task]
    for length in (MIN_LENGTH[task] - 1, 0):
        with pytest.raises(ValueError, match="too short"):
            make_example(task, length, random.Random(0))


def test_make_example_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="task must be one of"):
        make_example("nope", 256, random.Random(0))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("gen_len", [16, 32])
def test_target_tokens_is_the_answer_then_eos(task, gen_len):
    ex = make_example(task, 128, random.Random(3))
    target = target_tokens(ex, gen_len)
    n = len(ex.answer)
    assert len(target) == gen_len and target[:n] == ex.answer and target[n:] == [EOS] * (gen_len - n)
    assert is_correct(ex, target)


@pytest.mark.parametrize("task", TASKS)
def test_target_tokens_rejects_a_gen_len_without_room_for_eos(task):
    ex = make_example(task, 128, random.Random(4))
    assert target_tokens(ex, len(ex.answer) + 1) == ex.answer + [EOS]  # the tightest fit
    for gen_len in (len(ex.answer), 1):
        with pytest.raises(ValueError, match="cannot hold"):
            target_tokens(ex, gen_len)


@pytest.mark.parametrize("task", TASKS)
def test_is_correct_is_exact_match_up_to_the_first_eos(task):
    ex = make_example(task, 128, random.Random(5))
    a, other = ex.answer, next(t for t in SYMBOLS if t not in ex.answer)
    right = [a + [EOS], a + [EOS, other, other], a + [EOS, EOS, EOS]]
    wrong = [
        a + [other, EOS],            # an extra token before EOS
        [other] + a + [EOS],         # an extra token before the answer
        a[:-1] + [EOS],              # the answer cut short
        a[:-1] + [other, EOS],       # one token wrong
        a + [MASK, MASK],            # never finished: no EOS, masks left
        [EOS] + a,                   # EOS first: empty answer
        [],
    ]
    assert all(is_correct(ex, g) for g in right)
    assert not any(is_correct(ex, g) for g in wrong), [g for g in wrong if is_correct(ex, g)]


def test_held_out_is_deterministic_and_prefix_stable():
    first = held_out("kv", 300, 6)
    assert first == held_out("kv", 300, 6)
    assert held_out("kv", 300, 3) == first[:3]  # example i does not depend on n
    assert len({tuple(e.prompt) for e in first}) == 6 and len({tuple(e.answer) for e in first}) > 1


def test_held_out_differs_across_tasks_lengths_and_seeds():
    by = {(task, length, seed): held_out(task, length, 4, seed=seed)
          for task in TASKS for length in (256, 257) for seed in (10_000, 10_001)}
    for (task, length, _), exs in by.items():
        assert all(e.task == task and len(e.prompt) == length for e in exs)
    answers = [tuple(e.answer) for exs in by.values() for e in exs]
    assert len(set(answers)) == len(answers)  # 48 examples, none sharing its answer with another
    firsts = [exs[0].prompt[HEAD:] for exs in by.values()]  # skip the task's own head token
    assert all(a[:64] != b[:64] for i, a in enumerate(firsts) for b in firsts[i + 1:])
