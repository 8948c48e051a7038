"""FourierAttention (Liu et al., arXiv 2506.11886): long-context-insensitive channels kept as Fourier coefficients.

Per layer (specs/fourier-attention.md, "Token layout" and "Basis"): the first `sink_tokens` and the last `window`
tokens are exact; for the middle span, the critical channels are exact and the compressed channels (found by
`fourier_search` on calibration text) are projected onto `num_states / 2` frequencies (a cosine and a sine
coefficient each) with period T = context + new tokens - sink - window, then reconstructed with moment matching.
Keys are compressed after RoPE (channels chosen before RoPE, as in the official code). Decoding: a token leaving
the window enters the middle; its critical channels are appended and its compressed channels added to the
coefficients at its phase t = its index in the span (the official code appears to use t + 1; we keep the
phase the reconstruction uses, so a complete basis stays exact). Moment statistics are fixed at compression.

`compression_ratio` sets `num_states`: the bytes held (exact tokens, critical channels of the middle, float32
coefficients and statistics, index lists) are solved to remove that fraction of the full cache's bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from reference.kv.base import METHODS, KVMethod, PrefillLayer, TokenCache, tensor_bytes
from reference.kv.fourier_search import FourierDims, search_dims
from reference.ops.fourier import dft_basis, fourier_compress, fourier_reconstruct, moment_match


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D] (channel c = h * D + d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class FourierChannels:
    """One of K or V: middle span's kept channels exact, compressed channels as coefficients."""

    def __init__(self, mid: torch.Tensor, comp_idx: torch.Tensor, num_freqs: int, period: int, moment_matching: bool):
        channels = mid.shape[-1]
        mask = torch.ones(channels, dtype=torch.bool)
        mask[comp_idx] = False
        self.kept_idx = torch.arange(channels)[mask].to(mid.device)
        self.comp_idx = comp_idx.to(mid.device)
        self.period, self.mid_len = period, mid.shape[1]
        self.mid_kept = mid[:, :, self.kept_idx].contiguous()
        x = mid[:, :, self.comp_idx].float()
        self.cos, self.sin = fourier_compress(x, num_freqs, period)
        if moment_matching:
            self.scale, self.shift = moment_match(x, fourier_reconstruct(self.cos, self.sin, self.mid_len, period))
        else:
            self.scale = torch.ones(x.shape[0], x.shape[2], dtype=torch.float32, device=x.device)
            self.shift = torch.zeros_like(self.scale)

    def push(self, token: torch.Tensor) -> None:
        """Streaming update with one token [B, C] entering the middle at phase t = mid_len."""
        if self.mid_len >= self.period:
            raise RuntimeError(f"the middle span is full (period {self.period}): size the cache with max_new_tokens")
        self.mid_kept = torch.cat([self.mid_kept, token[:, None, self.kept_idx]], dim=1)
        cos, sin = dft_basis(torch.tensor([self.mid_len], device=token.device), self.cos.shape[2], self.period, torch.float32)
        x = token[:, self.comp_idx].float()[:, :, None]
        self.cos = self.cos + x * cos[0]
        self.sin = self.sin + x * sin[0]
        self.mid_len += 1

    def args(self, prefix: str) -> dict:
        return {f"{prefix}_mid_kept": self.mid_kept, f"{prefix}_kept_idx": self.kept_idx, f"{prefix}_comp_idx": self.comp_idx,
                f"{prefix}_cos": self.cos, f"{prefix}_sin": self.sin, f"{prefix}_scale": self.scale, f"{prefix}_shift": self.shift}

    def nbytes(self) -> int:
        return tensor_bytes(self.mid_kept, self.kept_idx, self.comp_idx, self.cos, self.sin, self.scale, self.shift)


class FourierCache:
    """A layer's FourierAttention state: exact sink + local tokens, and K/V middle spans as FourierChannels."""

    def __init__(self, layer: PrefillLayer, sink: int, window: int, k_comp, v_comp, num_freqs: int, period: int,
                 moment_matching: bool):
        n = layer.length
        self.sink, self.window = sink, window
        self.init_k, self.init_v = layer.keys[:, :, :sink].clone(), layer.values[:, :, :sink].clone()
        self.local_k, self.local_v = layer.keys[:, :, n - window :].clone(), layer.values[:, :, n - window :].clone()
        self.k = FourierChannels(_flat(layer.keys[:, :, sink : n - window]), k_comp, num_freqs, period, moment_matching)
        self.v = FourierChannels(_flat(layer.values[:, :, sink : n - window]), v_comp, num_freqs, period, moment_matching)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.local_k = torch.cat([self.local_k, keys], dim=2)
        self.local_v = torch.cat([self.local_v, values], dim=2)
        while self.local_k.shape[2] > self.window:
            self.k.push(_flat(self.local_k[:, :, :1])[:, 0])
            self.v.push(_flat(self.local_v[:, :, :1])[:, 0])
            self.local_k, self.local_v = self.local_k[:, :, 1:], self.local_v[:, :, 1:]

    def attend(self, queries: torch.Tensor, scale: float, impl: str = "reference") -> torch.Tensor:
        from reference.registry import get_impl

        op = get_impl("fourier_decode_attention", impl)
        return op(q=queries, k_exact=torch.cat([self.init_k, self.local_k], 2), v_exact=torch.cat([self.init_v, self.local_v], 2),
                  n_init=self.sink, mid_len=self.k.mid_len, period=self.k.period, scale=scale,
                  **self.k.args("k"), **self.v.args("v"))

    def nbytes(self) -> int:
        return tensor_bytes(self.init_k, self.init_v, self.local_k, self.local_v) + self.k.nbytes() + self.v.nbytes()

    def __len__(self) -> int:
        return self.sink + self.k.mid_len + self.local_k.shape[2]


