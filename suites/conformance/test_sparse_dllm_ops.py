"""Sparse-dLLM ops (sparse_block_attention, sparse_dllm_saliency): what the generic conformance suite cannot check.

test_conformance.py checks every registered kernel against the references on drawn inputs; this file checks that
bad calls raise errors naming the argument, that the references mean what their docstrings say (a naive loop for the
saliency, dense attention over cat(cache, block), invariance to the order of kept_idx), and the kernels' edge cases:
keep = 0 and keep = S, ties, empty caches, every split count, row blocks, strided inputs, `out=`.
Spec: docs/sparse-dllm.md; Song et al., arXiv 2508.02558.
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from harness.kernels.conformance import check_index_sets, default_device
from optimized.triton_sparse_block_attention import bytes_read, sparse_block_attention_triton
from optimized.triton_sparse_dllm_saliency import sparse_dllm_saliency_triton
from reference.ops.attention import attention
from reference.ops.sparse_block_attention import sparse_block_attention
from reference.ops.sparse_dllm_saliency import sparse_dllm_saliency
from suites.strategies import seeds

DEVICE = default_device()
needs_triton_device = pytest.mark.skipif(DEVICE != "cuda" and os.environ.get("TRITON_INTERPRET") != "1",
                                         reason="Triton kernels need a GPU or TRITON_INTERPRET=1")
ATTN = [pytest.param(sparse_block_attention, id="reference"),
        pytest.param(sparse_block_attention_triton, id="triton", marks=needs_triton_device)]
SALIENCY = [pytest.param(sparse_dllm_saliency, id="reference"),
            pytest.param(sparse_dllm_saliency_triton, id="triton", marks=needs_triton_device)]


def _randn(g, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g).to(DEVICE, dtype)


def _attn_inputs(batch=2, hkv=2, group=2, lb=5, s=30, d=16, kept=12, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = {"q": _randn(g, batch, hkv * group, lb, d, dtype=dtype), "k_block": _randn(g, batch, hkv, lb, d, dtype=dtype),
         "v_block": _randn(g, batch, hkv, lb, d, dtype=dtype), "k_cache": _randn(g, batch, hkv, s, d, dtype=dtype),
         "v_cache": _randn(g, batch, hkv, s, d, dtype=dtype), "kept_idx": None}
    if kept is not None:
        x["kept_idx"] = torch.stack([torch.randperm(s, generator=g)[:kept] for _ in range(batch)]).to(DEVICE)
    return x


def _saliency_inputs(batch=2, hkv=2, group=2, lb=5, s=40, d=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return _randn(g, batch, hkv * group, lb, d, dtype=dtype), _randn(g, batch, hkv, s, d, dtype=dtype)


def _double(x: dict) -> dict:
    return {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in x.items()}


# ---------------------------------------------------------------------------------------------- input validation
@pytest.mark.parametrize("fn", ATTN)
@pytest.mark.parametrize("change,error,match", [
    (lambda x: x.update(q=x["q"].tolist()), TypeError, "q must be a torch.Tensor"),
    (lambda x: x.update(k_block=x["k_block"][0]), ValueError, "k_block must be 4-D"),
    (lambda x: x.update(v_cache=x["v_cache"].half()), TypeError, "v_cache must have q's dtype"),
    (lambda x: x.update(k_block=x["k_block"][:, :, :3], v_block=x["v_block"][:, :, :3]), ValueError,
     r"k_block must have shape \[B, Hkv, Lb, D\]"),
    (lambda x: x.update(v_block=x["v_block"][:, :1]), ValueError, "v_block must have k_block's shape"),
    (lambda x: x.update(q=x["q"][:, :3]), ValueError, "multiple of k_block heads"),
    (lambda x: x.update(k_cache=x["k_cache"][..., :8]), ValueError, r"k_cache must have shape \[B, Hkv, S, D\]"),
    (lambda x: x.update(v_cache=x["v_cache"][:, :, :20]), ValueError, "v_cache must have k_cache's shape"),
    (lambda x: x.update(kept_idx=x["kept_idx"].int()), TypeError, "kept_idx must be a long"),
    (lambda x: x.update(kept_idx=x["kept_idx"].tolist()), TypeError, "kept_idx must be None or a torch.Tensor"),
    (lambda x: x.update(kept_idx=x["kept_idx"][0]), ValueError, r"kept_idx must have shape \[B, K\]"),
    (lambda x: x["kept_idx"].__setitem__((1, 3), 30), ValueError, r"kept_idx\[1, 3\] = 30"),
    (lambda x: x["kept_idx"].__setitem__((0, 0), -1), ValueError, r"kept_idx\[0, 0\] = -1"),
    (lambda x: x["kept_idx"].__setitem__((1, 2), int(x["kept_idx"][1, 5])), ValueError, "distinct positions"),
    (lambda x: x.update(kept_idx=torch.arange(31, device=DEVICE).repeat(2, 1)), ValueError, "more than the S=30"),
    (lambda x: x.update(scale=0.0), ValueError, "scale"),
], ids=["q-list", "k_block-3d", "v_cache-dtype", "k_block-len", "v_block-shape", "gqa-heads", "k_cache-head_dim",
        "v_cache-len", "kept_idx-int32", "kept_idx-list", "kept_idx-1d", "kept_idx-above-S", "kept_idx-negative",
        "kept_idx-repeat", "kept_idx-too-many", "scale"])
def test_sparse_block_attention_bad_inputs_name_the_argument(fn, change, error, match):
    x = _attn_inputs()
    change(x)
    with pytest.raises(error, match=match):
        fn(**x)


@pytest.mark.parametrize("fn", SALIENCY)
@pytest.mark.parametrize("change,error,match", [
    (lambda x: x.update(q_block=x["q_block"].tolist()), TypeError, "q_block must be a torch.Tensor"),
    (lambda x: x.update(q_block=x["q_block"].long()), TypeError, "q_block must be a floating-point"),
    (lambda x: x.update(k=x["k"].half()), TypeError, "k must have q_block's dtype"),
    (lambda x: x.update(k=x["k"][..., :8]), ValueError, r"k must have shape \[B, Hkv, S, D\]"),
    (lambda x: x.update(q_block=x["q_block"][:, :3]), ValueError, "multiple of k heads"),
    (lambda x: x.update(q_block=x["q_block"][:, :, :0]), ValueError, "q_block must have a non-empty"),
    (lambda x: x.update(kernel_size=2), ValueError, "kernel_size must be an odd int"),
    (lambda x: x.update(kernel_size=0), ValueError, "kernel_size must be an odd int"),
    (lambda x: x.update(kernel_size=3.0), TypeError, "kernel_size must be an odd int"),
    (lambda x: x.update(keep=-1), ValueError, r"keep must lie in \[0, S=40\]"),
    (lambda x: x.update(keep=41), ValueError, r"keep must lie in \[0, S=40\]"),
    (lambda x: x.update(keep=2.0), TypeError, "keep must be an int"),
], ids=["q_block-list", "q_block-long", "k-dtype", "k-head_dim", "gqa-heads", "empty-block", "kernel_size-even",
        "kernel_size-0", "kernel_size-float", "keep-negative", "keep-above-S", "keep-float"])
def test_sparse_dllm_saliency_bad_inputs_name_the_argument(fn, change, error, match):
    q, k = _saliency_inputs()
    x = {"q_block": q, "k": k, "keep": 5, "kernel_size": 3}
    change(x)
    with pytest.raises(error, match=match):
        fn(**x)


# ------------------------------------------------------------------------------------- the references themselves
def _naive_saliency(q: torch.Tensor, k: torch.Tensor, keep: int, kernel_size: int):
    """The spec's steps as loops in float64: block mean, raw dot per head, head mean, windowed max, top-keep."""
    b, hq, lb, d = q.shape
    hkv, s = k.shape[1], k.shape[2]
    q, k = q.double().cpu(), k.double().cpu()
    scores = torch.empty(b, s, dtype=torch.float64)
    kept = []
    for bi in range(b):
        raw = torch.zeros(s, dtype=torch.float64)
        for h in range(hq):
            qbar = sum(q[bi, h, i] for i in range(lb)) / lb
            for j in range(s):
                raw[j] += float(qbar @ k[bi, h // (hq // hkv), j]) / hq
        half = kernel_size // 2
        for j in range(s):
            scores[bi, j] = raw[max(0, j - half):j + half + 1].max()
        order = sorted(range(s), key=lambda j: (-float(scores[bi, j]), j))
        kept.append(sorted(order[:keep]))
    return scores, torch.tensor(kept, dtype=torch.long).reshape(b, keep)


@given(batch=st.integers(1, 2), hkv=st.integers(1, 2), group=st.integers(1, 3), lb=st.integers(1, 6),
       s=st.integers(1, 40), d=st.integers(1, 24), keep_frac=st.floats(0, 1), kernel_size=st.sampled_from([1, 3, 5]),
       seed=seeds())
def test_saliency_reference_equals_a_naive_loop(batch, hkv, group, lb, s, d, keep_frac, kernel_size, seed):
    q, k = _saliency_inputs(batch, hkv, group, lb, s, d, seed, dtype=torch.float64)
    keep = round(keep_frac * s)
    scores, kept = sparse_dllm_saliency(q, k, keep, kernel_size)
    want_scores, want_kept = _naive_saliency(q, k, keep, kernel_size)
    assert scores.dtype == torch.float64 and kept.dtype == torch.long and kept.shape == (batch, keep)
    torch.testing.assert_close(scores.cpu(), want_scores, rtol=1e-12, atol=1e-12)
    assert torch.equal(kept.cpu(), want_kept)


def test_saliency_scores_accumulate_in_float32_at_least():
    for dtype, want in ((torch.float16, torch.float32), (torch.bfloat16, torch.float32), (torch.float32, torch.float32),
                        (torch.float64, torch.float64)):
        q, k = _saliency_inputs(dtype=dtype)
        assert sparse_dllm_saliency(q, k, 3)[0].dtype == want


@pytest.mark.parametrize("kept", [None, 0, 17])
def test_sparse_block_attention_reference_is_dense_attention_over_the_kept_cache_and_block(kept):
    x = _double(_attn_inputs(kept=kept, seed=3))
    k_cache, v_cache = x["k_cache"], x["v_cache"]
    if kept is not None:  # the kept rows in kept_idx's order, by a loop
        k_cache = torch.stack([k_cache[b][:, x["kept_idx"][b]] for b in range(2)])
        v_cache = torch.stack([v_cache[b][:, x["kept_idx"][b]] for b in range(2)])
    want = attention(x["q"], torch.cat([k_cache, x["k_block"]], 2), torch.cat([v_cache, x["v_block"]], 2),
                     causal=False, scale=0.2)
    torch.testing.assert_close(sparse_block_attention(**x, scale=0.2), want, rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------------------------- both impls: semantic properties
@pytest.mark.parametrize("fn", ATTN)
@given(group=st.integers(1, 3), lb=st.integers(1, 12), s=st.integers(0, 90), seed=seeds())
def test_kept_idx_none_equals_dense_attention_over_cat_cache_block(fn, group, lb, s, seed):
    x = _attn_inputs(batch=1, hkv=2, group=group, lb=lb, s=s, d=32, kept=None, seed=seed)
    want = attention(x["q"].double(), torch.cat([x["k_cache"], x["k_block"]], 2).double(),
                     torch.cat([x["v_cache"], x["v_block"]], 2).double(), causal=False)
    torch.testing.assert_close(fn(**x).double(), want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("fn", ATTN)
@given(lb=st.integers(1, 12), s=st.integers(1, 90), keep_frac=st.floats(0, 1), seed=seeds())
def test_result_is_invariant_to_the_order_of_kept_idx(fn, lb, s, keep_frac, seed):
    x = _attn_inputs(batch=2, hkv=1, group=2, lb=lb, s=s, d=16, kept=round(keep_frac * s), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    perm = torch.randperm(x["kept_idx"].shape[1], generator=g).to(DEVICE)
    first = fn(**x)
    permuted = fn(**{**x, "kept_idx": x["kept_idx"][:, perm]})
    sorted_ = fn(**{**x, "kept_idx": x["kept_idx"].sort(dim=1).values})
    torch.testing.assert_close(permuted, first, rtol=0, atol=2e-6)
    torch.testing.assert_close(sorted_, first, rtol=0, atol=2e-6)


@needs_triton_device
@given(batch=st.integers(1, 2), hkv=st.integers(1, 2), group=st.integers(1, 2), lb=st.integers(1, 8),
       s=st.integers(2, 120), keep_frac=st.floats(0, 1), seed=seeds())
def test_triton_saliency_keeps_the_reference_set_on_inputs_without_ties(batch, hkv, group, lb, s, keep_frac, seed):
    q, k = _saliency_inputs(batch, hkv, group, lb, s, 16, seed)
    keep = min(s - 1, max(1, round(keep_frac * s)))
    ref_scores, ref_kept = sparse_dllm_saliency(q, k, keep, kernel_size=1)  # no pooling: no ties by construction
    top = ref_scores.double().sort(dim=1, descending=True).values
    assume(bool(((top[:, keep - 1] - top[:, keep]) > 1e-4).all()))  # no near-tie at the threshold either
    scores, kept = sparse_dllm_saliency_triton(q, k, keep, kernel_size=1)
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-5)
    assert torch.equal(kept, ref_kept)


# ------------------------------------------------------------------------------------------- kernel edge cases
@needs_triton_device
def test_triton_saliency_on_rows_longer_than_a_tile_and_keep_zero_and_all():
    q, k = _saliency_inputs(batch=2, hkv=1, group=2, lb=3, s=600, d=16, seed=11)  # 600 > one select tile (256)
    ref_scores, _ = sparse_dllm_saliency(q, k, 300, kernel_size=5)
    scores, kept = sparse_dllm_saliency_triton(q, k, 300, kernel_size=5)
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-5)
    ok, msg = check_index_sets(kept, ref_scores, 300, atol=1e-5)
    assert ok, msg
    assert torch.equal(kept, kept.sort(dim=1).values)
    q, k = q[..., :40, :], k[..., :40, :]
    none = sparse_dllm_saliency_triton(q, k, 0)[1]
    assert none.shape == (2, 0) and none.dtype == torch.long
    assert torch.equal(sparse_dllm_saliency_triton(q, k, 40)[1], torch.arange(40, device=DEVICE).repeat(2, 1))


@needs_triton_device
def test_triton_saliency_breaks_ties_towards_the_lower_position():
    # Every key is the same row, so every score ties: both impls must keep positions 0..keep-1 (across select tiles).
    q, k = _saliency_inputs(batch=1, hkv=1, group=1, lb=3, s=1, d=16, seed=5)
    k = k.expand(1, 1, 600, 16)  # a stride-0 view: also checks that strides are honoured
    for fn in (sparse_dllm_saliency, sparse_dllm_saliency_triton):
        assert torch.equal(fn(q, k, 300, 3)[1], torch.arange(300, device=DEVICE)[None])


@pytest.mark.parametrize("fn", SALIENCY)
def test_saliency_of_an_empty_cache(fn):
    q, k = _saliency_inputs(s=0)
    scores, kept = fn(q, k, 0)
    assert scores.shape == (2, 0) and kept.shape == (2, 0) and kept.dtype == torch.long


@needs_triton_device
@pytest.mark.parametrize("num_splits", [1, 2, 7])
@pytest.mark.parametrize("kept", [None, 0, 50])
def test_triton_block_attention_splits_row_blocks_strides_and_out(num_splits, kept):
    # group * Lb = 3 * 30 = 90 rows: two row blocks on the CPU (64 rows each); strided views of every input.
    x = _attn_inputs(batch=2, hkv=2, group=3, lb=30, s=100, d=24, kept=kept, seed=num_splits, dtype=torch.float16)
    x = {k: (v.transpose(1, 2).contiguous().transpose(1, 2) if k != "kept_idx" and v is not None else v)
         for k, v in x.items()}
    out = torch.full_like(x["q"], float("nan"))
    got = sparse_block_attention_triton(**x, out=out, num_splits=num_splits)
    assert got is out and not out.isnan().any()
    torch.testing.assert_close(out.double(), sparse_block_attention(**_double(x)), rtol=0, atol=2e-3)


def test_bytes_read_counts_the_kept_rows_only():
    x = _attn_inputs(batch=2, hkv=2, group=2, lb=5, s=30, d=16, kept=12)
    block_and_q = 2 * 2 * 5 * 16 * 4 * 2 + 2 * 2 * 4 * 5 * 16 * 4
    assert bytes_read(**x) == 2 * 2 * 12 * 16 * 4 * 2 + block_and_q + 2 * 12 * 8
    assert bytes_read(**{**x, "kept_idx": None}) == 2 * 2 * 30 * 16 * 4 * 2 + block_and_q
