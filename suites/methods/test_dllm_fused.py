"""The fused layer layout (DLLM.fuse_projections, reference/dllm/model.py) and its Triton pieces
(optimized/triton_dllm_layer.py): what the GPU throughput bench runs must decode what the separate layout decodes.

- fused q/k/v and gate/up with the PyTorch pieces: the same parameters (views of the fused matrices, no second copy),
  the same state dict, logits equal to the separate layout's and the same tokens for vanilla and Sparse-dLLM (both
  impls) on the trained fixture; every cache on random tiny models (dLLM-Cache passes per-row RoPE tables);
- the layout survives .to() and can be undone;
- the Triton RMSNorm / RoPE / SiLU-times-up equal the PyTorch pieces (interpreter on the CPU), odd sizes included,
  and the fixture decodes the same tokens with them.
"""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st

from optimized.triton_dllm_layer import TRITON_LAYER_OPS
from optimized.triton_dllm_layer import rms_norm as triton_rms_norm
from optimized.triton_dllm_layer import rope_ as triton_rope
from optimized.triton_dllm_layer import silu_mul as triton_silu_mul
from reference.dllm import make_cache
from reference.dllm.generate import GenConfig, generate
from reference.dllm.model import rms_norm, rope_heads_last, rope_tables, silu_mul
from suites.methods.dllm_fixture import fixture_model, fixture_prompts
from suites.strategies import dllm_cases, seeds

pytestmark = pytest.mark.usefixtures("one_thread_module")


def fused_copy(model, ops=None):
    other = copy.deepcopy(model)
    return other.fuse_projections() if ops is None else other.fuse_projections(ops)


def test_fusing_keeps_parameters_and_state_dict_and_adds_no_copy():
    model = fixture_model()
    fused = fused_copy(model)
    assert fused.layout == "fused" and model.layout == "separate"
    want = model.state_dict()
    got = fused.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert fused.num_params() == model.num_params()
    for layer in fused.layers:
        base = layer.qkv_weight.data_ptr()
        size = layer.qkv_weight.element_size()
        d = layer.q_proj.weight.shape[1]
        assert layer.q_proj.weight.data_ptr() == base
        assert layer.k_proj.weight.data_ptr() == base + layer.q_proj.weight.numel() * size
        assert layer.v_proj.weight.data_ptr() == base + (layer.q_proj.weight.numel() + layer.k_proj.weight.numel()) * size
        assert layer.up_proj.weight.data_ptr() == layer.gate_up_weight.data_ptr() + layer.gate_proj.weight.numel() * size
        assert layer.qkv_weight.shape[1] == d and "qkv_weight" not in dict(layer.named_parameters())
    moved = fused.to(torch.float64)
    layer = moved.layers[0]
    assert moved.layout == "fused" and layer.qkv_weight.dtype == torch.float64
    assert layer.q_proj.weight.data_ptr() == layer.qkv_weight.data_ptr()
    moved.unfuse_projections()
    assert moved.layout == "separate" and not hasattr(moved.layers[0], "qkv_weight")
    assert moved.layers[0].q_proj.weight.data_ptr() != moved.layers[0].k_proj.weight.data_ptr()


def test_fused_logits_equal_the_separate_layout_on_the_fixture():
    model = fixture_model()
    prompt, _ = fixture_prompts("kv", 80, 2)
    with torch.no_grad():
        want = model(prompt)
        got = fused_copy(model)(prompt)
        loaded = fused_copy(model)
        loaded.load_state_dict(model.state_dict())  # loading writes through the views into the fused matrices
        again = loaded(prompt)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-5)


METHODS = [("vanilla", {}), ("sparse_dllm", {"keep_ratio": 0.5}),
           ("sparse_dllm", {"keep_ratio": 0.5, "impl": "triton"})]


@pytest.mark.parametrize("name, params", METHODS, ids=lambda v: str(v))
def test_fused_layout_decodes_the_same_tokens_on_the_fixture(name, params):
    model = fixture_model()
    prompt, _ = fixture_prompts("passkey", 64, 2)
    cfg = GenConfig(gen_len=16, block_len=8, steps=8)
    want, st_want = generate(model, prompt, cfg, make_cache(name, **params))
    got, st_got = generate(fused_copy(model), prompt, cfg, make_cache(name, **params))
    assert torch.equal(got, want), f"{name} {params}: {(got != want).nonzero()[:5].tolist()}"
    assert st_got["steps"] == st_want["steps"]


def test_triton_layer_pieces_give_the_fixture_its_logits_and_tokens():
    """The bench's layout (fused, Triton pieces, Sparse-dLLM with our kernels) on the fixture: logits within float32
    rounding, the same tokens (one block; the interpreter runs every program in Python)."""
    model = fixture_model()
    fused = fused_copy(model, TRITON_LAYER_OPS)
    assert fused.layout == "fused-triton"
    prompt, _ = fixture_prompts("passkey", 64, 1)
    with torch.no_grad():
        torch.testing.assert_close(fused(prompt), model(prompt), rtol=1e-4, atol=1e-4)
    cfg = GenConfig(gen_len=8, block_len=8, steps=4)
    params = {"keep_ratio": 0.5, "impl": "triton"}
    want, _ = generate(model, prompt, cfg, make_cache("sparse_dllm", **params))
    got, _ = generate(fused, prompt, cfg, make_cache("sparse_dllm", **params))
    assert torch.equal(got, want)


