"""A FourierAttention cache for the kernel benchmark: its inputs, the bytes a decode over it must move, its cell.

`make_fourier_cache` builds the keyword inputs of `fourier_decode_attention` for a realistic cache (random
values, the official shapes), `fourier_bytes_read` counts the compulsory traffic of one decode call over it, and
`BENCH` is the op's benchmark spec (reference/bench_spec.py): the cell's inputs from the benchmark's config (its
fields num_freqs, k_fraction, v_fraction, n_init, n_local, period, kept_pad, kept_align, seed), its parameters,
its shortest context, and what the full cache of the same cell would cost (`extra.dense_bytes_read`).
"""
from __future__ import annotations

import math

import torch

from reference.bench_spec import OpBench
from reference.ops.checks import check_int
from reference.ops.fourier_period import choose_period


def fourier_bytes_read(**decode_inputs) -> int:
    """Bytes the decode kernel must move for one call: q, exact K/V, kept middle channels, coefficients, moment
    statistics, the two int32 channel maps and the output (each read or written once; the roofline's numerator)."""
    a = decode_inputs
    tensors = [a["q"], a["k_exact"], a["v_exact"]]
    for p in "kv":
        tensors += [a[f"{p}_mid_kept"], a[f"{p}_cos"], a[f"{p}_sin"], a[f"{p}_scale"], a[f"{p}_shift"]]
    n = sum(t.numel() * t.element_size() for t in tensors)
    channels = a["k_exact"].shape[1] * a["k_exact"].shape[3]
    return n + 2 * channels * 4 + a["q"].numel() * a["q"].element_size()


def make_fourier_cache(batch, hq, hkv, d, context, num_freqs, k_fraction=0.73, v_fraction=0.79, n_init=4,
                       n_local=1020, dtype=torch.float16, device="cuda", seed=0, q_len=1, period="span", kept_pad=1,
                       kept_align=1):
    """Keyword inputs of `fourier_decode_attention` for a realistic cache (LLaMA-3-8B: hq/hkv/d = 32/8/128;
    SmolLM2-135M: 9/3/64): `context` tokens = n_init + middle + n_local, the middle compressed to `num_freqs`
    frequencies (official: 512) on a random `k_fraction`/`v_fraction` of the Hkv * D channels (official ~73%/79%),
    coefficients and moment statistics float32 as the KV method stores them. period: a mode of
    `reference.ops.fourier_period.choose_period` over the middle's length ("span": the length itself). kept_pad: the kept middle channels are a view into rows padded to a
    multiple of this many elements (aligned rows for vector loads; the padding holds zeros here, but a caller's may hold
    anything, so kernels read only the kept width). kept_align: with 1
    the kept channels are a random set of the Hkv * D; with a > 1 every head keeps the same number of channels, a
    multiple of a (the fraction rounded per head), so each head's run of the kept list starts on a multiple of a
    (aligned vector loads for kernels that read a head's run)."""
    mid_len = context - n_init - n_local
    if mid_len < 1:
        raise ValueError(f"context={context} leaves no middle span after n_init={n_init} + n_local={n_local}")
    if hq % hkv:
        raise ValueError(f"hq={hq} must be a multiple of hkv={hkv}")
    g = torch.Generator().manual_seed(seed)
    channels = hkv * d

    def rand(*shape, dt=dtype, s=1.0):
        return (torch.randn(*shape, generator=g) * s).to(dtype=dt, device=device)

    check_int("kept_pad", kept_pad, 1)
    period = choose_period(mid_len, period)
    out = {"q": rand(batch, hq, q_len, d), "k_exact": rand(batch, hkv, n_init + n_local, d),
           "v_exact": rand(batch, hkv, n_init + n_local, d), "n_init": n_init, "mid_len": mid_len,
           "period": period}

    def padded(rows, width):
        wide = torch.zeros(batch, rows, -(-width // kept_pad) * kept_pad, dtype=dtype, device=device)
        wide[:, :, :width] = rand(batch, rows, width)
        return wide[:, :, :width]

    check_int("kept_align", kept_align, 1)
    for p, frac in (("k", k_fraction), ("v", v_fraction)):
        if kept_align == 1:
            perm = torch.randperm(channels, generator=g)
            n_comp = int(round(frac * channels))
        else:  # per head: a random kept set of the rounded size; heads in order, so the flat list groups by head
            per_head = min(d, kept_align * int(round((1 - frac) * d / kept_align)))
            perm = torch.stack([h * d + torch.randperm(d, generator=g) for h in range(hkv)])
            perm = torch.cat([perm[:, per_head:].flatten(), perm[:, :per_head].flatten()])
            n_comp = channels - hkv * per_head
        comp, kept = perm[:n_comp].sort().values, perm[n_comp:].sort().values
        out.update({
            f"{p}_kept_idx": kept.to(device), f"{p}_comp_idx": comp.to(device),
            f"{p}_mid_kept": padded(mid_len, kept.numel()),
            f"{p}_cos": rand(batch, n_comp, num_freqs, dt=torch.float32, s=math.sqrt(mid_len) / 4),
            f"{p}_sin": rand(batch, n_comp, num_freqs, dt=torch.float32, s=math.sqrt(mid_len) / 4),
            f"{p}_scale": (torch.rand(batch, n_comp, generator=g) + 0.5).to(device),
            f"{p}_shift": rand(batch, n_comp, dt=torch.float32, s=0.5),
        })
    return out


def bench_inputs(shape, batch: int, context: int, dtype: torch.dtype, device, config) -> dict:
    """`make_fourier_cache` for one benchmark cell (shape: hq, hkv, head_dim; the cache knobs from `config`)."""
    return make_fourier_cache(batch=batch, hq=shape.hq, hkv=shape.hkv, d=shape.head_dim, context=context,
                              num_freqs=config.num_freqs, k_fraction=config.k_fraction, v_fraction=config.v_fraction,
                              n_init=config.n_init, n_local=config.n_local, dtype=dtype, device=device,
                              seed=config.seed, period=config.period, kept_pad=config.kept_pad,
                              kept_align=config.kept_align)


def bench_params(config) -> dict:
    """The cache's knobs, part of every Fourier cell's key (kept_align only when set, so the records of random kept
    sets keep their keys)."""
    params = dict(num_freqs=config.num_freqs, n_init=config.n_init, n_local=config.n_local,
                  k_fraction=config.k_fraction, v_fraction=config.v_fraction, period=config.period,
                  kept_pad=config.kept_pad)
    if config.kept_align != 1:
        params["kept_align"] = config.kept_align
    return params


def bench_min_context(config) -> int:
    return config.n_init + config.n_local + 1


def dense_bytes_extra(inputs: dict) -> dict:
    """What one decode step over the full cache of the same cell would move (`extra.dense_bytes_read`)."""
    q, k_exact = inputs["q"], inputs["k_exact"]
    context = k_exact.shape[2] + inputs["mid_len"]
    dense = 2 * q.shape[0] * k_exact.shape[1] * context * q.shape[3] + 2 * q.numel()
    return {"dense_bytes_read": float(dense * q.element_size())}


BATCHED = ("q", "k_exact", "v_exact", *(f"{p}_{n}" for p in "kv" for n in ("mid_kept", "cos", "sin", "scale", "shift")))
BENCH = OpBench(inputs=bench_inputs, bytes_read=lambda inputs: int(fourier_bytes_read(**inputs)), method="fourier",
                batched=BATCHED, params=bench_params, min_context=bench_min_context,
                min_context_note="Fourier: n_init + n_local + 1 middle token", extra=dense_bytes_extra)
