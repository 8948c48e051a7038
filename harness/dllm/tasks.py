"""Synthetic long-context tasks for the small dLLM we train (token ids, no tokenizer): passkey, key-value
retrieval, and copying a span named earlier (RULER-style synthetic retrieval, arXiv 2404.06654; the survey
arXiv 2502.17129 frames them). Each example is a prompt of exactly `length` tokens ending with a query, and an
answer of a few tokens; the model must write the answer then EOS into `gen_len` masked positions.

Vocabulary (VOCAB_SIZE 512): specials, ten digits, task and structure markers, 256 filler "words" (the haystack)
and 224 symbols (keys, values, span names and span contents).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

BOS, EOS, MASK, SEP = 0, 1, 2, 3
DIGITS = list(range(4, 14))
PASSKEY, KEY, VALUE, SPAN_OPEN, SPAN_CLOSE = 14, 15, 16, 17, 18
TASK_TOKEN = {"passkey": 19, "kv": 20, "copy": 21}
FILLER = list(range(32, 288))
SYMBOLS = list(range(288, 512))
VOCAB_SIZE = 512
TASKS = tuple(TASK_TOKEN)
PASSKEY_DIGITS, KV_KEY, KV_VALUE, SPAN_LEN, N_SPANS = 5, 2, 4, 8, 4


@dataclass(frozen=True)
class Example:
    task: str
    prompt: list[int]
    answer: list[int]
    depth: float  # where the needle sits in the context, 0 = start, 1 = end


def _filler(rng: random.Random, n: int) -> list[int]:
    return [rng.choice(FILLER) for _ in range(n)]


def _place(rng: random.Random, body_len: int, needles: list[list[int]]) -> tuple[list[int], list[int]]:
    """Filler of body_len tokens with the needles inserted at random, non-overlapping offsets (in order given)."""
    room = body_len - sum(len(n) for n in needles)
    if room < 0:
        raise ValueError(f"length too short for the task: needles need {body_len - room} tokens, have {body_len}")
    cuts = sorted(rng.randint(0, room) for _ in needles)
    out, starts, prev = [], [], 0
    for cut, needle in zip(cuts, needles):
        out += _filler(rng, cut - prev)
        starts.append(len(out))
        out += needle
        prev = cut
    out += _filler(rng, room - prev)
    return out, starts


def make_example(task: str, length: int, rng: random.Random) -> Example:
    """One example with a prompt of exactly `length` tokens."""
    if task not in TASK_TOKEN:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    head = [BOS, TASK_TOKEN[task]]
    if task == "passkey":
        answer = [rng.choice(DIGITS) for _ in range(PASSKEY_DIGITS)]
        query = [SEP, TASK_TOKEN[task], PASSKEY]
        body, starts = _place(rng, length - len(head) - len(query), [[PASSKEY] + answer])
        target = 0
    elif task == "kv":
        n_pairs = max(2, length // 96)
        keys = set()
        while len(keys) < n_pairs:
            keys.add(tuple(rng.choice(SYMBOLS) for _ in range(KV_KEY)))
        keys = list(keys)
        values = [[rng.choice(SYMBOLS) for _ in range(KV_VALUE)] for _ in keys]
        target = rng.randrange(n_pairs)
        query = [SEP, TASK_TOKEN[task], KEY, *keys[target], VALUE]
        records = [[KEY, *k, VALUE, *v] for k, v in zip(keys, values)]
        body, starts = _place(rng, length - len(head) - len(query), records)
        answer = values[target]
    else:
        names = rng.sample(SYMBOLS, N_SPANS)
        spans = [[rng.choice(SYMBOLS + FILLER) for _ in range(SPAN_LEN)] for _ in names]
        target = rng.randrange(N_SPANS)
        query = [SEP, TASK_TOKEN[task], SPAN_OPEN, names[target]]
        records = [[SPAN_OPEN, n, *s, SPAN_CLOSE] for n, s in zip(names, spans)]
        body, starts = _place(rng, length - len(head) - len(query), records)
        answer = spans[target]
    prompt = head + body + query
    assert len(prompt) == length
    return Example(task, prompt, answer, starts[target] / max(1, len(body)))


def target_tokens(ex: Example, gen_len: int) -> list[int]:
    """The gen_len tokens the model should write: the answer, then EOS to the end."""
    if len(ex.answer) + 1 > gen_len:
        raise ValueError(f"gen_len {gen_len} cannot hold the {ex.task} answer ({len(ex.answer)} tokens) and EOS")
    return ex.answer + [EOS] * (gen_len - len(ex.answer))


def is_correct(ex: Example, generated: list[int]) -> bool:
    """Exact match: the tokens before the first EOS equal the answer."""
    cut = generated.index(EOS) if EOS in generated else len(generated)
    return generated[:cut] == ex.answer


def held_out(task: str, length: int, n: int, seed: int = 10_000) -> list[Example]:
    """n evaluation examples; seeds >= 10_000 are never drawn by training (harness/dllm/train.py uses < 10_000
    per-run seeds on a separate stream), and each (task, length, i) is reproducible."""
    return [make_example(task, length, random.Random(f"eval-{seed}-{task}-{length}-{i}")) for i in range(n)]
