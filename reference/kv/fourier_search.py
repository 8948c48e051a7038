"""FourierAttention's search for long-context-insensitive channels, on calibration text, for any LLaMA-family model.

Facts from specs/fourier-attention.md ("Dimension search", official `compressed_dims_search/`): K is taken before
RoPE and V as projected (hooks on k_proj / v_proj); all KV-head channels of a layer are ranked together by the
mean squared error of compressing and reconstructing (with moment matching) the middle of each calibration prompt;
the lowest-error fraction is compressed. The official split is 4 initial / middle / last 1024 tokens with 512
frequencies on ~4k-token prompts; we scale the split to the prompt (local = a quarter, frequencies = a sixth of
the middle, i.e. the same proportions) and use one fraction for all layers (the official one varies per layer).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reference.ops.fourier import fourier_compress, fourier_reconstruct, moment_match


@dataclass(frozen=True)
class FourierDims:
    """Per layer, the compressed channel indices of K and of V over the flattened Hkv*D channels."""

    k_compressed: tuple[tuple[int, ...], ...]
    v_compressed: tuple[tuple[int, ...], ...]
    channels: int  # Hkv * D
    model_id: str = ""
    settings: str = ""

    def __post_init__(self) -> None:
        if len(self.k_compressed) != len(self.v_compressed):
            raise ValueError("k_compressed and v_compressed must list the same number of layers")
        for name, lists in (("k_compressed", self.k_compressed), ("v_compressed", self.v_compressed)):
            for i, idx in enumerate(lists):
                if len(set(idx)) != len(idx) or any(not 0 <= c < self.channels for c in idx):
                    raise ValueError(f"{name}[{i}] must hold distinct channels in [0, {self.channels})")

    @property
    def num_layers(self) -> int:
        return len(self.k_compressed)

    def to_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, path: str | Path) -> "FourierDims":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(tuple(map(tuple, raw["k_compressed"])), tuple(map(tuple, raw["v_compressed"])),
                       int(raw["channels"]), raw.get("model_id", ""), raw.get("settings", ""))
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"dims_path {str(path)!r} is not a FourierDims JSON file: {exc}") from exc


def split_for_calibration(length: int, sink_tokens: int = 4) -> tuple[int, int, int]:
    """(sink, middle, local) token counts for a calibration prompt of `length` tokens."""
    local = min(1024, length // 4)
    middle = length - sink_tokens - local
    if middle < 4:
        raise ValueError(f"calibration prompt of {length} tokens is too short to hold a middle span")
    return sink_tokens, middle, local


def rank_channels(samples: list[torch.Tensor], sink_tokens: int = 4, moment_matching: bool = True) -> torch.Tensor:
    """Mean reconstruction MSE per channel over calibration samples [L, C] each: errors [C] (float64).

    Each sample's middle span is compressed onto a sixth of its length in frequencies (period = middle length)
    and reconstructed; lower error = less sensitive to the long-context compression.
    """
    if not samples:
        raise ValueError("samples must hold at least one [L, C] tensor")
    total = None
    for x in samples:
        if x.dim() != 2:
            raise ValueError(f"each sample must be [L, C], got {tuple(x.shape)}")
        s, m, _ = split_for_calibration(x.shape[0], sink_tokens)
        mid = x[s : s + m].double()[None]  # [1, m, C]
        n_freq = max(1, m // 6)
        rec = fourier_reconstruct(*fourier_compress(mid, n_freq, m), m, m)
        if moment_matching:
            scale, shift = moment_match(mid, rec)
            rec = rec * scale[:, None] + shift[:, None]
        err = ((rec - mid) ** 2).mean(dim=1)[0]
        total = err if total is None else total + err
    return total / len(samples)


def choose_compressed(errors: torch.Tensor, fraction: float) -> tuple[int, ...]:
    """The `fraction` of channels with the lowest error (ties: lower index), sorted."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    k = int(round(fraction * errors.numel()))
    order = torch.sort(errors, stable=True).indices[:k]
    return tuple(sorted(order.tolist()))


@torch.no_grad()
def collect_kv(model, calibration_ids: list[torch.Tensor]) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Pre-RoPE K and V [L, Hkv*D] per layer per prompt, through forward hooks on k_proj / v_proj."""
    layers = model.model.layers
    ks: list[list[torch.Tensor]] = [[] for _ in layers]
    vs: list[list[torch.Tensor]] = [[] for _ in layers]
    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.self_attn.k_proj.register_forward_hook(lambda m, a, out, i=i: ks[i].append(out[0].float())))
        handles.append(layer.self_attn.v_proj.register_forward_hook(lambda m, a, out, i=i: vs[i].append(out[0].float())))
    try:
        for ids in calibration_ids:
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return ks, vs


def _cache_path(model, calibration_ids, settings: str) -> Path:
    root = Path(os.environ.get("LONGCTX_CACHE", Path.home() / ".cache" / "longctx-bench")) / "fourier_dims"
    h = hashlib.sha256(model.config.to_json_string().encode() + settings.encode())
    for ids in calibration_ids:
        h.update(ids.numpy().tobytes())
    # Weights matter too: a fingerprint of the first layer's K projection.
    h.update(model.model.layers[0].self_attn.k_proj.weight.detach().float().flatten()[:4096].numpy().tobytes())
    return root / f"{h.hexdigest()[:20]}.json"


def search_dims(model, calibration_ids: list[torch.Tensor], fraction_k: float, fraction_v: float,
                sink_tokens: int = 4, use_cache: bool = True) -> FourierDims:
    """Run (or load from the on-disk cache) the channel search for `model` on the calibration prompts."""
    if not calibration_ids:
        raise ValueError("calibration_ids must hold at least one prompt")
    settings = f"fk={fraction_k},fv={fraction_v},sink={sink_tokens},v1"
    path = _cache_path(model, calibration_ids, settings)
    if use_cache and path.is_file():
        return FourierDims.from_json(path)
    ks, vs = collect_kv(model, calibration_ids)
    k_comp = tuple(choose_compressed(rank_channels(k, sink_tokens), fraction_k) for k in ks)
    v_comp = tuple(choose_compressed(rank_channels(v, sink_tokens), fraction_v) for v in vs)
    dims = FourierDims(k_comp, v_comp, ks[0][0].shape[-1], getattr(model.config, "_name_or_path", ""), settings)
    if use_cache:
        dims.to_json(path)
    return dims
