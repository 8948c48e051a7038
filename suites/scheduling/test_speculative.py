"""Greedy speculative decoding (reference/scheduling/speculative.py) and the fixtures made with it.

Speculative output must equal the target's plain greedy output token for token (Leviathan et al. 2023,
arXiv 2211.17192, at temperature 0), for both drafts; the committed traces must satisfy the trace format.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reference.scheduling.speculative import (EarlyExitDraft, PromptLookupDraft, SpecEngine, SpecSession,
                                              chat_prompt_ids, greedy_decode, measure_step_times, prompt_lookup,
                                              speculative_decode)
from reference.scheduling.trace import emitted, load_traces

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scheduling"
PROMPT_IDS = ("chat-05", "code-01", "rewrite-05")  # a short answer, code, a copy-heavy edit
MAX_NEW = 32
DRAFTS = [PromptLookupDraft(), EarlyExitDraft(6)]


@pytest.fixture(scope="module")
def lm(embedded_lm):
    return embedded_lm


@pytest.fixture(scope="module")
def prompts(lm):
    rows = {r["id"]: r for r in map(json.loads, (FIXTURES / "prompts.jsonl").read_text().splitlines())}
    return {pid: chat_prompt_ids(lm.tokenizer, rows[pid]["text"]) for pid in PROMPT_IDS}


@pytest.fixture(scope="module")
def greedy(lm, prompts):
    engine = SpecEngine(lm.model)
    return {pid: greedy_decode(engine, ids, MAX_NEW) for pid, ids in prompts.items()}


@pytest.mark.slow
@pytest.mark.parametrize("draft", DRAFTS, ids=lambda d: d.kind)
@pytest.mark.parametrize("draft_len", [4])
def test_speculative_equals_greedy(lm, prompts, greedy, draft, draft_len):
    engine = SpecEngine(lm.model, draft, draft_len)
    for pid, ids in prompts.items():
        session = speculative_decode(engine, ids, MAX_NEW)
        assert session.output_ids == greedy[pid], f"{pid} with {draft}: speculative output differs from greedy"
        assert all(0 <= r.accepted <= draft_len for r in session.records), [r.accepted for r in session.records]
        assert sum(len(r.tokens) for r in session.records) == len(session.output_ids)
        assert all(r.draft_s >= 0 and r.verify_s > 0 for r in session.records)
        trace = session.trace(pid, "test")
        assert sum(emitted(trace["accepted"], trace["output_len"])) == trace["output_len"]


@pytest.mark.slow
def test_session_steps_one_at_a_time(lm, prompts, greedy):
    """Two requests interleaved step by step (as a serving loop does) keep their own caches."""
    engine = SpecEngine(lm.model, EarlyExitDraft(6), draft_len=3)
    a, b = (SpecSession(engine, prompts[p], 12) for p in ("code-01", "rewrite-05"))
    while not (a.done and b.done):
        for s in (a, b):
            if not s.done:
                s.step()
    assert a.output_ids == greedy["code-01"][:12] and b.output_ids == greedy["rewrite-05"][:12]
    assert a.prefill_s > 0 and len(a.output_ids) == 12
    with pytest.raises(RuntimeError, match="done"):
        a.step()


@pytest.mark.slow
def test_measure_step_times_shape(lm):
    samples = measure_step_times(SpecEngine(lm.model), contexts=(8, 16), repeats=1, batches=(1, 2))
    assert [(s["batch"], s["context"]) for s in samples] == [(1, 8), (1, 16), (2, 8), (2, 16)]
    assert all(s["verify_ms"] > 0 and s["prefill_ms"] > 0 and s["draft_ms"] >= 0 for s in samples)


@pytest.mark.slow
@pytest.mark.parametrize("make, argument", [
    (lambda m: SpecEngine(m, draft_len=0), "draft_len"),
    (lambda m: SpecEngine(m, EarlyExitDraft(30)), "draft_layers"),
    (lambda m: SpecEngine(m, EarlyExitDraft(0)), "draft_layers"),
    (lambda m: SpecSession(SpecEngine(m), [], 8), "prompt_ids"),
    (lambda m: SpecSession(SpecEngine(m), [1, 2], 0), "max_new_tokens"),
    (lambda m: PromptLookupDraft(max_ngram=1, min_ngram=2), "max_ngram"),
])
def test_bad_arguments(lm, make, argument):
    with pytest.raises(ValueError, match=argument):
        make(lm.model)


@pytest.mark.parametrize("tokens, expected", [
    ([1, 2, 3, 9, 1, 2, 3], [9, 1, 2, 3]),  # trigram match, continuation up to draft_len
    ([5, 1, 2, 7, 1, 2], [7, 1, 2]),        # bigram, continuation runs into the tail: shorter draft
    ([4, 8, 4, 6, 6, 4], [6, 6, 4]),        # unigram 4: its latest earlier match (index 2) wins
    ([1, 2, 3], []),                        # no match: empty draft
    ([7], []),
])
def test_prompt_lookup(tokens, expected):
    assert prompt_lookup(tokens, 4) == expected, tokens


def test_committed_traces_satisfy_the_format():
    path = FIXTURES / "traces_smollm2_cpu.jsonl"
    assert path.stat().st_size < 1_000_000
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    prompts = {json.loads(line)["id"] for line in (FIXTURES / "prompts.jsonl").read_text().splitlines()}
    assert {r["id"] for r in rows} == prompts and len(rows) == len(prompts)
    for r in rows:
        g, acc = r["draft_len"], r["accepted"]
        assert len(acc) == len(r["draft_ms"]) == len(r["verify_ms"]) > 0, r["id"]
        assert all(0 <= a <= g for a in acc), r["id"]
        left = r["output_len"]
        for step, a in enumerate(acc):  # sum(min(a + 1, left)) == output_len, and every step emits a token
            assert left > 0, f"{r['id']}: step {step} comes after output_len is reached"
            left -= min(a + 1, left)
        assert left == 0, f"{r['id']}: the steps emit {r['output_len'] - left} tokens, not {r['output_len']}"
    assert len(load_traces(path)) == len(rows)  # the simulator's loader accepts every line


def test_committed_step_times():
    data = json.loads((FIXTURES / "step_times_cpu.json").read_text())
    assert data["model"] == "smollm2" and data["draft_len"] >= 1 and data["draft"]["kind"]
    for batch in sorted({s["batch"] for s in data["samples"]}):
        contexts = [s["context"] for s in data["samples"] if s["batch"] == batch]
        assert contexts == sorted(set(contexts)), f"batch {batch}: contexts not increasing: {contexts}"
    for s in data["samples"]:
        assert s["draft_ms"] > 0 and s["verify_ms"] > 0 and s["prefill_ms"] > 0, s


def test_calibrate_sd_smoke_on_cpu(tmp_path):
    """The GPU calibration's code path with tiny shapes on the CPU (harness/scheduling/calibrate_sd.py)."""
    from harness.scheduling import calibrate_sd

    out = tmp_path / "steps.json"
    calibrate_sd.main(["--device", "cpu", "--batches", "1,2", "--contexts", "16", "--repeats", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["draft"] == {"kind": "early_exit", "draft_layers": 1, "target_layers": 4}
    assert [(s["batch"], s["context"]) for s in data["samples"]] == [(1, 16), (2, 16)]
    assert all(s["draft_ms"] > 0 and s["verify_ms"] > 0 and s["prefill_ms"] > 0 for s in data["samples"])


@pytest.mark.slow
def test_calibration_shapes_match_the_embedded_model(lm):
    """The random model the GPU calibration times has exactly SmolLM2-135M's parameter shapes."""
    from harness.scheduling.calibrate_sd import random_model

    shapes = {k: tuple(v.shape) for k, v in random_model("smollm2", device="meta").state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in lm.model.state_dict().items()}
