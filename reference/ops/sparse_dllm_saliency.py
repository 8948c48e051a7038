"""Sparse-dLLM saliency: score the out-of-block positions and keep the top `keep` of them.

    qbar[b, h]   = mean_i q_block[b, h, i]                       (block-mean query, step 1 of the block)
    raw[b, h, j] = qbar[b, h] . k[b, h // group, j]              (raw dot product: no softmax, no 1/sqrt(D))
    s[b, j]      = mean_h raw[b, h, j]
    scores[b]    = max_pool1d(s[b], kernel_size, stride 1, padding kernel_size // 2)
    kept_idx[b]  = the `keep` positions of largest scores[b], sorted ascending

Sparse-dLLM (Song et al., arXiv 2508.02558; facts in docs/sparse-dllm.md): at step 1 of each block every layer scores the post-RoPE keys outside the block (prefix and masked
suffix together) this way and keeps one index set per layer for the rest of the block; the defaults are
kernel_size 3 and keep = int(S * keep_ratio) with keep_ratio 0.5.

q_block: [B, Hq, Lb, D]; k: [B, Hkv, S, D] in sequence order, Hq % Hkv == 0 (GQA: query head h reads KV head
h // (Hq // Hkv)); keep: int in [0, S]; kernel_size: odd int >= 1. The pooling pads with -inf (the max over the
in-range part of each window), so scores has the length S of s. Returns (scores [B, S] in
promote_types(q_block.dtype, float32): accumulated in float32 at least, float64 stays float64 for the oracle;
kept_idx long [B, keep]). Ties are broken towards the lower position (a stable descending sort), the rule the
Triton kernel follows too; the conformance rule accepts any tie-break (harness/kernels/conformance.py, check_index_sets).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from reference.ops.checks import check_finite, check_gqa, check_like, check_tensor
from reference.registry import HEAD_DIMS, OpSpec, register_op


def check_sparse_dllm_saliency_inputs(q_block: torch.Tensor, k: torch.Tensor, keep: int, kernel_size: int = 3) -> None:
    """Raise TypeError/ValueError naming the argument when q_block, k, keep, kernel_size are not a valid call."""
    check_tensor("q_block", q_block, 4, floating=True, layout="[B, Hq, Lb, D]")
    check_tensor("k", k, 4, floating=True, layout="[B, Hkv, S, D]")
    check_like("k", k, "q_block", q_block)
    b, hq, lb, d = q_block.shape
    _, hkv, s, _ = k.shape
    if b == 0 or lb == 0 or d == 0:
        raise ValueError(f"q_block must have a non-empty batch, block and head_dim, got shape {tuple(q_block.shape)}")
    if k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"k must have shape [B, Hkv, S, D] with B={b}, D={d} to match q_block, got {tuple(k.shape)}")
    check_gqa("q_block", hq, "k", hkv)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral):
        raise TypeError(f"kernel_size must be an odd int >= 1 (the pooling window is centred), got {kernel_size!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 1 (the pooling window is centred), got {kernel_size!r}")
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral):
        raise TypeError(f"keep must be an int, got {keep!r}")
    if not 0 <= keep <= s:
        raise ValueError(f"keep must lie in [0, S={s}] (positions of k to keep), got {keep}")
    check_finite(("q_block", q_block), ("k", k))


def sparse_dllm_saliency(q_block: torch.Tensor, k: torch.Tensor, keep: int,
                         kernel_size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: (scores [B, S], kept_idx long [B, keep] ascending), as in the module docstring."""
    check_sparse_dllm_saliency_inputs(q_block, k, keep, kernel_size)
    acc = torch.promote_types(q_block.dtype, torch.float32)
    b, hq, _, d = q_block.shape
    hkv = k.shape[1]
    qbar = q_block.to(acc).mean(dim=2).view(b, hkv, hq // hkv, d)  # query head h = kvh * group + g
    raw = torch.einsum("bkgd,bksd->bkgs", qbar, k.to(acc))  # [B, Hkv, group, S]
    s = raw.mean(dim=(1, 2))  # the mean over all Hq query heads
    if s.shape[1] == 0:
        scores = s
    else:
        scores = F.max_pool1d(s[:, None], kernel_size, stride=1, padding=kernel_size // 2)[:, 0]
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties: lower position first
    return scores, order[:, :keep].sort(dim=1).values


# LLaDA-8B: 32 query and KV heads, head_dim 128.
_GPU_HEADS = (32, 1, 128)


def _cases(profile: str):
    """Hypothesis strategy of cases (plain values, replayable).

    "ci": B 1..2, Hkv 1..2, group 1..3, D in HEAD_DIMS up to 64, Lb 1..40, S 1..300, keep 1..S, kernel_size in {1, 3, 5}.
    "gpu": LLaDA-8B heads, Lb 32, S 2..16384, keep = S // 2 (keep_ratio 0.5), kernel_size 3.
    keep >= 1 here because the conformance rule's set comparison (harness.kernels.conformance.check_index_sets) needs
    k >= 1; keep = 0 is covered by suites/conformance/test_sparse_dllm_ops.py.
    """
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        if big:
            kv_heads, group, head_dim = _GPU_HEADS
            cache_len = draw(st.integers(2, 16384))
            keep, kernel_size = cache_len // 2, 3
        else:
            kv_heads, group = draw(st.integers(1, 2)), draw(st.integers(1, 3))
            head_dim = draw(st.sampled_from(HEAD_DIMS[:-1]))
            cache_len = draw(st.integers(1, 300))
            keep, kernel_size = draw(st.integers(1, cache_len)), draw(st.sampled_from([1, 3, 5]))
        return {
            "batch": draw(st.integers(1, 2)),
            "kv_heads": kv_heads,
            "group": group,
            "head_dim": head_dim,
            "block_len": 32 if big else draw(st.integers(1, 40)),
            "cache_len": cache_len,
            "keep": keep,
            "kernel_size": kernel_size,
            "seed": draw(st.integers(0, 2**31 - 1)),
            "zero_keys": None,  # exact-zero scores are an explicit example
        }

    return case()


def _make_inputs(case: dict, dtype: torch.dtype, device) -> dict:
    """Random normal q_block and k (seeded, drawn in float32 then cast), keep and kernel_size. An optional
    `zero_keys` (start, stop) sets the keys of those positions to 0 in every head: exact-zero scores, tied."""
    g = torch.Generator().manual_seed(case["seed"])
    b, hkv, d = case["batch"], case["kv_heads"], case["head_dim"]
    q = torch.randn(b, hkv * case["group"], case["block_len"], d, generator=g)
    k = torch.randn(b, hkv, case["cache_len"], d, generator=g)
    if case.get("zero_keys"):
        start, stop = case["zero_keys"]
        k[:, :, start:stop] = 0.0
    return {"q_block": q.to(device=device, dtype=dtype), "k": k.to(device=device, dtype=dtype),
            "keep": case["keep"], "kernel_size": case["kernel_size"]}


# Checked before any drawn case (OpSpec.examples): keep one token of a cache one past a 32-token tile under GQA;
# keep every token of a one-token cache; keep half of a cache with a one-token block and the widest pooling; a
# 127-position cache (one short of four 32-position tiles) under a 33-token block (one past the kernel's 32-row
# query tile). The interpreter's tiles are 32 positions in the score, pool
# and select passes, so every pass crosses tile boundaries here. Last, exact-zero scores in 65 positions (two
# tiles and one position, which is kept: a pass that skips a last one-position tile fails): the keys of positions
# 20..39 are 0, so the pooled scores of 21..38 are exactly 0.0, and keep = 45 puts the k-th score among those 18
# ties with 43 positive scores (the smallest 0.19) above it: a selection whose order-preserving key mishandles 0.0
# (the select pass maps -0.0 to +0.0 first) picks ties over positive scores and fails.
EXAMPLES = (
    {"batch": 1, "kv_heads": 2, "group": 2, "head_dim": 16, "block_len": 5, "cache_len": 33, "keep": 1,
     "kernel_size": 3, "seed": 1, "zero_keys": None},
    {"batch": 2, "kv_heads": 1, "group": 1, "head_dim": 24, "block_len": 3, "cache_len": 1, "keep": 1,
     "kernel_size": 5, "seed": 2, "zero_keys": None},
    {"batch": 1, "kv_heads": 1, "group": 3, "head_dim": 40, "block_len": 1, "cache_len": 64, "keep": 32,
     "kernel_size": 5, "seed": 3, "zero_keys": None},
    {"batch": 2, "kv_heads": 2, "group": 1, "head_dim": 59, "block_len": 33, "cache_len": 127, "keep": 100,
     "kernel_size": 3, "seed": 4, "zero_keys": None},
    {"batch": 1, "kv_heads": 1, "group": 2, "head_dim": 16, "block_len": 4, "cache_len": 65, "keep": 45,
     "kernel_size": 3, "seed": 14, "zero_keys": (20, 40)},
)

SPEC = register_op(
    OpSpec(
        name="sparse_dllm_saliency",
        reference=sparse_dllm_saliency,
        cases=_cases,
        make_inputs=_make_inputs,
        dtypes=(torch.float32, torch.float16, torch.bfloat16),
        float_inputs=("q_block", "k"),
        discrete_outputs=(1,),
        examples=EXAMPLES,
        doc=__doc__,
    )
)
