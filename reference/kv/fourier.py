"""FourierAttention (Liu et al., arXiv 2506.11886): long-context-insensitive channels kept as Fourier coefficients.

Per layer (docs/fourier-attention.md): the first `sink_tokens` (official numinittokens
= 4) and the last `window` tokens (maxlocallen) keep every channel exactly. In the middle span the critical
channels stay exact for every token, and the compressed channels (per layer, found by `fourier_search` on
calibration text) become `num_states / 2` frequencies (a cosine and a sine coefficient each, float32) of a real
DFT whose period is the middle's capacity, T = prefill length + max_new_tokens - sink - window - protected (the
spec's max_tokens - numinittokens - maxlocallen). Keys are compressed after RoPE; their channels were chosen on
pre-RoPE keys, as in the official code. Reconstruction is moment matched with statistics fixed at compression.

Decoding (the streaming update): a token leaving the local window enters the middle; its critical channels are
appended and its compressed channels are added to the coefficients at its phase t = its index in the middle span
(0-based, the phase the prefill used for the same slot). The official code appears to give the first evicted
token phase L + 1 instead of L; with ours, streaming equals compressing the extended span from scratch and a
complete basis stays exact. A multi-token chunk (a question appended after compression) stays in the local part
until the next append, so attention over it is exact and bottom-right causal.

`compression_ratio` sets `num_states` when it is None: the bytes held (exact tokens, critical channels of the
middle, coefficients, moment statistics, index lists; `layout_bytes`) are solved for the most frequencies that
keep (1 - ratio) of the full cache's bytes for this layer's length, with at least one frequency (2 states) and at
most middle // 2 (beyond that the exact middle is cheaper). When even 2 states cannot reach the ratio, 2 are used
and the harness reports the true bytes. A middle span shorter than num_states (or than 2) is kept exact.

`window` defaults to an eighth of the context, between 16 tokens and the official 1020 (used at 32k, about 3%):
8k and longer contexts get the official window, 1k-4k ones 128-512 tokens, so the middle is most of the context.

`fractions` picks how many channels each layer compresses: "global" (default) applies `compressed_fraction_k` /
`compressed_fraction_v` in every layer, "per_layer" the official depth bands (`fourier_search.fraction_schedule`).
`period` picks T (reference/ops/fourier_period.py): "span" (default) is the middle's capacity, mid_len +
max_new_tokens; "smooth" the next 7-smooth length >= it and "pow2" the next power of two, lengths an FFT handles
well (pow2 costs accuracy: docs/fourier-attention.md). The ops accept T > mid_len. The number of frequencies is
solved and capped with the capacity in every mode, so all keep as many frequencies and bytes as span and only the
basis (frequencies 2 pi n / T) changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import torch

from reference.kv.base import METHODS, KVMethod, PrefillLayer, TokenCache, tensor_bytes
from reference.kv.fourier_search import FourierDims, check_fraction_mode, search_dims
from reference.ops.checks import check_choice
from reference.ops.fourier import assemble, fourier_compress, fourier_reconstruct, moment_match
from reference.ops.fourier_coefficients import coefficient_plan
from reference.ops.fourier_period import PERIOD_MODES, choose_period
from reference.ops.fourier_update import stream_update_unchecked

OFFICIAL_WINDOW = 1020  # maxlocallen at 32k context (spec, "Token layout")
# attention backend -> decode implementation ("triton": `triton_impl` picks by size)
ATTEND_IMPLS = {"reference": "coefficients"}
# Middle tokens (over the batch) from which the low-rank kernel decodes instead of the token-major one. H100 at
# b4cf8ef (docs/fourier-attention.md): token-major 100.6 against low-rank 109.7 us at 1 x 32k; low-rank 157.8
# against 274.2 at 1 x 128k and 278.4 against 571.8 at 8 x 32k. Between 32k and 128k is unmeasured; 64k splits it.
LOWRANK_MIN_TOKENS = 65536


def triton_impl(batch: int, mid_len: int) -> str:
    """The Triton decode kernel for a batch of `batch` caches with `mid_len` compressed middle tokens each."""
    return "triton_lowrank" if batch * mid_len >= LOWRANK_MIN_TOKENS else "triton_tiles"


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H * D]: channel c = h * D + d, the layout of the dimension lists."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


@dataclass(frozen=True)
class FourierLayout:
    """How one layer's tokens are split: `sink` + `mid_len` (compressed) + `local` exact tokens; the middle's
    coefficients have `num_freqs` frequencies of period `period` (its capacity, >= mid_len)."""

    sink: int
    mid_len: int
    local: int
    period: int
    num_freqs: int


def layout_bytes(layout: FourierLayout, batch: int, channels: int, elem: int, ck: int, cv: int) -> int:
    """Bytes of a FourierCache: `ck`/`cv` compressed channels of K/V out of `channels`; K/V elements of `elem` bytes."""
    exact = 2 * batch * (layout.sink + layout.local) * channels * elem
    mid_kept = batch * layout.mid_len * (2 * channels - ck - cv) * elem
    coefficients = batch * (ck + cv) * 2 * layout.num_freqs * 4  # cos + sin, float32
    stats = batch * (ck + cv) * 2 * 4  # moment-matching scale + shift, float32
    index_lists = 2 * channels * 8  # kept + compressed lists of K and of V, int64
    return exact + mid_kept + coefficients + stats + index_lists


KEPT_PAD_CUDA = 64  # on a GPU the kept rows are padded to a multiple of 64 elements (aligned vector loads)


class FourierSpan:
    """The middle span of K or of V: critical channels exact, compressed channels as coefficients.

    mid_kept: [B, mid_len, Ck] (K/V dtype), a view into a row buffer with room to grow (streamed tokens are written
    in place, amortized O(1) per token) whose rows are padded on a GPU (`KEPT_PAD_CUDA`; the padding is never read);
    cos/sin: [B, Cc, N] float32; scale/shift: [B, Cc] float32; kept_idx/comp_idx: long [Ck], [Cc] over the flattened
    Hkv * D channels, sorted. `nbytes` counts what is held for the span, not the buffer's spare rows or padding.
    """

    def __init__(self, mid: torch.Tensor, comp_idx: torch.Tensor, num_freqs: int, period: int, moment_matching: bool):
        channels = mid.shape[-1]
        kept = torch.ones(channels, dtype=torch.bool, device=mid.device)
        kept[comp_idx] = False
        self.kept_idx = torch.arange(channels, device=mid.device)[kept]
        self.comp_idx = comp_idx
        self.period, self.mid_len = period, mid.shape[1]
        self._rows = self._buffer(mid.shape[0], self.mid_len, mid.dtype, mid.device)
        self._rows[:, : self.mid_len, : self.kept_idx.numel()] = mid[:, :, self.kept_idx]
        x = mid[:, :, self.comp_idx].float()
        self.cos, self.sin = fourier_compress(x, num_freqs, period)
        if moment_matching:
            self.scale, self.shift = moment_match(x, fourier_reconstruct(self.cos, self.sin, self.mid_len, period))
        else:
            self.scale = torch.ones(x.shape[0], x.shape[2], dtype=torch.float32, device=x.device)
            self.shift = torch.zeros_like(self.scale)

    def push(self, tokens: torch.Tensor) -> None:
        """Streaming update: tokens [B, n, C] enter the middle at phases mid_len .. mid_len + n - 1."""
        n = tokens.shape[1]
        if self.mid_len + n > self.period:
            raise RuntimeError(f"the middle span is full ({self.mid_len} of period {self.period} slots, {n} more "
                               "tokens): build the PrefillLayer with max_new_tokens >= the number of tokens appended")
        if self.mid_len + n > self._rows.shape[1]:
            grown = self._buffer(tokens.shape[0], max(self.mid_len + n, self._rows.shape[1] * 3 // 2), tokens.dtype,
                                 tokens.device)
            grown[:, : self.mid_len] = self._rows[:, : self.mid_len]
            self._rows = grown
        self._rows[:, self.mid_len : self.mid_len + n, : self.kept_idx.numel()] = tokens[:, :, self.kept_idx]
        self.cos, self.sin = stream_update_unchecked(self.cos, self.sin, tokens[:, :, self.comp_idx], self.mid_len,
                                                     self.period)
        self.mid_len += n

    def _buffer(self, batch: int, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Room for `rows` middle tokens (at most the period), each row padded on a GPU."""
        pad = KEPT_PAD_CUDA if device.type == "cuda" else 1
        width = -(-self.kept_idx.numel() // pad) * pad
        return torch.zeros(batch, min(max(rows, 1), self.period), width, dtype=dtype, device=device)

    @property
    def mid_kept(self) -> torch.Tensor:
        """[B, mid_len, Ck]: the critical channels of the middle, a view into the row buffer."""
        return self._rows[:, : self.mid_len, : self.kept_idx.numel()]

    def op_args(self, prefix: str) -> dict:
        names = ("mid_kept", "kept_idx", "comp_idx", "cos", "sin", "scale", "shift")
        return {f"{prefix}_{name}": getattr(self, name) for name in names}

    def nbytes(self) -> int:
        return tensor_bytes(self.mid_kept, self.kept_idx, self.comp_idx, self.cos, self.sin, self.scale, self.shift)


class FourierCache:
    """A layer's FourierAttention state: exact sink + local tokens (`k_exact`/`v_exact` [B, Hkv, sink + local, D])
    and the middle spans of K and V (`k_span`/`v_span`). Attention reads sink, middle, local in position order."""

    def __init__(self, layer: PrefillLayer, layout: FourierLayout, k_comp: torch.Tensor, v_comp: torch.Tensor,
                 moment_matching: bool):
        s, m = layout.sink, layout.mid_len
        self.sink, self.window = s, layout.local
        self.k_exact = torch.cat([layer.keys[:, :, :s], layer.keys[:, :, s + m :]], dim=2)
        self.v_exact = torch.cat([layer.values[:, :, :s], layer.values[:, :, s + m :]], dim=2)
        self.k_span = FourierSpan(_flat(layer.keys[:, :, s : s + m]), k_comp, layout.num_freqs, layout.period, moment_matching)
        self.v_span = FourierSpan(_flat(layer.values[:, :, s : s + m]), v_comp, layout.num_freqs, layout.period, moment_matching)
        self.plan = None  # the coefficient-space decode's plan of this layout: made at the first `attend`

    @property
    def local_len(self) -> int:
        return self.k_exact.shape[2] - self.sink

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """keys/values [B, Hkv, n, D] (post-RoPE). The oldest local tokens beyond max(window, n) enter the middle."""
        s, n = self.sink, keys.shape[2]
        leaving = self.local_len + n - max(self.window, n)  # <= local_len: only tokens already local ever leave
        if leaving > 0:
            self.k_span.push(_flat(self.k_exact[:, :, s : s + leaving]))
            self.v_span.push(_flat(self.v_exact[:, :, s : s + leaving]))
        cut = s + max(leaving, 0)  # one copy per step: the sinks, the local tokens that stay, the new tokens
        self.k_exact = torch.cat([self.k_exact[:, :, :s], self.k_exact[:, :, cut:], keys], dim=2)
        self.v_exact = torch.cat([self.v_exact[:, :, :s], self.v_exact[:, :, cut:], values], dim=2)

    def op_args(self) -> dict:
        """Keyword arguments of `fourier_decode_attention` (all but q and scale)."""
        return {"k_exact": self.k_exact, "v_exact": self.v_exact, "n_init": self.sink,
                "mid_len": self.k_span.mid_len, "period": self.k_span.period,
                **self.k_span.op_args("k"), **self.v_span.op_args("v")}

    def attend(self, queries: torch.Tensor, scale: float, impl: str = "reference") -> torch.Tensor:
        """Attention over this cache through `impl`, in coefficient space for both backends: "reference" is the
        PyTorch formulation (reference/ops/fourier_coefficients.py, equal to rebuild-then-attend in float64),
        "triton" the token-major kernel or, from LOWRANK_MIN_TOKENS middle tokens over the batch, the low-rank one
        (`triton_impl`); any other registered name is used as given (`python -m harness ops` lists them; "triton"
        there is the kernel that rebuilds the channels)."""
        from reference.registry import get_impl

        name = triton_impl(queries.shape[0], self.k_span.mid_len) if impl == "triton" else ATTEND_IMPLS.get(impl, impl)
        fn = get_impl("fourier_decode_attention", name)
        if name != "coefficients":
            return fn(q=queries, scale=scale, **self.op_args())
        args = self.op_args()
        if self.plan is not None:  # this cache builds its own layout: checked at the first call, trusted after
            return fn(q=queries, scale=scale, **args, validate=False, plan=self.plan)
        out = fn(q=queries, scale=scale, **args)
        self.plan = coefficient_plan(args["k_kept_idx"], args["k_comp_idx"], args["v_kept_idx"], args["v_comp_idx"],
                                     self.k_exact.shape[1], self.k_exact.shape[3])
        return out

    def keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The K and V attention reads, rebuilt in position order: each [B, Hkv, len(self), D]."""
        a = self.op_args()
        return tuple(assemble(a[f"{p}_exact"], self.sink, a[f"{p}_mid_kept"], a[f"{p}_kept_idx"], a[f"{p}_comp_idx"],
                              a[f"{p}_cos"], a[f"{p}_sin"], a[f"{p}_scale"], a[f"{p}_shift"], a["mid_len"], a["period"])
                     for p in "kv")

    def nbytes(self) -> int:
        return tensor_bytes(self.k_exact, self.v_exact) + self.k_span.nbytes() + self.v_span.nbytes()

    def __len__(self) -> int:
        return self.k_exact.shape[2] + self.k_span.mid_len


@METHODS.register("fourier")
@dataclass
class FourierAttention(KVMethod):
    """FourierAttention with the official layout; see the module docstring for how each field is used.

    dims: the dimension search's result (`FourierDims`); None until `calibrate` runs or `dims_path` is loaded.
    dims_path: a FourierDims JSON to load (or to write the search to, when it does not exist yet).
    fractions: "global" (compressed_fraction_k / _v in every layer) or "per_layer" (the official depth bands).
    period: "span" (T = the middle's capacity), "smooth" (the next 7-smooth length >= it) or "pow2" (the next power
        of two >= it).
    """

    sink_tokens: int = 4
    window: int | None = None
    num_states: int | None = None
    compressed_fraction_k: float = 0.73
    compressed_fraction_v: float = 0.79
    moment_matching: bool = True
    dims: FourierDims | None = field(default=None, repr=False)
    dims_path: str | None = None
    fractions: str = "global"
    period: str = "span"
    # Variants: left out of params() at these values, so records of the default method keep the cell keys they had
    # before the two options existed; boards name a record's variant beside the method (harness.boards.page).
    VARIANT_PARAMS: ClassVar[dict] = {"fractions": "global", "period": "span"}
    order = 7  # listing order
    token_eviction = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("sink_tokens", 0), ("window", 0), ("num_states", 2)):
            v = getattr(self, name)
            if v is None and name != "sink_tokens":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}{'' if name == 'sink_tokens' else ' or None'}, got {v!r}")
        if self.num_states is not None and self.num_states % 2:
            raise ValueError(f"num_states must be even (a cosine and a sine per frequency), got {self.num_states}")
        for name in ("compressed_fraction_k", "compressed_fraction_v"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
        check_fraction_mode(self.fractions)
        check_choice("period", self.period, PERIOD_MODES)
        if self.fractions == "per_layer" and (self.compressed_fraction_k, self.compressed_fraction_v) != (0.73, 0.79):
            raise ValueError("compressed_fraction_k / compressed_fraction_v apply only with fractions='global'; "
                             "fractions='per_layer' uses the official per-layer schedule")
        if not isinstance(self.moment_matching, bool):
            raise TypeError(f"moment_matching must be a bool, got {type(self.moment_matching).__name__}")
        if isinstance(self.dims, dict):  # params() round trip: asdict() turned dims into a dict
            self.dims = FourierDims.from_dict(self.dims)
        if self.dims is not None and not isinstance(self.dims, FourierDims):
            raise TypeError(f"dims must be a FourierDims or None, got {type(self.dims).__name__}")
        if self.dims_path is not None and not isinstance(self.dims_path, (str, Path)):
            raise TypeError(f"dims_path must be a path or None, got {type(self.dims_path).__name__}")

    def params(self) -> dict:
        """The recorded parameters; `fractions` / `period` only when not at their defaults (see the class)."""
        out = super().params()
        for name, default in self.VARIANT_PARAMS.items():
            if out.get(name) == default:
                del out[name]
        return out

    # ------------------------------------------------------------ calibration
    def _load_dims(self, path) -> FourierDims:
        """A FourierDims JSON, refused when its search used other `fractions` than this method."""
        dims = FourierDims.from_json(path)
        searched = dims.settings.get("fractions", "global")
        if searched != self.fractions:
            raise ValueError(f"dims_path {str(path)!r} was searched with fractions={searched!r}, this method has "
                             f"fractions={self.fractions!r}: give another dims_path")
        return dims

    def calibrate(self, model, calibration_ids: list) -> None:
        """Load `dims_path` if it exists, else run the dimension search (saved to `dims_path` when given)."""
        if self.dims is not None:
            return
        if self.dims_path is not None and Path(self.dims_path).is_file():
            self.dims = self._load_dims(self.dims_path)
            return
        self.dims = search_dims(model, calibration_ids, self.compressed_fraction_k, self.compressed_fraction_v,
                                sink_tokens=self.sink_tokens, fractions=self.fractions)
        if self.dims_path is not None:
            self.dims.to_json(self.dims_path)

    def _dims_for(self, layer: PrefillLayer) -> FourierDims:
        if self.dims is None and self.dims_path is not None and Path(self.dims_path).is_file():
            self.dims = self._load_dims(self.dims_path)
        if self.dims is None:
            raise RuntimeError(
                "FourierAttention has no compressed dimensions yet: call method.calibrate(model, calibration_ids) "
                "first (the harness does it once per model), or pass dims= (a FourierDims) or dims_path= (its JSON)")
        channels = layer.keys.shape[1] * layer.keys.shape[3]
        if self.dims.num_layers != layer.num_layers or self.dims.channels != channels:
            raise ValueError(f"dims were searched for {self.dims.num_layers} layers x {self.dims.channels} channels; "
                             f"this model has {layer.num_layers} layers x {channels} channels (Hkv * D): calibrate again")
        return self.dims

    # ------------------------------------------------------------ layout and budget
    def window_for(self, context_length: int) -> int:
        """Local window for a context (module docstring): `window`, or context // 8 within [16, 1020]."""
        return self.window if self.window is not None else min(OFFICIAL_WINDOW, max(16, context_length // 8))

    def layout(self, layer: PrefillLayer, ck: int, cv: int) -> FourierLayout | None:
        """The split of `layer` with `ck`/`cv` compressed channels of K/V, or None when it is kept exact."""
        local = self.window_for(layer.context_length) + layer.protected
        sink = min(self.sink_tokens, layer.length)
        mid_len = layer.length - sink - local
        if mid_len < max(2, self.num_states or 2):
            return None  # spec: sequences shorter than init + states + local are not compressed
        capacity = mid_len + layer.max_new_tokens
        period = choose_period(capacity, self.period)
        if self.num_states is not None:  # capped by the capacity, not the period: pow2 keeps span's count
            return FourierLayout(sink, mid_len, local, period, min(self.num_states // 2, capacity // 2 + 1))
        b, h, _, d = layer.keys.shape
        elem, channels = layer.keys.element_size(), h * d
        target = (1 - self.compression_ratio) * 2 * b * layer.context_length * channels * elem
        target += 2 * b * layer.protected * channels * elem  # the question is kept and not part of the budget
        base = layout_bytes(FourierLayout(sink, mid_len, local, period, 0), b, channels, elem, ck, cv)
        per_freq = b * (ck + cv) * 2 * 4
        n = math.floor((target - base) / per_freq) if per_freq else 1
        return FourierLayout(sink, mid_len, local, period, max(1, min(n, mid_len // 2)))

    def compress(self, layer: PrefillLayer) -> FourierCache | TokenCache:
        if self.compression_ratio == 0.0:
            return TokenCache(layer.keys.clone(), layer.values.clone())
        dims = self._dims_for(layer)
        device = layer.keys.device
        k_comp = torch.tensor(dims.k_compressed[layer.layer_idx], dtype=torch.long, device=device)
        v_comp = torch.tensor(dims.v_compressed[layer.layer_idx], dtype=torch.long, device=device)
        layout = self.layout(layer, k_comp.numel(), v_comp.numel())
        if layout is None:
            return TokenCache(layer.keys.clone(), layer.values.clone())
        return FourierCache(layer, layout, k_comp, v_comp, self.moment_matching)
