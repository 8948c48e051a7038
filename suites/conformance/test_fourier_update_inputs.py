"""FourierAttention kernels (optimized/triton_fourier.py): bad inputs, kernel options, and the layouts a cache holds.

The conformance suite (test_conformance.py) checks values on drawn inputs of one dtype; this file checks what it
cannot: that invalid calls of `fourier_stream_update` (and bad lengths of `fourier_decode_attention_varlen`) raise
a clear error naming the argument in the reference and the kernel alike, that streaming equals compressing the
longer span, that every split count, block size and non-contiguous layout gives the reference's answer, the mixed
dtypes a real cache holds (fp16 tokens with float32 coefficients), and the accuracy of the kernels' cos/sin.
"""
from __future__ import annotations

import os

import pytest
import torch
import triton
import triton.language as tl

from harness.kernels.conformance import check_case, default_device
from optimized.triton_fourier import (
    cos_sin,
    fourier_bytes_read,
    fourier_decode_attention_triton,
    fourier_decode_attention_varlen_triton,
    fourier_stream_update_triton,
    make_fourier_cache,
)
from optimized.triton_fourier_spectral import spectral_plan
from reference.ops.fourier import fourier_compress, fourier_decode_attention
from reference.ops.fourier_update import fourier_stream_update
from reference.ops.fourier_varlen import fourier_decode_attention_varlen
from reference.registry import get_op

DEVICE = default_device()
varlen_inputs = get_op("fourier_decode_attention_varlen").make_inputs  # the op's own input builder
needs_triton_device = pytest.mark.skipif(DEVICE != "cuda" and os.environ.get("TRITON_INTERPRET") != "1",
                                         reason="Triton kernels need a GPU or TRITON_INTERPRET=1")
UPDATES = [pytest.param(fourier_stream_update, id="reference"),
           pytest.param(fourier_stream_update_triton, id="triton", marks=needs_triton_device)]


def _update_inputs(batch=2, channels=5, freqs=7, tokens=3, start=10, period=20, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE, dtype)

    return {"c_cos": rand(batch, channels, freqs), "c_sin": rand(batch, channels, freqs),
            "x": rand(batch, tokens, channels), "start": start, "period": period}


@pytest.mark.parametrize("fn", UPDATES)
@pytest.mark.parametrize("change,error,match", [
    (lambda a: a.update(x=a["x"].tolist()), TypeError, "x must be a torch.Tensor"),
    (lambda a: a.update(x=a["x"][0]), ValueError, "x must be 3-D"),
    (lambda a: a.update(x=a["x"].long()), TypeError, "x must be a floating-point"),
    (lambda a: a.update(x=a["x"][:, :, :4]), ValueError, r"x must be \[B=2, n, C=5\]"),
    (lambda a: a.update(x=a["x"][:1]), ValueError, r"x must be \[B=2, n, C=5\]"),
    (lambda a: a.update(c_sin=a["c_sin"][:, :, :6]), ValueError, "c_sin"),
    (lambda a: a.update(c_sin=a["c_sin"].half()), TypeError, "c_sin"),
    (lambda a: a.update(c_cos=a["c_cos"][:, :, :0], c_sin=a["c_sin"][:, :, :0]), ValueError, "at least one frequency"),
    (lambda a: a.update(start=-1), ValueError, "start must be an integer >= 0"),
    (lambda a: a.update(start=2.0), TypeError, "start must be an integer"),
    (lambda a: a.update(period=0), ValueError, "period must be an integer >= 1"),
    (lambda a: a.update(start=18), ValueError, "start=18 \\+ 3 tokens exceeds period=20"),
], ids=["x-list", "x-2d", "x-int", "x-channels", "x-batch", "sin-freqs", "sin-dtype", "no-freqs", "start-negative",
        "start-float", "period-zero", "span-full"])
