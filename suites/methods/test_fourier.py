"""FourierAttention: basis properties, the compressed cache, the streaming update, the channel search."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.kv import make_method
from reference.kv.base import PrefillLayer, TokenCache
from reference.kv.fourier import FourierCache
from reference.kv.fourier_search import FourierDims, choose_compressed, rank_channels, search_dims
from reference.ops.attention import attention
from reference.ops.fourier import assemble, fourier_compress, fourier_reconstruct
from reference.registry import get_impl
from suites.strategies import prefill_layers, seeds


@given(length=st.integers(1, 80), extra=st.integers(0, 20), channels=st.integers(1, 6), seed=seeds())
def test_reconstruction_is_exact_with_a_complete_basis(length, extra, channels, seed):
    period = length + extra
    x = torch.randn(2, length, channels, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rec = fourier_reconstruct(*fourier_compress(x, period // 2 + 1, period), length, period)
    torch.testing.assert_close(rec, x, atol=1e-9, rtol=1e-9)


@given(length=st.integers(4, 90), channels=st.integers(1, 5), seed=seeds())
def test_error_never_grows_with_more_frequencies(length, channels, seed):
    x = torch.randn(1, length, channels, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    errors = [float(((fourier_reconstruct(*fourier_compress(x, n, length), length, length) - x) ** 2).sum())
              for n in range(1, length // 2 + 2)]
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-12


def _dims_for(layer: PrefillLayer, frac_k: float, frac_v: float, seed: int) -> FourierDims:
    c = layer.keys.shape[1] * layer.keys.shape[3]
    g = torch.Generator().manual_seed(seed)
    k = tuple(sorted(torch.randperm(c, generator=g)[: int(frac_k * c)].tolist()))
    v = tuple(sorted(torch.randperm(c, generator=g)[: int(frac_v * c)].tolist()))
    return FourierDims((k,) * layer.num_layers, (v,) * layer.num_layers, c)


def _fourier(layer, ratio=0.5, seed=0, **kw):
    method = make_method("fourier", ratio, window=kw.pop("window", 8), **kw)
    method.dims = _dims_for(layer, 0.75, 0.6, seed)
    return method


def _reassembled(state: FourierCache):
    k = assemble(torch.cat([state.init_k, state.local_k], 2), state.sink, state.k.mid_kept, state.k.kept_idx, state.k.comp_idx,
                 state.k.cos, state.k.sin, state.k.scale, state.k.shift, state.k.mid_len, state.k.period)
    v = assemble(torch.cat([state.init_v, state.local_v], 2), state.sink, state.v.mid_kept, state.v.kept_idx, state.v.comp_idx,
                 state.v.cos, state.v.sin, state.v.scale, state.v.shift, state.v.mid_len, state.v.period)
    return k, v


@given(layer=prefill_layers(min_len=40, max_len=150, max_protected=3), ratio=st.floats(0.2, 0.8), seed=seeds())
def test_only_the_chosen_channels_of_the_middle_are_approximated(layer, ratio, seed):
    method = _fourier(layer, ratio, seed)
    state = method.compress(layer)
    assert isinstance(state, FourierCache)
    k, v = _reassembled(state)
    n, s, w = layer.length, state.sink, state.local_k.shape[2]
    assert len(state) == n and k.shape == layer.keys.shape
    for got, ref, comp in ((k, layer.keys, state.k.comp_idx), (v, layer.values, state.v.comp_idx)):
        assert torch.equal(got[:, :, :s], ref[:, :, :s]) and torch.equal(got[:, :, n - w :], ref[:, :, n - w :])
        flat_got = got[:, :, s : n - w].transpose(1, 2).reshape(got.shape[0], n - s - w, -1)
        flat_ref = ref[:, :, s : n - w].transpose(1, 2).reshape(got.shape[0], n - s - w, -1)
        kept = torch.ones(flat_ref.shape[-1], dtype=torch.bool)
        kept[comp] = False
        assert torch.equal(flat_got[..., kept], flat_ref[..., kept])
        if comp.numel() and state.k.cos.shape[2] < (state.k.period // 2 + 1):
            assert not torch.allclose(flat_got[..., ~kept], flat_ref[..., ~kept])


@given(layer=prefill_layers(min_len=40, max_len=120), seed=seeds(), extra=st.integers(1, 12))
def test_streaming_update_equals_compressing_the_extended_span(layer, seed, extra):
    layer.max_new_tokens = extra
    method = _fourier(layer, 0.5, seed)
    state = method.compress(layer)
    g = torch.Generator().manual_seed(seed)
    b, h, _, d = layer.keys.shape
    new_k, new_v = torch.randn(b, h, extra, d, generator=g), torch.randn(b, h, extra, d, generator=g)
    state.append(new_k, new_v)
    all_k = torch.cat([layer.keys, new_k], 2)
    s, w = state.sink, state.local_k.shape[2]
    mid = all_k[:, :, s : all_k.shape[2] - w].transpose(1, 2).reshape(b, -1, h * d)
    cos, sin = fourier_compress(mid[:, :, state.k.comp_idx].double(), state.k.cos.shape[2], state.k.period)
    torch.testing.assert_close(state.k.cos.double(), cos, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(state.k.sin.double(), sin, atol=1e-4, rtol=1e-4)
    assert torch.equal(state.k.mid_kept, mid[:, :, state.k.kept_idx])
    assert len(state) == all_k.shape[2]


@given(layer=prefill_layers(min_len=40, max_len=120, max_protected=2), seed=seeds(), n_new=st.integers(1, 4))
def test_decode_attention_equals_dense_attention_over_the_reconstruction(layer, seed, n_new):
    layer.max_new_tokens = n_new
    state = _fourier(layer, 0.5, seed).compress(layer)
    g = torch.Generator().manual_seed(seed)
    b, h, _, d = layer.keys.shape
    state.append(torch.randn(b, h, n_new, d, generator=g), torch.randn(b, h, n_new, d, generator=g))
    q = torch.randn(b, layer.queries.shape[1], n_new, d, generator=g)
    k, v = _reassembled(state)
    expected = attention(q, k, v, causal=True, scale=d**-0.5)
    torch.testing.assert_close(state.attend(q, d**-0.5), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.attend(q, d**-0.5, impl="torch"), expected, atol=1e-4, rtol=1e-4)


@given(layer=prefill_layers(min_len=60, max_len=150), seed=seeds())
def test_bytes_reported_are_bytes_held(layer, seed):
    state = _fourier(layer, 0.5, seed).compress(layer)
    tensors = [state.init_k, state.init_v, state.local_k, state.local_v]
    for ch in (state.k, state.v):
        tensors += [ch.mid_kept, ch.kept_idx, ch.comp_idx, ch.cos, ch.sin, ch.scale, ch.shift]
    assert state.nbytes() == sum(t.numel() * t.element_size() for t in tensors)


def test_coefficient_bytes_do_not_grow_with_length():
    sizes = []
    for n in (200, 400, 800):
        g = torch.Generator().manual_seed(n)
        layer = PrefillLayer(0, 1, torch.randn(1, 4, n, 16, generator=g), torch.randn(1, 2, n, 16, generator=g),
                             torch.randn(1, 2, n, 16, generator=g))
        state = _fourier(layer, 0.5, num_states=32).compress(layer)
        sizes.append(sum(t.numel() * t.element_size() for t in (state.k.cos, state.k.sin, state.v.cos, state.v.sin)))
    assert sizes[0] == sizes[1] == sizes[2] > 0


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_compression_ratio_sets_the_bytes_held(ratio):
    g = torch.Generator().manual_seed(1)
    n = 2000
    layer = PrefillLayer(0, 1, torch.randn(1, 6, n, 32, generator=g), torch.randn(1, 2, n, 32, generator=g),
                         torch.randn(1, 2, n, 32, generator=g))
    method = _fourier(layer, ratio, window=64)
    state = method.compress(layer)
    full = TokenCache(layer.keys, layer.values).nbytes()
    if state.k.cos.shape[2] > 1:
        assert abs(state.nbytes() / full - (1 - ratio)) < 0.02
    else:  # unreachable with these channel fractions: the fewest states, and the true bytes are reported
        assert ratio == 0.7 and state.nbytes() / full > 1 - ratio


def test_search_compresses_smooth_channels_and_keeps_noisy_ones():
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 400)[:, None]
    smooth = torch.cat([torch.sin(2 * torch.pi * f * t) for f in (1, 2, 3)], dim=1)
    noisy = torch.randn(400, 3, generator=g) * 3
    samples = [torch.cat([noisy, smooth], dim=1)]  # channels 0-2 noisy, 3-5 smooth
    errors = rank_channels(samples)
    assert errors[3:].max() < errors[:3].min()
    assert choose_compressed(errors, 0.5) == (3, 4, 5)


def test_calibrate_end_to_end_on_a_tiny_llama(tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=16)).eval()
    ids = [torch.randint(0, 100, (1, 120), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    method = make_method("fourier", 0.5)
    method.calibrate(model, ids)
    dims = method.dims
    assert dims.num_layers == 2 and dims.channels == 32
    assert all(len(k) == round(0.73 * 32) for k in dims.k_compressed)
    assert all(len(v) == round(0.79 * 32) for v in dims.v_compressed)
    cached = list((tmp_path / "fourier_dims").glob("*.json"))
    assert len(cached) == 1 and FourierDims.from_json(cached[0]) == dims
    assert search_dims(model, ids, 0.73, 0.79) == dims  # served from the on-disk cache


def test_missing_dims_is_a_clear_error():
    x = torch.randn(1, 2, 100, 8)
    with pytest.raises(RuntimeError, match="calibrate"):
        make_method("fourier", 0.5).compress(PrefillLayer(0, 1, x, x, x))


@pytest.mark.parametrize("params,needle", [({"num_states": 1}, "num_states"), ({"window": -3}, "window"),
                                            ({"sink_tokens": -1}, "sink_tokens"), ({"compressed_fraction_k": 1.5}, "compressed_fraction_k")])
def test_bad_parameters(params, needle):
    with pytest.raises(ValueError, match=needle):
        make_method("fourier", 0.5, **params)


def test_bad_op_arguments():
    x = torch.randn(1, 10, 3)
    with pytest.raises(ValueError, match="period"):
        fourier_compress(x, 4, 0)
    with pytest.raises(ValueError, match="exceeds period"):
        fourier_compress(x, 4, 5)
    with pytest.raises(ValueError, match="num_freqs"):
        fourier_compress(x, 0, 10)
    op = get_impl("fourier_decode_attention", "reference")
    with pytest.raises(ValueError, match="partition"):
        op(q=torch.randn(1, 2, 1, 4), k_exact=torch.randn(1, 1, 3, 4), v_exact=torch.randn(1, 1, 3, 4), n_init=1,
           k_mid_kept=torch.randn(1, 5, 1), k_kept_idx=torch.tensor([0]), k_comp_idx=torch.tensor([1, 2]),
           k_cos=torch.randn(1, 2, 2), k_sin=torch.randn(1, 2, 2), k_scale=torch.ones(1, 2), k_shift=torch.randn(1, 2),
           v_mid_kept=torch.randn(1, 5, 4), v_kept_idx=torch.arange(4), v_comp_idx=torch.tensor([], dtype=torch.long),
           v_cos=torch.randn(1, 0, 2), v_sin=torch.randn(1, 0, 2), v_scale=torch.ones(1, 0), v_shift=torch.randn(1, 0),
           mid_len=5, period=8)
