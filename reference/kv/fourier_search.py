"""FourierAttention's dimension search: which K and V channels of each layer to compress, from calibration text.

Facts (docs/fourier-attention.md; official `compressed_dims_search/compressed_dim_search.py`):
forward hooks on each layer's `k_proj` / `v_proj` give K before RoPE and V; every prompt is split into 4 initial
tokens, a middle span and the last 1024 tokens; the middle of every channel is compressed onto a truncated
Fourier basis whose period is the middle's length, reconstructed with moment matching, and scored by its mean
squared error; errors are averaged over prompts; all KV-head channels of a layer are ranked together and the
lowest-error fraction is compressed (so the count per head varies).

Scaling to short prompts. The official split assumes ~4k-token prompts: 1024 local tokens (a quarter) and 512
frequencies for a ~3k middle (a sixth of it). We keep those proportions: local = min(1024, L // 4) and
num_freqs = middle // 6, unless `window` / `num_states` are given.

Fractions per layer (`fraction_schedule`). "global" compresses the same fraction of K (default 0.73) and of V
(0.79) channels in every layer: the official overall totals. "per_layer" is the official procedure: its search
hard-codes fractions by layer band (Llama-3.2-3B, 28 layers: K 0.9 / V 0.95 in layers 0-3, K 0.5 / V 0.7 in
layers 20-27, 0.8 / 0.8 in between; Llama-3.1-8B, 32 layers: the same with the last band at layers 24-31). For a
model of L layers we scale the 28-layer bands by relative depth: layer i takes the band that holds its midpoint
(i + 1/2) / L, the bands being [0, 4/28), [4/28, 20/28) and [20/28, 1]. At L = 28 that is the official 3B
table; at L = 32 it gives layers 0-4 and 23-31 (one more layer in each outer band than the official 8B table).
In either mode channels are ranked per layer by reconstruction error, as above.

Searches are cached per model in `$LONGCTX_CACHE/fourier_dims/<hash>.json` (LONGCTX_CACHE defaults to
~/.cache/longctx-bench), keyed by the model config, a fingerprint of its weights, the settings (the fraction
mode and its per-layer schedule included, so a global and a per-layer search never share a file) and the
calibration ids.
"""
from __future__ import annotations

import hashlib
import logging
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reference.ops.checks import check_choice
from reference.ops.fourier import fourier_compress, fourier_reconstruct, moment_match

LOG = logging.getLogger("longctx.fourier_search")  # the harness prints INFO lines of "longctx.*" as progress
SEARCH_VERSION = 2  # bump when the search changes, so cached results are not reused