CACHES = [("vanilla", {}), ("sparse_dllm", {"keep_ratio": 0.5}), ("fast_dllm", {"mode": "prefix"}),
          ("fast_dllm", {"mode": "dual"}), ("dllm_cache", {"response_interval": 2, "refresh_ratio": 0.5})]


@settings(max_examples=4)
@pytest.mark.parametrize("name, params", CACHES, ids=lambda v: str(v))
@pytest.mark.parametrize("loop", ["llada", "dream"])
@given(data=st.data())
def test_every_cache_decodes_the_same_tokens_with_fused_projections(name, params, loop, data):
    """float64 random tiny models (GQA, 1-3 layers); dLLM-Cache runs layer.qkv with per-row [B, 1, n, D] tables."""
    model, prompt, gen = data.draw(dllm_cases(loop=loop))
    want, _ = generate(model, prompt, gen, make_cache(name, **params))
    got, _ = generate(fused_copy(model), prompt, gen, make_cache(name, **params))
    assert torch.equal(got, want)


# ---------------------------------------------------------------- the Triton pieces against the PyTorch ones
DTYPES = [torch.float32, torch.bfloat16]


def _tol(dtype):
    # bf16: one unit in the last place at |x| < 8 (the interpreter's float32 -> bf16 cast may round differently)
    return dict(rtol=0, atol=1e-5) if dtype == torch.float32 else dict(rtol=2 ** -6, atol=2 ** -6)


@settings(max_examples=6)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@given(rows=st.integers(0, 5), d=st.sampled_from([1, 7, 32, 48, 100, 4096]), seed=seeds())  # 4096: one row per program
def test_triton_rms_norm_equals_the_reference(dtype, rows, d, seed):
    g = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(2, rows, d, generator=g)).to(dtype)
    w = (1 + torch.randn(d, generator=g)).to(dtype)
    got = triton_rms_norm(x, w, 1e-5)
    assert got.shape == x.shape and got.dtype == dtype
    torch.testing.assert_close(got.float(), rms_norm(x, w, 1e-5).float(), **_tol(dtype))


@settings(max_examples=6)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@given(n=st.integers(1, 6), heads=st.integers(1, 7), d=st.sampled_from([2, 8, 24, 32]), per_row=st.booleans(),
       seed=seeds())
def test_triton_rope_rotates_only_its_heads_in_place_like_the_reference(dtype, n, heads, d, per_row, seed):
    g = torch.Generator().manual_seed(seed)
    b = 2
    y = torch.randn(b, n, heads + 2, d, generator=g).to(dtype)  # two trailing heads (the v part) stay untouched
    pos = torch.randint(0, 5000, (b, n), generator=g)
    if per_row:
        cos, sin = rope_tables(pos.flatten(), d, 10000.0)
        cos, sin = cos.view(b, 1, n, d), sin.view(b, 1, n, d)
    else:
        cos, sin = rope_tables(pos[0], d, 10000.0)
    want = rope_heads_last(y[:, :, :heads], cos, sin)
    work = y.clone()
    out = triton_rope(work[:, :, :heads], cos, sin)
    assert out.data_ptr() == work.data_ptr()
    torch.testing.assert_close(work[:, :, :heads].float(), want.float(), **_tol(dtype))
    assert torch.equal(work[:, :, heads:], y[:, :, heads:])


@settings(max_examples=6)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@given(rows=st.integers(0, 5), f=st.sampled_from([1, 5, 48, 1100]), seed=seeds())
def test_triton_silu_mul_equals_the_reference(dtype, rows, f, seed):
    g = torch.Generator().manual_seed(seed)
    gu = (3 * torch.randn(rows, 3, 2 * f, generator=g)).to(dtype)
    got = triton_silu_mul(gu)
    assert got.shape == (rows, 3, f)
    torch.testing.assert_close(got.float(), silu_mul(gu).float(), **_tol(dtype))


def test_triton_pieces_reject_what_they_cannot_run():
    x = torch.randn(2, 4, 8)
    with pytest.raises(TypeError, match="float32"):
        triton_rms_norm(x.double(), torch.ones(8, dtype=torch.float64), 1e-5)
    with pytest.raises(ValueError, match="weight"):
        triton_rms_norm(x, torch.ones(7), 1e-5)
    with pytest.raises(ValueError, match="cos"):
        cos, sin = rope_tables(torch.arange(3), 8, 100.0)
        triton_rope(x.view(2, 4, 1, 8), cos, sin)
    with pytest.raises(ValueError, match="even"):
        triton_silu_mul(torch.randn(2, 5))
