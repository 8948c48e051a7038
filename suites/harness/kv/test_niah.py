"""NIAH prompt construction and scoring."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.kv import niah


@pytest.fixture(scope="module")
def tokenizer(tiny_lm):
    return tiny_lm.tokenizer


@settings(max_examples=8)
@given(length=st.integers(120, 900), depth=st.floats(0, 1), trial=st.integers(0, 5), seed=st.integers(0, 100))
def test_prompt_has_exact_length_and_needle_at_depth(tokenizer, length, depth, trial, seed):
    s = niah.build_sample(tokenizer, length, depth, trial, seed)
    assert s.length == length == len(s.context_ids) + len(s.question_ids)
    text = tokenizer.decode(s.context_ids)
    assert f"The pass key is {s.answer}." in text
    needle = tokenizer(niah.NEEDLE.format(key=s.answer), add_special_tokens=False).input_ids
    assert s.context_ids[s.needle_start : s.needle_start + len(needle)] == needle
    head = len(tokenizer(niah.INSTRUCTION, add_special_tokens=False).input_ids)
    haystack = len(s.context_ids) - head - len(needle)
    # Sentence-boundary placement: within one filler sentence (< 16 tokens) of the requested depth.
    assert abs((s.needle_start - head) - depth * haystack) <= 16
    assert tokenizer.decode(s.question_ids).rstrip().endswith("The pass key is")


def test_passkey_is_seeded_and_varies():
    keys = {niah.passkey(0, 1024, d, t) for d in (0.0, 0.5, 1.0) for t in range(4)}
    assert len(keys) > 8
    assert niah.passkey(3, 2048, 0.25, 1) == niah.passkey(3, 2048, 0.25, 1)
    assert niah.passkey(3, 2048, 0.25, 1) != niah.passkey(4, 2048, 0.25, 1)


@pytest.mark.parametrize(
    "prediction,answer,expected",
    [(" 48213. Remember it.", "48213", 1.0), (" 4821", "48213", 0.0), ("482130", "48213", 0.0),
     ("it is 48213", "48213", 1.0), (" 11111 or 48213", "48213", 0.0), ("", "48213", 0.0)],
)
def test_score_is_exact_match_of_first_number(prediction, answer, expected):
    assert niah.score(prediction, answer) == expected


def test_haystack_file_is_used(tokenizer, tmp_path):
    f = tmp_path / "hay.txt"
    f.write_text("Zebras graze at dawn. Owls hoot at night! Does the moon glow?")
    s = niah.build_sample(tokenizer, 300, 0.5, 0, haystack=niah.load_haystack(str(f)))
    assert "Zebras graze at dawn." in tokenizer.decode(s.context_ids)
    with pytest.raises(FileNotFoundError, match="haystack"):
        niah.load_haystack(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("   ")
    with pytest.raises(ValueError, match="no sentences"):
        niah.load_haystack(str(empty))


def test_bad_sample_arguments(tokenizer):
    with pytest.raises(ValueError, match="too short"):
        niah.build_sample(tokenizer, 20, 0.5, 0)
    with pytest.raises(ValueError, match="depth"):
        niah.build_sample(tokenizer, 500, 1.5, 0)
