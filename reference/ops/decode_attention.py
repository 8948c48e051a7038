"""Decode attention over a padded, ragged KV cache: a batch of sequences of different lengths.

    out[b] = attention(q[b], k[b, :, :seq_lens[b]], v[b, :, :seq_lens[b]], causal=True, scale)

q: [B, Hq, Lq, D] are the newest Lq tokens of each sequence (Lq = 1 when decoding, up to ~16 when verifying a
speculative draft); k/v: [B, Hkv, Lmax, D] hold each sequence's keys/values in positions 0..seq_lens[b]-1 and
anything beyond (padding that must never be read); seq_lens: long [B] with Lq <= seq_lens[b] <= Lmax. Query i of
sequence b sits at position seq_lens[b] - Lq + i and sees keys 0..seq_lens[b] - Lq + i: the bottom-right causal
convention of reference/ops/attention.py. GQA: query head h reads KV head h // (Hq // Hkv) (Ainslie et al., 2023).
Output [B, Hq, Lq, D] in q's dtype. This is the op that flash-decoding kernels (Dao et al., "Flash-Decoding for
long-context inference", 2023: split the keys, reduce the partial softmaxes by log-sum-exp) implement.

The reference is the per-sequence loop over the dense reference: slow and obviously right.
"""
from __future__ import annotations

import torch

from reference.bench_spec import OpBench
from reference.ops.attention import attend, check_attention_inputs
from reference.ops.checks import check_finite, check_lengths, finite_checks_enabled, positions_below
from reference.ops.score_offset import offset_channel, quantize, score_offsets
from reference.registry import HEAD_DIMS, OpSpec, register_op


def check_decode_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor,
                                  scale: float | None = None, check_values: bool = True) -> None:
    """Raise TypeError/ValueError naming the argument when q, k, v, seq_lens, scale are not a valid call.

    Kernels call it before launching. Two checks read values (a host sync on a GPU): seq_lens in [Lq, Lmax], and no
    NaN/inf in q or in k/v before seq_lens (the padding past it may hold anything; the finite check also follows
    reference/ops/checks.py's switch). `check_values=False` skips both, for timed loops and CUDA graph capture.
    """
    check_attention_inputs(q, k, v, causal=True, scale=scale, check_values=False)
    b, _, lq, _ = q.shape
    lmax = k.shape[2]
    check_lengths("seq_lens", seq_lens, b, lq, lmax, "q", q, check_values,
                  why=f"q holds the newest Lq={lq} tokens of each sequence, k/v hold Lmax={lmax} positions")
    if check_values and finite_checks_enabled():
        valid = positions_below(seq_lens, lmax)[:, None, :, None]
        check_finite(("q", q), ("k", k, valid), ("v", v, valid))


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor,
                     scale: float | None = None) -> torch.Tensor:
    """Reference: out [B, Hq, Lq, D] in q's dtype, one dense causal attention per sequence (module docstring)."""
    check_decode_attention_inputs(q, k, v, seq_lens, scale)
    outs = [attend(q[b:b + 1], k[b:b + 1, :, :n], v[b:b + 1, :, :n], causal=True, scale=scale)
            for b, n in enumerate(seq_lens.tolist())]
    return torch.cat(outs, dim=0)


# LLaMA-3-8B (32 query heads, 8 KV heads, head_dim 128) and SmolLM2-135M (9 query heads, 3 KV heads, head_dim 64:
# a group of 3 and 9 heads, neither a power of two).
_GPU_HEADS = ((8, 4, 128), (3, 3, 64))