def test_bad_update_inputs_raise_naming_the_argument(fn, change, error, match):
    a = _update_inputs()
    change(a)
    with pytest.raises(error, match=match):
        fn(**a)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_streaming_token_by_token_equals_compressing_the_longer_span(dtype):
    # The KV method's streaming update (reference/kv/fourier.py, FourierSpan.push) rests on this identity.
    g = torch.Generator().manual_seed(3)
    length, new, period, n = 37, 5, 50, 19
    x = torch.randn(2, length + new, 6, generator=g).to(DEVICE, dtype)
    c_cos, c_sin = fourier_compress(x[:, :length].float(), n, period)
    for j in range(new):
        c_cos, c_sin = fourier_stream_update_triton(c_cos, c_sin, x[:, length + j: length + j + 1], length + j, period)
    want_cos, want_sin = fourier_compress(x.double(), n, period)
    assert c_cos.dtype == torch.float32  # float32 coefficients stay float32 for fp16 tokens
    torch.testing.assert_close(c_cos.double(), want_cos, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(c_sin.double(), want_sin, atol=1e-4, rtol=1e-5)


def _cache(dtype=torch.float32, seed=0, **kw):
    args = dict(batch=2, hq=6, hkv=2, d=16, context=4 + 75 + 21, num_freqs=20, k_fraction=0.6, v_fraction=0.8,
                n_init=4, n_local=21, dtype=dtype, device=DEVICE, seed=seed, q_len=3)
    args.update(kw)
    return make_fourier_cache(**args)


def _oracle(a):
    floats = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in a.items()}
    return fourier_decode_attention(**floats)


@needs_triton_device
@pytest.mark.parametrize("splits,block_t,block_n", [(1, 16, 16), (2, 32, 16), (5, 16, 32), (64, 32, 32)])
def test_every_split_and_block_size_gives_the_reference(splits, block_t, block_n):
    a = _cache()
    got = fourier_decode_attention_triton(**a, num_splits=splits, block_t=block_t, block_n=block_n)
    torch.testing.assert_close(got.double(), _oracle(a), atol=2e-5, rtol=1e-5)


@needs_triton_device
@pytest.mark.parametrize("splits,block_t,period,kept_align,kept_pad,k_fraction,window", [
    (1, 16, "span", 1, 1, 0.6, 1), (9, 16, "smooth", 8, 8, 0.6, 8), (37, 16, "pow2", 1, 8, 0.5, 8),
    (37, 16, "pow2", 1, 8, 0.6, 1)])
def test_spectral_kernel_every_split_count_block_size_and_period_gives_the_reference(splits, block_t, period,
                                                                                      kept_align, kept_pad,
                                                                                      k_fraction, window):
    # More splits than the merges read at once (8 partial outputs, 32 statistics) run their chunked loops twice or
    # more, with tokens in the last chunk (33 middle tiles of 16: 9 splits of 4 tiles, the ninth with one; 37 splits
    # of one tile, splits 32 and up in the statistics' second chunk, 33-36 empty). The kept runs are read as they
    # are in unpadded rows (window 1), through windows aligned to 8 when heads' runs start on multiples of 8, through
    # windows over random runs in rows of 16 kept channels padded to 8, and as they are in rows of 13 padded to 8
    # (a window would read past the row's width: `kept_alignment`).
    a = _cache(batch=1, context=4 + 528 + 21, seed=splits, period=period, kept_align=kept_align, kept_pad=kept_pad,
               k_fraction=k_fraction, v_fraction=0.5)
    plan = spectral_plan(**a, num_splits=splits, block_t=block_t)
    assert plan.align == window
    got = plan.run()
    torch.testing.assert_close(got.double(), _oracle(a), atol=2e-5, rtol=1e-5)


