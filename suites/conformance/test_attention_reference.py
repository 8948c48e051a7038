"""The attention reference itself: the bottom-right causal convention, the GQA head mapping, probabilities, and
clear errors on bad input (conformance only shows that kernels agree with it, so it must be right on its own)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.ops.attention import attention, attention_probs, causal_mask


@st.composite
def qkv(draw, min_q=1, max_q=12, max_extra=40):
    """float64 random normal q [B, Hkv*group, Lq, D], k/v [B, Hkv, Lq + extra, D]."""
    b, hkv, group = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    lq = draw(st.integers(min_q, max_q))
    lk = lq + draw(st.integers(0, max_extra))
    d = draw(st.sampled_from([4, 8, 16]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(b, hkv * group, lq, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, hkv, lk, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, hkv, lk, d, generator=g, dtype=torch.float64)
    return q, k, v


def naive_attention(q, k, v, causal):
    """One query head and one query row at a time, straight from the definition."""
    hq, hkv, lq, lk = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    out = torch.empty_like(q)
    for h in range(hq):
        kv = h // (hq // hkv)
        for i in range(lq):
            visible = lk - lq + i + 1 if causal else lk  # query i sits at position lk - lq + i
            s = torch.einsum("bd,bjd->bj", q[:, h, i], k[:, kv, :visible]) / q.shape[-1] ** 0.5
            out[:, h, i] = torch.einsum("bj,bjd->bd", torch.softmax(s, -1), v[:, kv, :visible])
    return out


@given(qkv(), st.booleans())
def test_matches_the_definition_row_by_row(inputs, causal):
    q, k, v = inputs
    torch.testing.assert_close(attention(q, k, v, causal), naive_attention(q, k, v, causal), rtol=1e-10, atol=1e-12)


@given(qkv(min_q=2))
def test_a_chunk_appended_to_a_cache_equals_the_last_rows_of_full_prefill(inputs):
    chunk, k, v = inputs  # the chunk's queries are the last Lq of Lk positions
    g = torch.Generator().manual_seed(0)
    prefix = torch.randn(*chunk.shape[:2], k.shape[2] - chunk.shape[2], chunk.shape[3], generator=g, dtype=torch.float64)
    full = attention(torch.cat([prefix, chunk], dim=2), k, v, causal=True)
    torch.testing.assert_close(attention(chunk, k, v, causal=True), full[:, :, -chunk.shape[2]:])
    # decoding (Lq == 1) sees every key: causal and bidirectional agree
    last = chunk[:, :, -1:]
    torch.testing.assert_close(attention(last, k, v, causal=True), attention(last, k, v, causal=False))


@given(qkv(), st.booleans(), st.floats(0.01, 2.0))
def test_probs_are_a_masked_distribution_and_give_the_output(inputs, causal, scale):
    q, k, v = inputs
    p = attention_probs(q, k, causal, scale)
    assert p.shape == (q.shape[0], q.shape[1], q.shape[2], k.shape[2]) and p.dtype == q.dtype
    torch.testing.assert_close(p.sum(-1), torch.ones_like(p[..., 0]))
    if causal:
        assert (p[..., ~causal_mask(q.shape[2], k.shape[2])] == 0).all()
    group = q.shape[1] // k.shape[1]
    torch.testing.assert_close(p @ v.repeat_interleave(group, 1), attention(q, k, v, causal, scale))


def test_causal_mask_is_bottom_right_aligned():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert causal_mask(3, 3).equal(torch.ones(3, 3, dtype=torch.bool).tril())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_computes_in_the_dtype_it_is_given(dtype):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 7, 16, generator=g).to(dtype) for _ in range(3))
    out = attention(q, k, v)
    assert out.dtype == dtype
    ref = attention(q.double(), k.double(), v.double())
    assert 0 < (out.double() - ref).abs().max() < {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-1}[dtype]


def _t(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


@pytest.mark.parametrize(
    "kwargs,error,name",
    [
        (dict(q=_t(2, 4, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8)), ValueError, "q must be 4-D"),
        (dict(q=_t(1, 3, 4, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8)), ValueError, "q heads"),
        (dict(q=_t(1, 2, 4, 8), k=_t(1, 2, 4, 16), v=_t(1, 2, 4, 16)), ValueError, "k head_dim"),
        (dict(q=_t(1, 2, 4, 8), k=_t(2, 2, 4, 8), v=_t(2, 2, 4, 8)), ValueError, "k batch"),
        (dict(q=_t(1, 2, 4, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 5, 8)), ValueError, "k .* and v"),
        (dict(q=_t(1, 2, 4, 8), k=_t(1, 2, 4, 8, dtype=torch.float16), v=_t(1, 2, 4, 8)), TypeError, "k must have q's dtype"),
        (dict(q=_t(1, 2, 4, 8), k=_t(1, 2, 4, 8), v=torch.ones(1, 2, 4, 8, dtype=torch.long)), TypeError, "v must be a floating"),
        (dict(q=_t(1, 2, 6, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8)), ValueError, "Lq <= Lk"),
        (dict(q=_t(1, 2, 0, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8)), ValueError, "q must hold"),
        (dict(q=_t(1, 2, 2, 8), k=_t(1, 2, 0, 8), v=_t(1, 2, 0, 8), causal=False), ValueError, "k must hold"),
        (dict(q=_t(1, 2, 4, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8), scale=-1.0), ValueError, "scale"),
        (dict(q=_t(1, 2, 4, 8), k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8), causal="yes"), TypeError, "causal"),
        (dict(q=[[1.0]], k=_t(1, 2, 4, 8), v=_t(1, 2, 4, 8)), TypeError, "q must be a torch.Tensor"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        attention(**kwargs)


def test_bidirectional_allows_more_queries_than_keys():
    q, k, v = _t(1, 2, 6, 8), _t(1, 1, 4, 8), _t(1, 1, 4, 8)
    assert attention(q, k, v, causal=False).shape == (1, 2, 6, 8)