@dataclass(frozen=True)
class FourierDims:
    """Per layer, the compressed ("non-critical") channels of K and of V, over the flattened Hkv * D channels.

    Channel c is KV head c // D, dimension c % D. Lists are stored sorted; the kept (critical) channels are the
    rest (`k_kept`, `v_kept`). `settings` records how the search ran (fractions, split, calibration size).
    """

    k_compressed: tuple[tuple[int, ...], ...]
    v_compressed: tuple[tuple[int, ...], ...]
    channels: int
    model_id: str = ""
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"channels must be a positive integer (Hkv * D), got {self.channels!r}")
        if len(self.k_compressed) != len(self.v_compressed):
            raise ValueError(f"k_compressed ({len(self.k_compressed)} layers) and v_compressed "
                             f"({len(self.v_compressed)} layers) must list the same layers")
        for name in ("k_compressed", "v_compressed"):
            lists = tuple(tuple(sorted(int(c) for c in idx)) for idx in getattr(self, name))
            for i, idx in enumerate(lists):
                if len(set(idx)) != len(idx) or any(not 0 <= c < self.channels for c in idx):
                    raise ValueError(f"{name}[{i}] must hold distinct channels in [0, {self.channels})")
            object.__setattr__(self, name, lists)

    @property
    def num_layers(self) -> int:
        return len(self.k_compressed)

    @property
    def k_kept(self) -> tuple[tuple[int, ...], ...]:
        return tuple(_complement(idx, self.channels) for idx in self.k_compressed)

    @property
    def v_kept(self) -> tuple[tuple[int, ...], ...]:
        return tuple(_complement(idx, self.channels) for idx in self.v_compressed)

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "channels": self.channels, "settings": dict(self.settings),
                "k_compressed": [list(x) for x in self.k_compressed], "v_compressed": [list(x) for x in self.v_compressed],
                "k_kept": [list(x) for x in self.k_kept], "v_kept": [list(x) for x in self.v_kept]}

    @classmethod
    def from_dict(cls, raw: dict) -> "FourierDims":
        dims = cls(tuple(map(tuple, raw["k_compressed"])), tuple(map(tuple, raw["v_compressed"])), int(raw["channels"]),
                   str(raw.get("model_id", "")), dict(raw.get("settings", {})))
        for name in ("k_kept", "v_kept"):  # optional, written for readers; must agree when present
            if name in raw and tuple(map(tuple, map(sorted, raw[name]))) != getattr(dims, name):
                raise ValueError(f"{name} does not complement {name[0]}_compressed")
        return dims

    def to_json(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        tmp.replace(path)  # atomic: a crash never leaves half a file in the cache

    @classmethod
    def from_json(cls, path: str | Path) -> "FourierDims":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"dims_path {str(path)!r} is not a FourierDims JSON file: {exc}") from exc


def _complement(idx: tuple[int, ...], channels: int) -> tuple[int, ...]:
    taken = set(idx)
    return tuple(c for c in range(channels) if c not in taken)


