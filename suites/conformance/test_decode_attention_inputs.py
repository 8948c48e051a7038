"""decode_attention: bad inputs fail the same way in the reference and the Triton kernel; the kernel's own options.

The conformance suite (test_conformance.py) checks values on drawn inputs; this file checks what it cannot: that
invalid calls raise a clear error naming the argument before any kernel launches, that every split count and
non-contiguous layouts give the reference's answer, and that the drawn inputs really catch a kernel that reads the
padding past seq_lens. suites/conformance/test_bad_inputs.py derives bad inputs of every op systematically.
"""
from __future__ import annotations

import os

import pytest
import torch

from harness.kernels.conformance import conform, default_device
from optimized.triton_decode_attention import bytes_read, decode_attention_triton
from reference.ops.attention import attention
from reference.ops.checks import finite_checks
from reference.ops.decode_attention import decode_attention

IMPLS = [pytest.param(decode_attention, id="reference"), pytest.param(decode_attention_triton, id="triton")]
DEVICE = default_device()
needs_triton_device = pytest.mark.skipif(DEVICE != "cuda" and os.environ.get("TRITON_INTERPRET") != "1",
                                         reason="Triton kernels need a GPU or TRITON_INTERPRET=1")


def _inputs(batch=2, hkv=2, group=2, lq=3, d=16, lmax=40, seq_lens=(17, 40), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE, dtype)

    return {"q": rand(batch, hkv * group, lq, d), "k": rand(batch, hkv, lmax, d), "v": rand(batch, hkv, lmax, d),
            "seq_lens": torch.tensor(seq_lens, dtype=torch.long, device=DEVICE)}


def _oracle(x):
    return decode_attention(**{k: (v.double() if k in ("q", "k", "v") else v) for k, v in x.items()})


@pytest.mark.parametrize("fn", IMPLS)
@pytest.mark.parametrize("change,error,match", [
    (lambda x: x.update(seq_lens=x["seq_lens"].int()), TypeError, "seq_lens must be a long"),
    (lambda x: x.update(seq_lens=x["seq_lens"].float()), TypeError, "seq_lens must be a long"),
    (lambda x: x.update(seq_lens=x["seq_lens"].tolist()), TypeError, "seq_lens must be a torch.Tensor"),
    (lambda x: x.update(seq_lens=torch.tensor([17, 2], device=DEVICE)), ValueError, r"seq_lens\[1\] = 2"),
    (lambda x: x.update(seq_lens=torch.tensor([41, 40], device=DEVICE)), ValueError, r"seq_lens\[0\] = 41"),
    (lambda x: x.update(seq_lens=torch.tensor([17, 40, 5], device=DEVICE)), ValueError, r"seq_lens must have shape"),
    (lambda x: x.update(k=x["k"][:1], v=x["v"][:1]), ValueError, "k batch"),
    (lambda x: x.update(v=x["v"][:, :, :30]), ValueError, "must have the same shape"),
    (lambda x: x.update(q=x["q"][:, :3]), ValueError, "multiple of k heads"),
    (lambda x: x.update(q=x["q"][..., :8]), ValueError, "head_dim"),
    (lambda x: x.update(k=x["k"].half()), TypeError, "k must have q's dtype"),
    (lambda x: x.update(scale=-1.0), ValueError, "scale"),
], ids=["seq_lens-int32", "seq_lens-float", "seq_lens-list", "seq_lens-below-Lq", "seq_lens-above-Lmax",
        "seq_lens-shape", "k-batch", "v-shape", "gqa-heads", "head_dim", "k-dtype", "scale"])
def test_bad_inputs_raise_naming_the_argument(fn, change, error, match):
    x = _inputs()
    change(x)
    with pytest.raises(error, match=match):
        fn(**x)


@pytest.mark.parametrize("kwargs,error,match", [({"num_splits": 0}, ValueError, "num_splits"),
                                                ({"num_splits": 1.5}, TypeError, "num_splits"),
                                                ({"out": torch.empty(1)}, ValueError, "out must be"), ])
def test_triton_options_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        decode_attention_triton(**_inputs(), **kwargs)


def test_triton_refuses_too_many_query_rows_per_kv_head():
    # 9 query heads per KV head x 16 tokens = 144 rows > the kernel's 128-row tile: a clear error, not a bad launch.
    with pytest.raises(ValueError, match="query rows per KV head"):
        decode_attention_triton(**_inputs(batch=1, hkv=1, group=9, lq=16, seq_lens=(40,)))


