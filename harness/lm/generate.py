"""The KV-method flow: prefill the context, compress, append the question, greedy-decode.

Positions are always the true ones (counted from the full sequence), whatever the cache kept: RoPE needs them,
and a compressed cache's own length would give the wrong ones (docs/design.md, "KV methods").
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch

from harness.cpu_load import LoadSampler
from harness.lm.kv_cache import ATTN_IMPLEMENTATION, MethodCache
from harness.lm.model import LoadedModel
from reference.kv.base import KVMethod
from reference.ops.checks import finite_checks


@dataclass
class Captured:
    """An exact prefill, captured once and compressed by each method in turn."""

    cache: MethodCache
    last_logits: torch.Tensor  # [vocab] at the last prefilled token
    length: int  # tokens prefilled
    protected: int  # trailing question tokens (question-aware) or 0


@dataclass
class Generation:
    token_ids: list[int]
    text: str
    kv_bytes: int  # bytes the method's cache held right after compression
    kv_bytes_full: int  # bytes the full cache would hold for the same tokens
    compress_s: float = 0.0  # wall clock of the method's compression of the captured prefill
    step_ms: list = field(default_factory=list)  # wall clock of each one-token decode step, ms (not the question's prefill)
    load: dict = field(default_factory=dict)  # harness.cpu_load.LoadSampler.summary() over compression and decoding

    @property
    def decode_steps(self) -> int:
        return len(self.step_ms)

    @property
    def decode_s(self) -> float:
        """Wall clock of the one-token decode steps together, s."""
        return sum(self.step_ms) / 1e3


def _clock(device: torch.device) -> float:
    """perf_counter after the device's queued work is done (timings of GPU steps are otherwise launch times)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _cache_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.no_grad()
def forward(lm: LoadedModel, ids: torch.Tensor, start: int, cache: MethodCache) -> torch.Tensor:
    """Run tokens ids [1, n] at true positions start..start+n-1 through the model; logits of the last: [vocab]."""
    model = lm.model
    if model.config._attn_implementation != ATTN_IMPLEMENTATION:
        model.config._attn_implementation = ATTN_IMPLEMENTATION
    n = ids.shape[1]
    positions = torch.arange(start, start + n, device=ids.device).unsqueeze(0)
    kwargs = {_cache_kwarg(model): cache}
    out = model(
        input_ids=ids,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        longctx_cache=cache,
        **kwargs,
    )
    return out.logits[0, -1]


def capture(lm: LoadedModel, context_ids: torch.Tensor, question_ids: torch.Tensor | None = None) -> Captured:
    """Exact prefill of the context (and, question-aware, of the question too), keeping queries for scoring."""
    ids = context_ids if question_ids is None else torch.cat([context_ids, question_ids], dim=1)
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"context_ids must be [1, n] (batch of one), got {tuple(ids.shape)}")
    if ids.shape[1] > lm.max_positions:
        raise ValueError(f"prompt of {ids.shape[1]} tokens exceeds the model's {lm.max_positions} positions")
    cache = MethodCache.capture(lm.num_layers)
    logits = forward(lm, ids, 0, cache)
    protected = 0 if question_ids is None else question_ids.shape[1]
    return Captured(cache, logits, ids.shape[1], protected)


@torch.no_grad()
def generate(
    lm: LoadedModel,
    captured: Captured,
    method: KVMethod,
    question_ids: torch.Tensor | None,
    max_new_tokens: int,
    impl: str = "reference",
) -> Generation:
    """Compress the captured prefill with `method`, append the question (unless already in it), decode greedily.

    The ops' NaN/inf checks are off here: their inputs are the model's own activations, and compress_ms and
    decode_ms_per_token time the method, not a host sync per op call.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    with finite_checks(False), LoadSampler() as load:
        gen = _generate(lm, captured, method, question_ids, max_new_tokens, impl)
    gen.load = load.summary()
    return gen


def _generate(lm, captured, method, question_ids, max_new_tokens, impl) -> Generation:
    pending = 0 if (captured.protected or question_ids is None) else question_ids.shape[1]
    device = captured.last_logits.device
    t0 = _clock(device)
    cache = captured.cache.compress(
        method, protected=captured.protected, max_new_tokens=pending + max_new_tokens, impl=impl
    )
    compress_s = _clock(device) - t0
    kv_bytes, kv_bytes_full = cache.nbytes(), captured.cache.nbytes()
    position = captured.length
    logits = captured.last_logits
    if pending:
        logits = forward(lm, question_ids, position, cache)
        position += pending
    eos = lm.tokenizer.eos_token_id
    out: list[int] = []
    step_ms = []
    while True:
        token = int(torch.argmax(logits))
        if token == eos:
            break
        out.append(token)
        if len(out) == max_new_tokens:
            break
        t0 = _clock(device)
        logits = forward(lm, torch.tensor([[token]], device=device), position, cache)
        step_ms.append(1e3 * (_clock(device) - t0))
        position += 1
    text = lm.tokenizer.decode(out, skip_special_tokens=True)
    return Generation(out, text, kv_bytes, kv_bytes_full, compress_s, step_ms)