# ---------------------------------------------------------------- ranking (pure functions, no model)
def calibration_split(length: int, sink_tokens: int = 4, window: int | None = None,
                      num_states: int | None = None) -> tuple[int, int, int, int]:
    """(sink, middle, local, num_freqs) for a calibration prompt of `length` tokens (module docstring)."""
    local = min(1024, length // 4) if window is None else window
    middle = length - sink_tokens - local
    num_freqs = max(1, middle // 6) if num_states is None else num_states // 2
    if middle < 2 * num_freqs or middle < 4:
        raise ValueError(f"a calibration prompt of {length} tokens is too short: after {sink_tokens} sink and {local} "
                         f"local tokens its middle ({middle}) must hold at least max(4, {2 * num_freqs}) tokens")
    return sink_tokens, middle, local, num_freqs


def channel_errors(x: torch.Tensor, sink_tokens: int = 4, window: int | None = None, num_states: int | None = None,
                   moment_matching: bool = True) -> torch.Tensor:
    """Reconstruction MSE of each channel's middle span for one sample x: [L, C] -> [C] float64."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"each sample must be a [L, C] tensor, got {getattr(x, 'shape', type(x).__name__)}")
    s, m, _, n_freq = calibration_split(x.shape[0], sink_tokens, window, num_states)
    mid = x[s : s + m].double()[None]  # [1, m, C]
    rec = fourier_reconstruct(*fourier_compress(mid, n_freq, m), m, m)  # period = the middle (official dt)
    if moment_matching:
        scale, shift = moment_match(mid, rec)
        rec = rec * scale[:, None] + shift[:, None]
    return ((rec - mid) ** 2).mean(dim=1)[0]


def rank_channels(samples: list[torch.Tensor], sink_tokens: int = 4, window: int | None = None,
                  num_states: int | None = None, moment_matching: bool = True) -> torch.Tensor:
    """Mean reconstruction MSE per channel over calibration samples ([L, C] each, L may differ): errors [C].

    Lower error = the channel's middle is better described by the few frequencies = safe to compress.
    """
    if not samples:
        raise ValueError("samples must hold at least one [L, C] tensor")
    errors = [channel_errors(x, sink_tokens, window, num_states, moment_matching) for x in samples]
    if len({e.shape for e in errors}) != 1:
        raise ValueError(f"samples must share their channel count, got {sorted({e.numel() for e in errors})}")
    return torch.stack([e.cpu() for e in errors]).mean(dim=0)


FRACTION_MODES = ("global", "per_layer")
# The official schedule (Llama-3.2-3B's dimension search): (end of the band as a fraction of 28 layers, K, V).
OFFICIAL_BANDS = ((4, 0.9, 0.95), (20, 0.8, 0.8), (28, 0.5, 0.7))
OFFICIAL_LAYERS = 28


def check_fraction_mode(fractions) -> str:
    """`fractions` must be one of FRACTION_MODES."""
    return check_choice("fractions", fractions, FRACTION_MODES)


def official_band_fractions(layer: int, num_layers: int) -> tuple[float, float]:
    """(K, V) compressed fractions of `layer` of `num_layers` under the official schedule scaled by depth
    (module docstring): the band [start/28, end/28) holding the layer's midpoint (layer + 1/2) / num_layers.

    Integer test, no rounding: (2 layer + 1) * 28 < 2 end * num_layers.
    """
    for name, v in (("layer", layer), ("num_layers", num_layers)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an integer, got {v!r}")
    if num_layers < 1 or not 0 <= layer < num_layers:
        raise ValueError(f"layer must lie in [0, num_layers) with num_layers >= 1, got layer {layer} of {num_layers}")
    for end, k, v in OFFICIAL_BANDS:
        if (2 * layer + 1) * OFFICIAL_LAYERS < 2 * end * num_layers:
            return k, v
    return OFFICIAL_BANDS[-1][1:]  # unreachable: the last band ends at 28/28


def fraction_schedule(fractions: str, num_layers: int, fraction_k: float = 0.73,
                      fraction_v: float = 0.79) -> tuple[tuple[float, float], ...]:
    """Per layer, the (K, V) fractions of channels to compress: `fraction_k` / `fraction_v` everywhere ("global")
    or the official per-layer bands ("per_layer", `official_band_fractions`; the global fractions are unused)."""
    check_fraction_mode(fractions)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if fractions == "per_layer":
        return tuple(official_band_fractions(i, num_layers) for i in range(num_layers))
    for name, f in (("fraction_k", fraction_k), ("fraction_v", fraction_v)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {f!r}")
    return tuple((float(fraction_k), float(fraction_v)) for _ in range(num_layers))


def choose_compressed(errors: torch.Tensor, fraction: float) -> tuple[int, ...]:
    """The round(fraction * C) channels with the lowest error (ties: the lower index), sorted."""
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    k = int(round(fraction * errors.numel()))
    order = torch.sort(errors, stable=True).indices[:k]
    return tuple(sorted(order.tolist()))


# ---------------------------------------------------------------- the search on a model
def _attention_layers(model):
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not all(hasattr(getattr(l, "self_attn", None), "k_proj") and hasattr(l.self_attn, "v_proj")
                                 for l in layers):
        raise ValueError("model must be a LLaMA-family transformers model with model.model.layers[i].self_attn."
                         f"k_proj / v_proj; got {type(model).__name__}")
    return layers


@torch.no_grad()
def layer_errors(model, calibration_ids: list[torch.Tensor], sink_tokens: int = 4, window: int | None = None,
                 num_states: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, the mean channel errors [Hkv * D] of pre-RoPE K and of V over the calibration prompts.

    Hooks on k_proj / v_proj (`nn.Module.register_forward_hook`) score each prompt's K and V as they are produced,
    so no layer's activations are kept past its own hook.
    """
    layers = _attention_layers(model)
    sums: dict[tuple[str, int], torch.Tensor] = {}
    counts: dict[tuple[str, int], int] = {}

    def hook(kind: str, i: int):
        def fn(module, args, out):
            for row in out:  # [L, Hkv * D] per sequence of the batch
                e = channel_errors(row, sink_tokens, window, num_states).cpu()
                sums[kind, i] = sums.get((kind, i), 0) + e
                counts[kind, i] = counts.get((kind, i), 0) + 1
        return fn

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.self_attn.k_proj.register_forward_hook(hook("k", i)))
        handles.append(layer.self_attn.v_proj.register_forward_hook(hook("v", i)))
    device = next(model.parameters()).device
    from tqdm.auto import tqdm

    try:
        for ids in tqdm(calibration_ids, desc="fourier dimension search", unit="prompt", leave=False,
                        disable=not LOG.isEnabledFor(logging.INFO)):
            model(input_ids=ids.to(device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return ([sums["k", i] / counts["k", i] for i in range(len(layers))],
            [sums["v", i] / counts["v", i] for i in range(len(layers))])


def dims_cache_path(model, calibration_ids: list[torch.Tensor], settings: dict) -> Path:
    """Where the search of `model` with `settings` on `calibration_ids` is cached (module docstring)."""
    root = Path(os.environ.get("LONGCTX_CACHE") or Path.home() / ".cache" / "longctx-bench") / "fourier_dims"
    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    for ids in calibration_ids:
        h.update(str(tuple(ids.shape)).encode() + ids.detach().cpu().long().numpy().tobytes())
    # Two checkpoints of one architecture share a config: fingerprint the weights of the first and last K projection.
    layers = _attention_layers(model)
    for layer in (layers[0], layers[-1]):
        h.update(layer.self_attn.k_proj.weight.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return root / f"{h.hexdigest()[:24]}.json"


def search_dims(model, calibration_ids: list[torch.Tensor], fraction_k: float = 0.73, fraction_v: float = 0.79,
                sink_tokens: int = 4, window: int | None = None, num_states: int | None = None,
                use_cache: bool = True, fractions: str = "global") -> FourierDims:
    """Run the dimension search for `model` on calibration prompts (list of [B, L] long tensors), or load it from
    the on-disk cache. Returns the compressed channels of K and V per layer; `fractions` ("global" or "per_layer",
    `fraction_schedule`) sets how many per layer, and is part of the cache key."""
    schedule = fraction_schedule(fractions, len(_attention_layers(model)), fraction_k, fraction_v)
    if not isinstance(calibration_ids, (list, tuple)) or not calibration_ids:
        raise ValueError("calibration_ids must be a non-empty list of [B, L] token id tensors")
    for ids in calibration_ids:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError(f"calibration_ids must hold [B, L] tensors, got {getattr(ids, 'shape', type(ids).__name__)}")
        calibration_split(ids.shape[1], sink_tokens, window, num_states)  # too short: fail before running the model
    settings = {"fractions": fractions, "layer_fractions": [list(kv) for kv in schedule],
                "fraction_k": fraction_k, "fraction_v": fraction_v, "sink_tokens": sink_tokens, "window": window,
                "num_states": num_states, "moment_matching": True, "prompts": len(calibration_ids),
                "prompt_tokens": [int(ids.shape[1]) for ids in calibration_ids], "version": SEARCH_VERSION}
    path = dims_cache_path(model, calibration_ids, settings)
    if use_cache and path.is_file():
        LOG.info("fourier dimension search: cached result %s", path)
        return FourierDims.from_json(path)
    LOG.info("fourier dimension search: not cached; %d calibration prompts (%d tokens) through the model, once per "
             "model and settings%s", len(calibration_ids), sum(int(ids.numel()) for ids in calibration_ids),
             f"; then cached in {path}" if use_cache else "")
    k_err, v_err = layer_errors(model, calibration_ids, sink_tokens, window, num_states)
    dims = FourierDims(tuple(choose_compressed(e, fk) for e, (fk, _) in zip(k_err, schedule)),
                       tuple(choose_compressed(e, fv) for e, (_, fv) in zip(v_err, schedule)),
                       channels=k_err[0].numel(), model_id=str(getattr(model.config, "_name_or_path", "") or ""),
                       settings=settings)
    if use_cache:
        dims.to_json(path)
    return dims
