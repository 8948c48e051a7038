"""Dense scaled-dot-product attention with GQA and a bottom-right-aligned causal mask.

softmax(q k^T * scale) v (Vaswani et al., 2017, eq. 1), q: [B, Hq, Lq, D], k/v: [B, Hkv, Lk, D], Hq % Hkv == 0;
query head h reads KV head h // (Hq // Hkv) (GQA, Ainslie et al., 2023). With `causal`, query i sits at position
Lk - Lq + i and sees keys 0..Lk - Lq + i: one convention for prefill (Lq == Lk), a chunk appended to a cache,
and decoding (Lq == 1), as in flash-attention >= 2.1. Computes in the dtype it is given.
"""
from __future__ import annotations

import torch

from reference.registry import OpSpec, register_op


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D [B, H, L, D], got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.device != k.device or q.device != v.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch or head_dim")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"q heads ({q.shape[1]}) must be a positive multiple of k heads ({k.shape[1]})")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"q and k need at least one token, got Lq={q.shape[2]}, Lk={k.shape[2]}")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"causal attention needs Lq <= Lk, got Lq={q.shape[2]} > Lk={k.shape[2]}")


def causal_mask(lq: int, lk: int, device=None) -> torch.Tensor:
    """[Lq, Lk] boolean, True where query i (at position Lk - Lq + i) may see key j."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(lk - lq)


def attention_probs(q: torch.Tensor, k: torch.Tensor, causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) per query head: [B, Hq, Lq, Lk] (rows of masked positions are zero there)."""
    check_attention_inputs(q, k, k, causal)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), float("-inf"))
    return torch.softmax(scores, dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """Reference attention: out [B, Hq, Lq, D] in q's dtype."""
    check_attention_inputs(q, k, v, causal)
    p = attention_probs(q, k, causal, scale)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    return torch.matmul(p, v)


def _cases(profile: str):
    from hypothesis import strategies as st

    big = profile == "gpu"
    return st.fixed_dictionaries(
        {
            "batch": st.integers(1, 4 if big else 2),
            "kv_heads": st.sampled_from([8]) if big else st.integers(1, 3),
            "group": st.sampled_from([4]) if big else st.integers(1, 4),
            "q_len": st.integers(1, 64 if big else 40),
            "extra_k": st.integers(0, 4096 if big else 260),
            "head_dim": st.sampled_from([128] if big else [16, 32, 64]),
            "causal": st.booleans(),
            "seed": st.integers(0, 2**31 - 1),
        }
    )


def _make_inputs(case: dict, dtype: torch.dtype, device) -> dict:
    g = torch.Generator().manual_seed(case["seed"])
    b, hkv, d = case["batch"], case["kv_heads"], case["head_dim"]
    lq, lk = case["q_len"], case["q_len"] + case["extra_k"]

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    return {"q": rand(b, hkv * case["group"], lq, d), "k": rand(b, hkv, lk, d), "v": rand(b, hkv, lk, d),
            "causal": case["causal"]}


SPEC = register_op(
    OpSpec(
        name="attention",
        reference=attention,
        cases=_cases,
        make_inputs=_make_inputs,
        float_inputs=("q", "k", "v"),
        doc=__doc__,
    )
)
