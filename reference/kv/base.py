"""The contract every KV-cache compression method follows (docs/design.md, "KV methods").

A method sees one layer's prefill (post-RoPE queries, keys, values) and returns that layer's cache state.
The state appends decoded tokens, attends a query against what it holds, and reports the bytes it holds.
Compression happens once, after the prefill of the context (kvpress convention, docs/kv-baselines.md);
with `question_aware` the question is part of the prefill and its tokens are `protected` (always kept).

`compression_ratio` is the one knob shared by all methods: the fraction of the context's KV bytes removed
(0 = full cache). Each method turns it into its own budget (`token_budget` for token-eviction methods).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from reference.registry import Registry

METHODS = Registry("KV method", packages=("reference.kv",))  # every file of reference/kv, auto-loaded
# How a compression ratio becomes a token budget (`KVMethod.token_budget`); suites record it in each record's protocol
# so records made under an earlier rule (none named: one token more where R * n is not an integer) never pool with these.
BUDGET_RULE = "floor((1 - R) * n)"


@dataclass
class PrefillLayer:
    """One layer's prefill as a method sees it.

    queries: [B, Hq, L, D] and keys/values: [B, Hkv, L, D], after RoPE (keys are what attention reads).
    protected: number of trailing tokens that must be kept exactly (the question in question-aware mode);
      they are not part of the context and not counted in the budget.
    max_new_tokens: how many tokens will be appended after compression (FourierAttention sizes its span).
    """

    layer_idx: int
    num_layers: int
    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    protected: int = 0
    max_new_tokens: int = 0

    def __post_init__(self) -> None:
        q, k, v = self.queries, self.keys, self.values
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise ValueError(f"queries/keys/values must be 4-D [B, H, L, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if k.shape != v.shape:
            raise ValueError(f"keys {tuple(k.shape)} and values {tuple(v.shape)} must have the same shape")
        if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2] or q.shape[3] != k.shape[3]:
            raise ValueError(f"queries {tuple(q.shape)} do not match keys {tuple(k.shape)} in batch, length or head_dim")
        if q.shape[1] % k.shape[1]:
            raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of KV heads ({k.shape[1]})")
        if not 0 <= self.protected <= k.shape[2]:
            raise ValueError(f"protected={self.protected} must lie in [0, {k.shape[2]}]")

    @property
    def length(self) -> int:
        return self.keys.shape[2]

    @property
    def context_length(self) -> int:
        return self.length - self.protected

    @property
    def group_size(self) -> int:
        return self.queries.shape[1] // self.keys.shape[1]


class LayerState(Protocol):
    """A layer's cache after compression."""

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add decoded tokens, keys/values [B, Hkv, n, D] (post-RoPE)."""

    def attend(self, queries: torch.Tensor, scale: float, impl: str = "reference") -> torch.Tensor:
        """Attention of queries [B, Hq, n, D] (the last n tokens appended) over the state: [B, Hq, n, D]."""

    def nbytes(self) -> int:
        """Bytes the state's tensors actually hold."""

    def __len__(self) -> int:
        """Token slots attention reads (kept tokens; for Fourier, the reconstructed span counts)."""


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class TokenCache:
    """Exact keys/values of the kept tokens, in position order: the state of every token-eviction method."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys = keys.contiguous()
        self.values = values.contiguous()

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys = torch.cat([self.keys, keys], dim=2)
        self.values = torch.cat([self.values, values], dim=2)

    def attend(self, queries: torch.Tensor, scale: float, impl: str = "reference") -> torch.Tensor:
        from reference.registry import get_impl

        attention = get_impl("attention", impl)
        return attention(q=queries, k=self.keys, v=self.values, causal=True, scale=scale)

    def nbytes(self) -> int:
        return tensor_bytes(self.keys, self.values)

    def __len__(self) -> int:
        return self.keys.shape[2]


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x: [B, H, L, D], idx: [B, H, k] (long) -> [B, H, k, D]."""
    return torch.gather(x, 2, idx.unsqueeze(-1).expand(*idx.shape, x.shape[-1]))


def keep_top_scores(layer: PrefillLayer, scores: torch.Tensor, budget: int) -> TokenCache:
    """Keep, per KV head, the `budget` context tokens with the highest scores, plus the protected tail.

    scores: [B, Hkv, context_length]. Ties break toward the earlier position (stable, documented so kernels
    can match index sets exactly). Kept tokens stay in position order.
    """
    n = layer.context_length
    if scores.shape != (layer.keys.shape[0], layer.keys.shape[1], n):
        raise ValueError(f"scores must be [B, Hkv, context_length]={(layer.keys.shape[0], layer.keys.shape[1], n)}, got {tuple(scores.shape)}")
    budget = max(0, min(budget, n))
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :budget]
    idx = torch.sort(order, dim=-1).values
    if layer.protected:
        tail = torch.arange(n, layer.length, device=idx.device).expand(*idx.shape[:2], layer.protected)
        idx = torch.cat([idx, tail], dim=-1)
    return TokenCache(gather_tokens(layer.keys, idx), gather_tokens(layer.values, idx))


@dataclass
class KVMethod:
    """Base of every method: holds `compression_ratio`; subclasses add their own parameters as fields."""

    compression_ratio: float = 0.0
    name: ClassVar[str] = "base"  # set by @METHODS.register(name)
    order: ClassVar[float] = math.inf  # where `harness methods` and the default --methods list it
    question_aware_default: ClassVar[bool] = False
    # Parameters recorded only away from these defaults (a method's later options); boards label such records
    # "method (name=value)" so a variant never pools with the method's default.
    VARIANT_PARAMS: ClassVar[dict] = {}
    token_eviction: ClassVar[bool] = True  # its state is a TokenCache (the token-method property tests check it)

    def __post_init__(self) -> None:
        r = self.compression_ratio
        if not isinstance(r, (int, float)) or not math.isfinite(r) or not 0.0 <= r < 1.0:
            raise ValueError(f"compression_ratio must be a number in [0, 1), got {r!r}")

    def token_budget(self, context_length: int) -> int:
        """Context tokens kept when at least a fraction `compression_ratio` of them is removed: the floor of
        (1 - ratio) * n, i.e. n - ceil(ratio * n) (the 1e-9 absorbs float error in ratio * n), and at least 1.
        At ratio 0.5 a 2025-token context keeps 1012. kvpress keeps int(n * (1 - ratio)), the same number except
        where float error pulls the product just below an integer."""
        removed = math.ceil(self.compression_ratio * context_length - 1e-9)
        return max(1, context_length - removed)

    def calibrate(self, model, calibration_ids: list) -> None:
        """Prepare model-specific parameters from calibration token ids (list of [1, L] LongTensors).

        Most methods need nothing; FourierAttention searches its compressed dimensions here. The harness calls
        it once per model before compressing.
        """

    def compress(self, layer: PrefillLayer) -> LayerState:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self) -> dict:
        """The method's own parameters, recorded with every result."""
        from dataclasses import asdict

        return asdict(self)
