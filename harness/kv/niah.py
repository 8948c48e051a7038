"""Needle in a haystack, passkey variant (docs/evaluation.md).

A random number (the needle) is hidden at a relative depth (0 = start, 1 = end) of filler text; the prompt is
a completion prompt ending in "The pass key is" (on the embedded model the chat template fails at short
contexts, while the completion form retrieves the passkey at every length the committed NIAH records cover:
docs/evaluation.md). The prompt is assembled at the token
level so its length is exactly the requested one. Scoring is exact match of the first number generated.
"""
from __future__ import annotations

import hashlib
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from reference.jsonl import MalformedRowWarning

PROMPT_TEMPLATE = "niah-completion-v1"
INSTRUCTION = "There is a pass key hidden inside a lot of irrelevant text. Find it and remember it. I will quiz you about it.\n"
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "\nWhat is the pass key? The pass key is"
# Our own filler, in the spirit of the repeated-sentence haystack of the passkey test (Mohtashami & Jaggi, 2023).
FILLER = (
    "The river keeps moving. The hills stay quiet. The wind turns the pages of the day. "
    "Morning comes again. Nothing written here is important."
)


@dataclass(frozen=True)
class NiahSample:
    context_ids: list[int]  # instruction + haystack with the needle
    question_ids: list[int]
    answer: str
    length: int  # len(context_ids) + len(question_ids), exactly the requested length
    depth: float
    trial: int
    needle_start: int  # token index of the needle in context_ids


def split_sentences(text: str) -> list[str]:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if not sentences:
        raise ValueError("haystack text holds no sentences")
    return sentences


def load_haystack(path: str | None) -> list[str]:
    """Filler sentences: ours by default, or the sentences of a UTF-8 text file the user gives (`--haystack FILE`).

    A line that is not UTF-8 is reported (a warning naming file:line) and skipped, then one summary warning
    counts them. FileNotFoundError for a missing file or a directory; ValueError for a binary file (NUL bytes)
    or one without a sentence."""
    if path is None:
        return split_sentences(FILLER)
    p = Path(path)
    if not p.is_file():
        kind = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise FileNotFoundError(f"--haystack: {str(path)!r} {kind}")
    data = p.read_bytes()
    if b"\0" in data:
        raise ValueError(f"--haystack: {str(path)!r} is not a text file (it holds NUL bytes)")
    lines, bad = [], 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad += 1
            warnings.warn(f"{path}:{lineno}: not UTF-8 (byte {exc.start}); line skipped", MalformedRowWarning,
                          stacklevel=2)
    if bad:
        warnings.warn(f"{path}: skipped {bad} line{'s' if bad > 1 else ''} that are not UTF-8", MalformedRowWarning,
                      stacklevel=2)
    try:
        return split_sentences("\n".join(lines))
    except ValueError:
        raise ValueError(f"--haystack: {str(path)!r} holds no sentences") from None


def passkey(seed: int, length: int, depth: float, trial: int) -> str:
    digest = hashlib.sha256(f"{seed}/{length}/{depth:.6f}/{trial}".encode()).digest()
    return str(random.Random(digest).randint(10000, 99999))


def build_sample(tokenizer, length: int, depth: float, trial: int, seed: int = 0, haystack: list[str] | None = None) -> NiahSample:
    """A prompt of exactly `length` tokens with the needle at relative `depth` of the haystack."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must lie in [0, 1], got {depth}")
    sentences = haystack or split_sentences(FILLER)
    key = passkey(seed, length, depth, trial)
    encode = lambda s: tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
    head, needle, question = encode(INSTRUCTION), encode(NEEDLE.format(key=key)), encode(QUESTION)
    budget = length - len(head) - len(needle) - len(question)
    if budget < 1:
        raise ValueError(f"length={length} is too short: the instruction, needle and question alone take {length - budget} tokens")
    # The haystack starts at a trial-dependent sentence so trials differ even with repeated filler.
    start = random.Random(f"{seed}/{trial}").randrange(len(sentences))
    chunks: list[list[int]] = []
    total, i = 0, start
    while total < budget:
        ids = encode(" " + sentences[i % len(sentences)])
        chunks.append(ids)
        total += len(ids)
        i += 1
    filler = [t for c in chunks for t in c][:budget]
    # Insert at the sentence boundary nearest the requested depth.
    bounds = [0]
    for c in chunks:
        bounds.append(min(bounds[-1] + len(c), budget))
    cut = min(bounds, key=lambda b: abs(b - depth * budget))
    context = head + filler[:cut] + needle + filler[cut:]
    return NiahSample(context, question, key, len(context) + len(question), depth, trial, len(head) + cut)


def score(prediction: str, answer: str) -> float:
    """Exact match: 1.0 when the first number in the prediction is the passkey."""
    found = re.search(r"\d+", prediction)
    return float(found is not None and found.group(0) == answer)