@needs_triton_device
def test_mixed_dtypes_of_a_real_cache_and_strided_views():
    # A FourierCache holds fp16 tokens with float32 coefficients and statistics; q and the exact tokens are often
    # views (a transposed projection, a slice of a longer buffer).
    a = _cache(dtype=torch.float16, seed=1)
    assert a["k_cos"].dtype == torch.float32 and a["k_mid_kept"].dtype == torch.float16
    q = a["q"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not q.is_contiguous()
    wide = torch.cat([a["k_exact"], a["k_exact"]], dim=-1)[..., :16]
    assert not wide.is_contiguous()
    a.update(q=q, k_exact=wide)
    got = fourier_decode_attention_triton(**a)
    assert got.dtype == torch.float16
    want = _oracle(a)
    baseline = fourier_decode_attention(**a)  # the same-dtype reference: the conformance rule's yardstick
    allowed = 2 * float((baseline.double() - want).abs().max()) + 1e-3
    assert float((got.double() - want).abs().max()) <= allowed


@needs_triton_device
def test_out_is_written_and_returned():
    a = _cache(seed=2)
    out = torch.full_like(a["q"], float("nan"))
    got = fourier_decode_attention_triton(**a, out=out)
    assert got is out and not out.isnan().any()
    with pytest.raises(ValueError, match="out must be"):
        fourier_decode_attention_triton(**a, out=out[:, :, :1])


@needs_triton_device
@pytest.mark.parametrize("change,error,match", [
    (lambda a: a.update(num_splits=0), ValueError, "num_splits"),
    (lambda a: a.update(recon_precision="fp8"), ValueError, "recon_precision"),
    (lambda a: a.update(block_t=24), ValueError, "block_t"),
    (lambda a: a.update(q=torch.cat([a["q"]] * 16, dim=1)), ValueError, "at most 128"),
    (lambda a: a.update(k_cos=a["k_cos"][:, :, :5]), ValueError, "k_cos/k_sin"),
    (lambda a: a.update(v_kept_idx=a["v_kept_idx"][1:]), ValueError, "partition"),
])
def test_bad_decode_inputs_raise_before_launch(change, error, match):
    a = _cache()
    change(a)
    with pytest.raises(error, match=match):
        fourier_decode_attention_triton(**a)


@needs_triton_device
def test_replayed_edge_cases_conform():
    # Corners the drawn cases reach only rarely: every channel compressed / none, no sink tokens, a middle of one
    # token with period 1, Lq = 16 with a GQA group of 3, a single frequency.
    cases = [
        dict(batch=2, kv_heads=2, group=3, head_dim=8, q_len=16, n_init=0, n_local=16, mid_len=1, period=1,
             num_freqs=40, k_fraction=1.0, v_fraction=0.0, seed=1),
        dict(batch=1, kv_heads=1, group=1, head_dim=32, q_len=1, n_init=4, n_local=1, mid_len=130, period=194,
             num_freqs=1, k_fraction=0.0, v_fraction=1.0, seed=2),
    ]
    for case in cases:
        for dtype in (torch.float32, torch.float16):
            res = check_case("fourier_decode_attention", fourier_decode_attention_triton, case, dtype, DEVICE)
            assert res.passed, res.message


def test_bytes_read_counts_every_input_once():
    a = make_fourier_cache(1, 4, 2, 8, context=40, num_freqs=3, n_init=2, n_local=10, dtype=torch.float16,
                           device="cpu", seed=0)
    ck, cv = a["k_comp_idx"].numel(), a["v_comp_idx"].numel()
    m, channels = 28, 16
    assert a["mid_len"] == m and ck == round(0.73 * channels) and cv == round(0.79 * channels)
    want = (2 * 4 * 8 * 2  # q read, out written (fp16)
            + 2 * 2 * 12 * 8 * 2  # exact K and V
            + m * (2 * channels - ck - cv) * 2  # kept middle channels
            + (ck + cv) * 3 * 2 * 4  # coefficients, float32
            + (ck + cv) * 2 * 4  # moment statistics, float32
            + 2 * channels * 4)  # int32 channel maps
    assert fourier_bytes_read(**a) == want
    with pytest.raises(ValueError, match="context"):
        make_fourier_cache(1, 4, 2, 8, context=10, num_freqs=3, n_init=2, n_local=10, device="cpu")


VARLEN = [pytest.param(fourier_decode_attention_varlen, id="reference"),
          pytest.param(fourier_decode_attention_varlen_triton, id="triton", marks=needs_triton_device)]
VARLEN_CASE = dict(batch=3, kv_heads=2, group=2, head_dim=16, q_len=2, n_init=3, n_locals=[5, 20, 2],
                   mid_lens=[40, 7, 1], periods=[40, 30, 1], num_freqs=9, k_fraction=0.5, v_fraction=0.7, seed=4)


def _long(values):
    return torch.tensor(values, dtype=torch.long, device=DEVICE)


@pytest.mark.parametrize("fn", VARLEN)
@pytest.mark.parametrize("change,error,match", [
    (lambda a: a.update(mid_lens=a["mid_lens"].int()), TypeError, "mid_lens must be a long"),
    (lambda a: a.update(mid_lens=[40, 7, 1]), TypeError, "mid_lens must be a torch.Tensor"),
    (lambda a: a.update(mid_lens=_long([40, 7])), ValueError, r"mid_lens must have shape \[B\]"),
    (lambda a: a.update(mid_lens=_long([40, 0, 1])), ValueError, r"mid_lens\[1\] = 0 must be >= 1"),
    (lambda a: a.update(mid_lens=_long([41, 7, 1])), ValueError, r"mid_lens\[0\] = 41 must be >= 1 and <= 40"),
    (lambda a: a.update(periods=_long([40, 6, 1])), ValueError, r"periods\[1\] = 6 must be >= 7"),
    (lambda a: a.update(exact_lens=_long([8, 23, 4])), ValueError, r"exact_lens\[2\] = 4 must be >= 5"),
    (lambda a: a.update(exact_lens=_long([8, 24, 5])), ValueError, r"exact_lens\[1\] = 24 must be >= 5 and <= 23"),
    (lambda a: a.update(k_cos=a["k_cos"][:2]), ValueError, "k_cos/k_sin"),
], ids=["mid-int32", "mid-list", "mid-shape", "mid-zero", "mid-past-padding", "period-short", "exact-below-q",
        "exact-past-padding", "k_cos-batch"])
def test_bad_varlen_inputs_raise_naming_the_argument(fn, change, error, match):
    a = varlen_inputs(VARLEN_CASE, torch.float32, DEVICE)
    change(a)
    with pytest.raises(error, match=match):
        fn(**a)


@needs_triton_device
def test_varlen_rows_equal_single_sequence_calls():
    # Each row of the padded batch is the single-sequence kernel on that sequence's slices (padding ignored).
    a = varlen_inputs(VARLEN_CASE, torch.float32, DEVICE)
    got = fourier_decode_attention_varlen_triton(**a, num_splits=2)
    for i in range(3):
        e, m, s = int(a["exact_lens"][i]), int(a["mid_lens"][i]), slice(i, i + 1)
        one = {k: a[k] for k in ("n_init", "k_kept_idx", "k_comp_idx", "v_kept_idx", "v_comp_idx")}
        one.update({k: a[k][s] for k in ("q", "k_cos", "k_sin", "k_scale", "k_shift", "v_cos", "v_sin", "v_scale",
                                          "v_shift")})
        one.update(k_exact=a["k_exact"][s, :, :e], v_exact=a["v_exact"][s, :, :e], k_mid_kept=a["k_mid_kept"][s, :m],
                   v_mid_kept=a["v_mid_kept"][s, :m], mid_len=m, period=int(a["periods"][i]))
        torch.testing.assert_close(got[s], fourier_decode_attention_triton(**one, num_splits=1), atol=2e-6, rtol=1e-5)


@triton.jit
def _basis_table(C, S, period, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c, s = cos_sin(i, period)
    tl.store(C + i, c, mask=i < period)
    tl.store(S + i, s, mask=i < period)


@needs_triton_device
@pytest.mark.parametrize("period", [1, 2, 3, 7, 1000, 32_767, 100_003])
def test_kernel_basis_is_accurate_at_any_period(period):
    # The kernels' cos/sin (quadrant reduction in integers + polynomials) against float64: within ~2 float32 ulps
    # of 1 (seen: 8.5e-8 in the interpreter, 1.3e-7 on an H200); the reference's float64 table rounds to 6e-8.
    c = torch.full((period,), float("nan"), device=DEVICE)
    s = torch.full_like(c, float("nan"))
    _basis_table[(triton.cdiv(period, 1024),)](c, s, period, BLOCK=1024)
    angle = 2 * torch.pi * torch.arange(period, dtype=torch.float64, device=DEVICE) / period
    assert float((c.double() - angle.cos()).abs().max()) < 2.5e-7
    assert float((s.double() - angle.sin()).abs().max()) < 2.5e-7
