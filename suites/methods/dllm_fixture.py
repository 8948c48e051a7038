"""The trained dLLM fixture (fixtures/dllm/tiny_dllm.pt) and short held-out prompts for it, shared by the dLLM tests.

Prompts stay short (64-96 tokens) and batches small: one forward of the 8-layer fixture over 2 x 80 tokens takes tens
of milliseconds on one busy CPU core, and a test runs a few dozen.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from harness.dllm import tasks
from reference.dllm import checkpoint
from reference.dllm.model import DLLM

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "dllm" / "tiny_dllm.pt"


@functools.lru_cache(maxsize=1)
def fixture_model() -> DLLM:
    """The fixture in float32, without gradients (loaded once per process; callers must not modify it)."""
    return checkpoint.load(FIXTURE, dtype=torch.float32)[0].requires_grad_(False)


def fixture_prompts(task: str = "passkey", length: int = 64, n: int = 2, seed: int = 10_000):
    """(prompt [n, length] long, the examples) of held-out prompts the fixture answers."""
    exs = tasks.held_out(task, length, n, seed=seed)
    return torch.tensor([e.prompt for e in exs], dtype=torch.long), exs