@METHODS.register("fourier")
@dataclass
class FourierAttention(KVMethod):
    sink_tokens: int = 4
    window: int | None = None  # None: context // 8, clamped to [32, 1020] (1020 is the official 32k setting)
    num_states: int | None = None  # None: solved from compression_ratio
    compressed_fraction_k: float = 0.73
    compressed_fraction_v: float = 0.79
    moment_matching: bool = True
    dims_path: str | None = None
    dims: FourierDims | None = field(default=None, repr=False)
    name = "fourier"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.sink_tokens, int) or self.sink_tokens < 0:
            raise ValueError(f"sink_tokens must be a non-negative integer, got {self.sink_tokens!r}")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"window must be a positive integer or None, got {self.window!r}")
        if self.num_states is not None and (not isinstance(self.num_states, int) or self.num_states < 2):
            raise ValueError(f"num_states must be an integer >= 2 or None, got {self.num_states!r}")
        for name in ("compressed_fraction_k", "compressed_fraction_v"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")

    def calibrate(self, model, calibration_ids: list) -> None:
        if self.dims is not None:
            return
        if self.dims_path:
            self.dims = FourierDims.from_json(self.dims_path)
            return
        self.dims = search_dims(model, calibration_ids, self.compressed_fraction_k, self.compressed_fraction_v, self.sink_tokens)

    def window_for(self, context_length: int) -> int:
        return self.window if self.window is not None else min(1020, max(32, context_length // 8))

    def solve_num_freqs(self, layer: PrefillLayer, window: int, mid_len: int, period: int, ck: int, cv: int) -> int:
        """Frequencies (num_states / 2) that make the state hold (1 - ratio) of the full context's bytes."""
        if self.num_states is not None:
            return self.num_states // 2
        b, h, _, d = layer.keys.shape
        e, c = layer.keys.element_size(), h * d
        full = 2 * b * layer.context_length * c * e
        target = (1 - self.compression_ratio) * full + 2 * b * layer.protected * c * e
        exact = 2 * b * (self.sink_tokens + window) * c * e + b * mid_len * (2 * c - ck - cv) * e
        fixed = exact + 8 * 2 * c + 2 * 4 * b * (ck + cv)  # index lists (int64) + moment stats (float32)
        per_freq = 2 * 4 * b * (ck + cv)  # a cos and a sin coefficient, float32
        n = math.floor((target - fixed) / per_freq) if per_freq else 1
        return max(1, min(n, period // 2 + 1))

    def compress(self, layer: PrefillLayer):
        if self.compression_ratio == 0.0:
            return TokenCache(layer.keys.clone(), layer.values.clone())
        if self.dims is None:
            raise RuntimeError(
                "FourierAttention needs its compressed channels: call calibrate(model, calibration_ids) first "
                "(the harness does), or pass dims= / dims_path= (a FourierDims JSON)"
            )
        if self.dims.num_layers != layer.num_layers or self.dims.channels != layer.keys.shape[1] * layer.keys.shape[3]:
            raise ValueError(f"dims were searched for {self.dims.num_layers} layers x {self.dims.channels} channels, "
                             f"this model has {layer.num_layers} x {layer.keys.shape[1] * layer.keys.shape[3]}")
        window = self.window_for(layer.context_length) + layer.protected
        mid_len = layer.length - self.sink_tokens - window
        k_comp = torch.tensor(self.dims.k_compressed[layer.layer_idx], dtype=torch.long)
        v_comp = torch.tensor(self.dims.v_compressed[layer.layer_idx], dtype=torch.long)
        period = max(1, mid_len + layer.max_new_tokens)
        if mid_len < 2:
            return TokenCache(layer.keys.clone(), layer.values.clone())  # too short to compress (spec)
        n_freq = self.solve_num_freqs(layer, window, mid_len, period, len(k_comp), len(v_comp))
        return FourierCache(layer, self.sink_tokens, window, k_comp, v_comp, n_freq, period, self.moment_matching)
