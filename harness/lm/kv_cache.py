"""A KV method inside any transformers LLaMA-family model, through public extension points only.

Two pieces (docs/design.md, "KV methods"):
- `MethodCache`, a `transformers.Cache` subclass whose layers hold either the exact prefill (while capturing:
  keys, values and the queries the methods score with) or a method's compressed `LayerState`;
- `longctx_attention`, registered in transformers' `AttentionInterface` under `ATTN_IMPLEMENTATION`. The model
  passes our keyword `longctx_cache=` through to it; it attends through the cache's layer, so the mask is built
  for the length the layer really holds (bottom-right causal), not the true sequence length. Because the name is
  not in transformers' mask registry, the model builds no mask of its own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin

from reference.kv.base import KVMethod, LayerState, PrefillLayer

ATTN_IMPLEMENTATION = "longctx_bench"


class CaptureLayer(CacheLayerMixin):
    """Exact keys/values of the prefill plus the queries that produced them (for scoring)."""

    is_compileable = False
    is_sliding = False

    def __init__(self):
        super().__init__()
        self.keys = self.values = self.queries = None

    def lazy_initialization(self, key_states, value_states) -> None:
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if self.keys is None:
            self.keys, self.values = key_states, value_states
            self.is_initialized = True
        else:
            self.keys = torch.cat([self.keys, key_states], dim=2)
            self.values = torch.cat([self.values, value_states], dim=2)
        return self.keys, self.values

    def attend(self, query: torch.Tensor, scale: float, impl: str) -> torch.Tensor:
        self.queries = query if self.queries is None else torch.cat([self.queries, query], dim=2)
        # Prefill attention is exact for every method (FourierAttention spec: "Prefill attention is exact").
        n, total = query.shape[2], self.keys.shape[2]
        group = query.shape[1] // self.keys.shape[1]
        k = self.keys.repeat_interleave(group, dim=1)
        v = self.values.repeat_interleave(group, dim=1)
        if n == total:
            return F.scaled_dot_product_attention(query, k, v, is_causal=True, scale=scale)
        mask = torch.ones(n, total, dtype=torch.bool, device=query.device).tril(total - n)
        return F.scaled_dot_product_attention(query, k, v, attn_mask=mask, scale=scale)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def get_max_length(self) -> int:
        return -1


class StateLayer(CacheLayerMixin):
    """A method's compressed state for one layer; decoded tokens are appended to it."""

    is_compileable = False
    is_sliding = False

    def __init__(self, state: LayerState):
        super().__init__()
        self.state = state
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        self.state.append(key_states, value_states)
        return key_states, value_states  # attention reads the state, not these

    def attend(self, query: torch.Tensor, scale: float, impl: str) -> torch.Tensor:
        return self.state.attend(query, scale, impl=impl)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return len(self.state), 0

    def get_seq_length(self) -> int:
        return len(self.state)

    def get_max_length(self) -> int:
        return -1


class MethodCache(Cache):
    """Cache of a model run under a KV method: capture mode (exact prefill) or compressed mode."""

    def __init__(self, layers: list[CacheLayerMixin], impl: str = "reference"):
        super().__init__(layers=layers)
        self.impl = impl

    @classmethod
    def capture(cls, num_layers: int) -> "MethodCache":
        return cls([CaptureLayer() for _ in range(num_layers)])

    def compress(
        self, method: KVMethod, protected: int = 0, max_new_tokens: int = 0, impl: str = "reference"
    ) -> "MethodCache":
        """A new cache holding `method`'s state of every captured layer (this cache is left untouched)."""
        layers = []
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, CaptureLayer) or layer.keys is None or layer.queries is None:
                raise RuntimeError(f"layer {i} holds no captured prefill; run the prefill with MethodCache.capture first")
            view = PrefillLayer(
                layer_idx=i,
                num_layers=len(self.layers),
                queries=layer.queries,
                keys=layer.keys,
                values=layer.values,
                protected=protected,
                max_new_tokens=max_new_tokens,
            )
            layers.append(StateLayer(method.compress(view)))
        return MethodCache(layers, impl=impl)

    def attend(self, layer_idx: int, query: torch.Tensor, scale: float) -> torch.Tensor:
        return self.layers[layer_idx].attend(query, scale, self.impl)

    def nbytes(self) -> int:
        """Bytes held by the compressed states (capture mode: exact K/V)."""
        total = 0
        for layer in self.layers:
            if isinstance(layer, StateLayer):
                total += layer.state.nbytes()
            elif layer.keys is not None:
                total += layer.keys.numel() * layer.keys.element_size() * 2
        return total


def longctx_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, longctx_cache=None, **kwargs):
    """Attention function registered with transformers: query [B, Hq, n, D] -> output [B, n, Hq, D]."""
    if longctx_cache is None:
        raise RuntimeError(
            f"attention implementation {ATTN_IMPLEMENTATION!r} needs `longctx_cache=` in the model call; "
            "use harness.lm.generate instead of calling the model directly"
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = longctx_cache.attend(module.layer_idx, query, scale)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTN_IMPLEMENTATION, longctx_attention)