@needs_triton_device
@pytest.mark.parametrize("num_splits", [1, 2, 3, 7, 64])
def test_every_split_count_matches_the_reference(num_splits):
    # Lengths 3 (= Lq), 37 and 150 of Lmax 150 with 32-key tiles: empty splits, partial tiles, one full sequence.
    x = _inputs(batch=3, hkv=1, group=3, lq=3, d=24, lmax=150, seq_lens=(3, 37, 150), seed=num_splits)
    got = decode_attention_triton(**x, num_splits=num_splits)
    assert (got.double() - _oracle(x)).abs().max() < 1e-5


@needs_triton_device
def test_non_contiguous_inputs_seq_lens_and_out():
    x = _inputs(batch=2, hkv=2, group=2, lq=2, d=32, lmax=70, seq_lens=(9, 64), seed=3)
    # The same values in other layouts: k/v stored [B, L, H, D] (token-major), q and out as transposed views.
    k_tok = x["k"].transpose(1, 2).contiguous().transpose(1, 2)
    v_tok = x["v"].transpose(1, 2).contiguous().transpose(1, 2)
    q_t = x["q"].transpose(0, 1).contiguous().transpose(0, 1)
    out = torch.full((2, 4, 32, 2), float("nan"), device=DEVICE).transpose(2, 3)  # [B, Hq, Lq, D], D-major
    lens = torch.tensor([9, 70, 64, 70], device=DEVICE)[::2]  # every other element: (9, 64)
    assert not (k_tok.is_contiguous() or q_t.is_contiguous() or out.is_contiguous() or lens.is_contiguous())
    got = decode_attention_triton(q_t, k_tok, v_tok, lens, scale=0.2, out=out, num_splits=2)
    assert got is out
    want = decode_attention(*(t.double() for t in (x["q"], x["k"], x["v"])), x["seq_lens"], scale=0.2)
    assert (got.double() - want).abs().max() < 1e-5


@needs_triton_device
def test_float16_lands_within_the_conformance_tolerance_of_a_float64_oracle():
    x = _inputs(batch=2, hkv=1, group=4, lq=4, d=64, lmax=100, seq_lens=(51, 100), dtype=torch.float16, seed=5)
    got = decode_attention_triton(**x, num_splits=3)
    assert got.dtype == torch.float16
    oracle = _oracle(x)
    baseline_err = (decode_attention(**x).double() - oracle).abs().max()
    assert (got.double() - oracle).abs().max() <= 2 * baseline_err + 1e-3


def test_reading_the_padding_fails_conformance():
    """The drawn inputs catch a kernel that attends past seq_lens: one that uses all Lmax keys fails."""

    def reads_padding(q, k, v, seq_lens, scale=None):
        outs = [attention(q[b:b + 1], k[b:b + 1], v[b:b + 1], causal=True, scale=scale) for b in range(q.shape[0])]
        return torch.cat(outs)

    report = conform("decode_attention", reads_padding, dtypes=(torch.float32,), max_examples=10)
    assert not report.passed
    assert report.failures[0].property == "tolerance", report.summary()


def test_bytes_read_counts_kv_up_to_seq_lens():
    x = _inputs(batch=2, hkv=2, group=2, lq=3, d=16, lmax=40, seq_lens=(17, 40), dtype=torch.float16)
    kv = (17 + 40) * 2 * 16 * 2 * 2  # positions x Hkv x D x (K and V) x 2 bytes
    q_and_out = 2 * (2 * 4 * 3 * 16) * 2
    assert bytes_read(x["q"], x["k"], x["v"], x["seq_lens"]) == kv + q_and_out + 2 * 8


@needs_triton_device
def test_validate_false_skips_only_the_value_checks():
    x = _inputs(seed=7)
    assert torch.equal(decode_attention_triton(**x, validate=False), decode_attention_triton(**x))
    with pytest.raises(TypeError, match="seq_lens must be a long"):
        decode_attention_triton(**{**x, "seq_lens": x["seq_lens"].int()}, validate=False)
    x["k"][1, 0, 3, 0] = float("nan")  # inside sequence 1's 40 positions
    with finite_checks(True), pytest.raises(ValueError, match="k must be finite"):
        decode_attention_triton(**x)
    assert decode_attention_triton(**x, validate=False)[1].isnan().any()  # unchecked: the NaN reaches the output
