"""Vanilla decoding: no cache, every step is a full bidirectional forward over prompt and generation (LLaDA)."""
from __future__ import annotations

from reference.dllm.cache import CACHES, DecodeCache


@CACHES.register("vanilla")
class Vanilla(DecodeCache):
    order = 0
