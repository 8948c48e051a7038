"""Dense scaled-dot-product attention with GQA and a bottom-right-aligned causal mask.

    out = softmax(q k^T * scale + mask) v          (Vaswani et al., 2017, eq. 1)

q: [B, Hq, Lq, D], k/v: [B, Hkv, Lk, D], Hq % Hkv == 0; query head h reads KV head h // (Hq // Hkv) (GQA,
Ainslie et al., 2023, sec. 2). scale defaults to D**-0.5. With `causal`, query i sits at position Lk - Lq + i and
sees keys 0..Lk - Lq + i (the bottom-right alignment of flash-attention >= 2.1): one convention for prefill
(Lq == Lk), a multi-token chunk appended to a cache, and decoding (Lq == 1, which then sees every key).
`causal=False` is bidirectional (any Lq, Lk). Computes in the dtype it is given, softmax included: the conformance
rule runs it in float64 as the oracle and in the tested dtype as the baseline (docs/conformance.md).
"""
from __future__ import annotations

import numbers

import torch

from reference.ops.checks import check_finite, check_gqa, check_like, check_scale, check_tensor
from reference.ops.score_offset import offset_channel, quantize, score_offsets
from reference.registry import HEAD_DIMS, OpSpec, register_op


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                           scale: float | None = None, check_values: bool = True) -> None:
    """Raise TypeError/ValueError naming the argument when q, k, v, causal, scale are not a valid call.

    check_values: also check that q, k, v hold no NaN/inf (a host sync; see reference/ops/checks.py).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, 4, floating=True, layout="[B, H, L, D]")
    if not isinstance(causal, (bool, numbers.Integral)) or causal not in (0, 1):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    check_scale(scale)
    check_like("k", k, "q", q)
    check_like("v", v, "q", q)
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape [B, Hkv, Lk, D]")
    b, hq, lq, d = q.shape
    _, hkv, lk, dk = k.shape
    if k.shape[0] != b:
        raise ValueError(f"k batch ({k.shape[0]}) must equal q batch ({b})")
    if dk != d:
        raise ValueError(f"k head_dim ({dk}) must equal q head_dim ({d})")
    if b == 0 or d == 0:
        raise ValueError(f"q must have a non-empty batch and head_dim, got shape {tuple(q.shape)}")
    check_gqa("q", hq, "k", hkv)
    if lq == 0:
        raise ValueError("q must hold at least one token (Lq == 0)")
    if lk == 0:
        raise ValueError("k must hold at least one token (Lk == 0)")
    if causal and lq > lk:
        raise ValueError(f"causal attention needs Lq <= Lk (bottom-right aligned), got q Lq={lq} > k Lk={lk}")
    if check_values:
        check_finite(("q", q), ("k", k), ("v", v))


def causal_mask(lq: int, lk: int, device=None) -> torch.Tensor:
    """[Lq, Lk] bool, True where query i (at position Lk - Lq + i) may see key j, i.e. j <= Lk - Lq + i."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(lk - lq)


def _scores(q: torch.Tensor, k: torch.Tensor, causal: bool, scale: float | None) -> torch.Tensor:
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # KV head h // group serves query head h
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), float("-inf"))
    return scores