def _cases(profile: str):
    """Hypothesis strategy of decode cases (plain values, replayable).

    Each sequence's length is Lq plus its own random extra, so lengths differ within a batch and are rarely block
    multiples; Lmax adds 0..pad positions of padding beyond the longest sequence (0 at times: no padding at all).
    "ci": B 1..3, Hkv 1..2, group 1..4, D in HEAD_DIMS up to 64 (odd sizes too), lengths up to ~300. "gpu": LLaMA-3-8B and SmolLM2 heads,
    lengths up to 16k, B 1..8.
    """
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        batch = draw(st.integers(1, 8 if big else 3))
        q_len = draw(st.integers(1, 16))
        max_extra = 16384 - 16 - 64 if big else 270
        extras = draw(st.lists(st.integers(0, max_extra), min_size=batch, max_size=batch))
        seq_lens = [q_len + e for e in extras]
        if big:
            kv_heads, group, head_dim = draw(st.sampled_from(_GPU_HEADS))
        else:
            kv_heads, group = draw(st.integers(1, 2)), draw(st.integers(1, 4))
            head_dim = draw(st.sampled_from(HEAD_DIMS))
        return {
            "batch": batch,
            "kv_heads": kv_heads,
            "group": group,
            "head_dim": head_dim,
            "q_len": q_len,
            "seq_lens": seq_lens,
            "max_len": max(seq_lens) + draw(st.integers(0, 64 if big else 20)),
            "scale": draw(st.one_of(st.none(), st.none(), st.sampled_from([0.05, 0.125, 0.3]))),
            "score_offset": draw(score_offsets(st)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


PAD_MAGNITUDE = 1e4  # finite in float16 (max 65504), and large enough to swamp the softmax if a kernel reads it


def _make_inputs(case: dict, dtype: torch.dtype, device) -> dict:
    """Random normal q, k, v (seeded, drawn in float32 then cast); k/v past seq_lens[b] hold +-[0.5, 1] * 1e4.

    With a score_offset, channel 0 of q and of every key shifts every score (reference/ops/score_offset.py).
    The padding is finite (the conformance rule compares inputs before and after the call with torch.equal, which
    NaN would defeat) but large: one padded key that a kernel lets into the softmax dominates every score.
    """
    g = torch.Generator().manual_seed(case["seed"])
    b, hkv, d, lmax = case["batch"], case["kv_heads"], case["head_dim"], case["max_len"]
    q = torch.randn(b, hkv * case["group"], case["q_len"], d, generator=g)
    beyond = torch.arange(lmax)[None, :] >= torch.tensor(case["seq_lens"])[:, None]  # [B, Lmax]
    beyond = beyond[:, None, :, None].expand(b, hkv, lmax, d)
    kv = []
    for _ in range(2):
        x = torch.randn(b, hkv, lmax, d, generator=g)
        u = torch.rand(int(beyond.sum()), generator=g) * 2 - 1  # sign and magnitude from one draw
        x[beyond] = torch.where(u < 0, -1.0, 1.0) * (0.5 + u.abs() / 2) * PAD_MAGNITUDE
        kv.append(x)
    ab = offset_channel(case.get("score_offset"), d, case.get("scale"))
    if ab is not None:
        q, kv[0] = quantize(q), quantize(kv[0])
        q[..., 0], kv[0][..., 0] = ab
    return {"q": q.to(device=device, dtype=dtype), "k": kv[0].to(device=device, dtype=dtype),
            "v": kv[1].to(device=device, dtype=dtype),
            "seq_lens": torch.tensor(case["seq_lens"], dtype=torch.long, device=device), "scale": case.get("scale")}


# Checked before any drawn case (OpSpec.examples): a one-token sequence next to sequences at and one past a
# 32-key tile (the interpreter's tile) under GQA, with padding; a 16-token chunk with no padding at all; a
# sequence one past the 4 interpreter splits of 32 keys next to a short one, odd head dim, every score far below 0;
# every score far above 0, head dim 40, split boundaries at 32 and 33 keys.
EXAMPLES = (
    {"batch": 3, "kv_heads": 2, "group": 2, "head_dim": 16, "q_len": 1, "seq_lens": [1, 64, 65], "max_len": 80,
     "scale": None, "score_offset": None, "seed": 1},
    {"batch": 1, "kv_heads": 1, "group": 4, "head_dim": 32, "q_len": 16, "seq_lens": [33], "max_len": 33,
     "scale": 0.125, "score_offset": None, "seed": 2},
    {"batch": 2, "kv_heads": 2, "group": 2, "head_dim": 59, "q_len": 2, "seq_lens": [129, 3], "max_len": 130,
     "scale": None, "score_offset": "below", "seed": 3},
    {"batch": 2, "kv_heads": 1, "group": 3, "head_dim": 40, "q_len": 1, "seq_lens": [32, 33], "max_len": 40,
     "scale": 0.05, "score_offset": "above", "seed": 4},
)

def bench_inputs(shape, batch: int, context: int, dtype: torch.dtype, device, config) -> dict:
    """The kernel benchmark's cell: one decode token over a full cache of `context` tokens per sequence.

    q [B, Hq, 1, D], k, v [B, Hkv, context, D] standard normal in `dtype` (drawn in that order from one generator
    seeded with config.seed on `device`), seq_lens long [B] all = context. shape: hq, hkv, head_dim.
    """
    g = torch.Generator(device=device).manual_seed(config.seed)

    def rand(*size):
        return torch.randn(*size, generator=g, device=device, dtype=dtype)

    return {"q": rand(batch, shape.hq, 1, shape.head_dim), "k": rand(batch, shape.hkv, context, shape.head_dim),
            "v": rand(batch, shape.hkv, context, shape.head_dim),
            "seq_lens": torch.full((batch,), context, dtype=torch.long, device=device)}


def bench_bytes_read(inputs: dict) -> int:
    """Bytes a decode step must move: K and V of every token the sequences hold, q read and the output written."""
    q, k, seq_lens = inputs["q"], inputs["k"], inputs["seq_lens"]
    return (2 * int(seq_lens.sum()) * k.shape[1] * k.shape[3] + 2 * q.numel()) * q.element_size()


BENCH = OpBench(inputs=bench_inputs, bytes_read=bench_bytes_read, method="full", batched=("q", "k", "v", "seq_lens"))

SPEC = register_op(
    OpSpec(
        name="decode_attention",
        reference=decode_attention,
        cases=_cases,
        make_inputs=_make_inputs,
        dtypes=(torch.float32, torch.float16, torch.bfloat16),
        float_inputs=("q", "k", "v"),
        examples=EXAMPLES,
        doc=__doc__,
        bench=BENCH,
    )
)