def attention_probs(q: torch.Tensor, k: torch.Tensor, causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) per query head: [B, Hq, Lq, Lk] in q's dtype; masked entries are 0.

    q: [B, Hq, Lq, D], k: [B, Hkv, Lk, D]. KV methods score tokens with it (H2O, SnapKV, TOVA).
    """
    check_attention_inputs(q, k, k, causal, scale)
    return torch.softmax(_scores(q, k, causal, scale), dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
              scale: float | None = None) -> torch.Tensor:
    """Reference attention: out [B, Hq, Lq, D] in q's dtype (see the module docstring for the contract)."""
    check_attention_inputs(q, k, v, causal, scale)
    return attend(q, k, v, causal, scale)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
           scale: float | None = None) -> torch.Tensor:
    """`attention` without its input checks, for ops that checked their own inputs and attend over slices of them."""
    p = torch.softmax(_scores(q, k, causal, scale), dim=-1)
    return torch.matmul(p, v.repeat_interleave(q.shape[1] // v.shape[1], dim=1))


def _cases(profile: str):
    """Hypothesis strategy of attention cases (plain values, replayable).

    "ci": small shapes for CPU; lengths are any integers, so most are not multiples of 16/32/64 block sizes.
    "gpu": LLaMA-3-8B heads (32 query heads, 8 KV heads, head_dim 128) and Lk up to 4096.
    Lk = Lq + extra_k under causal; bidirectional cases also draw Lq > Lk.
    """
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        causal = draw(st.booleans())
        q_len = draw(st.integers(1, 64 if big else 40))
        extra_k = draw(st.integers(0, 4096 - 64 if big else 260))
        k_len = q_len + extra_k if causal or draw(st.booleans()) else draw(st.integers(1, q_len))
        return {
            "batch": draw(st.integers(1, 2)),
            "kv_heads": 8 if big else draw(st.integers(1, 3)),
            "group": 4 if big else draw(st.integers(1, 4)),
            "q_len": q_len,
            "k_len": k_len,
            "head_dim": 128 if big else draw(st.sampled_from(HEAD_DIMS)),
            "causal": causal,
            # None (D**-0.5) most of the time; an explicit scale checks that implementations honour it.
            "scale": draw(st.one_of(st.none(), st.none(), st.sampled_from([0.05, 0.125, 0.3]))),
            "score_offset": draw(score_offsets(st)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


def _make_inputs(case: dict, dtype: torch.dtype, device) -> dict:
    """Random normal q, k, v (seeded by case["seed"], drawn in float32 then cast) plus causal and scale; with a
    score_offset, channel 0 of q and k shifts every score (reference/ops/score_offset.py)."""
    g = torch.Generator().manual_seed(case["seed"])
    b, hkv, d = case["batch"], case["kv_heads"], case["head_dim"]
    lq = case["q_len"]
    lk = case["k_len"]

    q, k, v = (torch.randn(*shape, generator=g) for shape in ((b, hkv * case["group"], lq, d), (b, hkv, lk, d),
                                                                   (b, hkv, lk, d)))
    ab = offset_channel(case.get("score_offset"), d, case.get("scale"))
    if ab is not None:
        q, k = quantize(q), quantize(k)
        q[..., 0], k[..., 0] = ab
    return {"q": q.to(device=device, dtype=dtype), "k": k.to(device=device, dtype=dtype),
            "v": v.to(device=device, dtype=dtype), "causal": case["causal"], "scale": case.get("scale")}


# Checked before any drawn case (OpSpec.examples): GQA with 2 KV heads x group 2 (a head mapping h % Hkv
# instead of h // group differs there) and Lq one past a 16-row tile; a decode row over one key past 64; a single
# key; bidirectional Lq > Lk with an explicit scale; an odd head dim with every score far below 0, and one with
# every score far above it (an online softmax's running max started at 0, or not subtracted).
EXAMPLES = (
    {"batch": 1, "kv_heads": 2, "group": 2, "q_len": 17, "k_len": 40, "head_dim": 16, "causal": True,
     "scale": None, "score_offset": None, "seed": 1},
    {"batch": 2, "kv_heads": 3, "group": 3, "q_len": 1, "k_len": 65, "head_dim": 64, "causal": False,
     "scale": 0.125, "score_offset": None, "seed": 2},
    {"batch": 1, "kv_heads": 1, "group": 1, "q_len": 1, "k_len": 1, "head_dim": 32, "causal": True,
     "scale": None, "score_offset": None, "seed": 3},
    {"batch": 1, "kv_heads": 1, "group": 4, "q_len": 33, "k_len": 9, "head_dim": 16, "causal": False,
     "scale": 0.3, "score_offset": None, "seed": 4},
    {"batch": 1, "kv_heads": 2, "group": 2, "q_len": 5, "k_len": 40, "head_dim": 59, "causal": True,
     "scale": None, "score_offset": "below", "seed": 5},
    {"batch": 1, "kv_heads": 1, "group": 2, "q_len": 3, "k_len": 33, "head_dim": 24, "causal": False,
     "scale": 0.125, "score_offset": "above", "seed": 6},
)

SPEC = register_op(
    OpSpec(
        name="attention",
        reference=attention,
        cases=_cases,
        make_inputs=_make_inputs,
        dtypes=(torch.float32, torch.float16, torch.bfloat16),
        float_inputs=("q", "k", "v"),
        examples=EXAMPLES,
        doc=__doc__,
    )
)
