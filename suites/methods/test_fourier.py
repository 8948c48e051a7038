"""FourierAttention method (reference/kv/fourier.py) and its dimension search (reference/kv/fourier_search.py)."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.kv import make_method
from reference.kv.base import PrefillLayer, TokenCache
from reference.kv.fourier import FourierCache, FourierLayout, FourierSpan, layout_bytes
from reference.kv.fourier_search import (
    FourierDims,
    channel_errors,
    choose_compressed,
    layer_errors,
    rank_channels,
    search_dims,
)
from reference.ops.attention import attention
from reference.ops.fourier_period import PERIOD_MODES, choose_period
from suites.strategies import compression_ratios, prefill_layers, seeds


def random_dims(layer: PrefillLayer, frac_k: float, frac_v: float, seed: int) -> FourierDims:
    """Random compressed channels (a different set per layer and for K and V)."""
    c = layer.keys.shape[1] * layer.keys.shape[3]
    g = torch.Generator().manual_seed(seed)
    pick = lambda f: tuple(torch.randperm(c, generator=g)[: int(f * c)].tolist())  # noqa: E731
    return FourierDims(tuple(pick(frac_k) for _ in range(layer.num_layers)),
                       tuple(pick(frac_v) for _ in range(layer.num_layers)), c)


def fourier(layer: PrefillLayer, ratio=0.5, seed=0, frac_k=0.75, frac_v=0.6, window=8, **params):
    return make_method("fourier", ratio, window=window, dims=random_dims(layer, frac_k, frac_v, seed), **params)


def flat_mid(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """[B, H, L, D] tokens start..stop-1 -> [B, stop - start, H * D]."""
    b, h, _, d = x.shape
    return x[:, :, start:stop].transpose(1, 2).reshape(b, stop - start, h * d)


def new_tokens(layer: PrefillLayer, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    b, h, _, d = layer.keys.shape
    return torch.randn(b, h, n, d, generator=g), torch.randn(b, h, n, d, generator=g)


# ---------------------------------------------------------------- what is exact and what is approximated
@given(layer=prefill_layers(min_len=40, max_len=150, max_protected=3), ratio=st.floats(0.2, 0.8), seed=seeds())
def test_only_the_chosen_channels_of_the_middle_are_approximated(layer, ratio, seed):
    state = fourier(layer, ratio, seed).compress(layer)
    assert isinstance(state, FourierCache)
    n, s, w = layer.length, state.sink, state.local_len
    assert len(state) == n and w == 8 + layer.protected  # protected tokens are part of the exact local tail
    k, v = state.keys_values()
    for got, ref, span in ((k, layer.keys, state.k_span), (v, layer.values, state.v_span)):
        assert got.shape == ref.shape
        assert torch.equal(got[:, :, :s], ref[:, :, :s]) and torch.equal(got[:, :, n - w :], ref[:, :, n - w :])
        g, r = flat_mid(got, s, n - w), flat_mid(ref, s, n - w)
        kept = torch.ones(g.shape[-1], dtype=torch.bool)
        kept[span.comp_idx] = False
        assert torch.equal(g[..., kept], r[..., kept])
        if span.comp_idx.numel() and span.cos.shape[2] < span.period // 2 + 1:
            assert not torch.allclose(g[..., ~kept], r[..., ~kept], atol=1e-3)


@given(layer=prefill_layers(min_len=30, max_len=90, max_protected=2), seed=seeds(), extra=st.integers(0, 5))
def test_a_complete_basis_rebuilds_the_middle_exactly(layer, seed, extra):
    # The method never picks a complete basis (a middle that short is kept exact), so build the state directly.
    s, local = 4, 8 + layer.protected
    mid_len = layer.length - s - local
    period = mid_len + extra
    layout = FourierLayout(s, mid_len, local, period, num_freqs=period // 2 + 1)
    dims = random_dims(layer, 0.75, 0.6, seed)
    comp = [torch.tensor(x[layer.layer_idx], dtype=torch.long) for x in (dims.k_compressed, dims.v_compressed)]
    state = FourierCache(layer, layout, *comp, moment_matching=True)
    k, v = state.keys_values()
    torch.testing.assert_close(k, layer.keys, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(v, layer.values, atol=1e-4, rtol=1e-4)


@given(layer=prefill_layers(min_len=70, max_len=130), seed=seeds())
def test_reconstruction_error_never_grows_with_more_states(layer, seed):
    layer.max_new_tokens = 0  # span length == period: more frequencies can only help (Parseval)
    errors = []
    for states in (2, 4, 8, 16, 32):
        state = fourier(layer, 0.5, seed, num_states=states, moment_matching=False).compress(layer)
        k, v = state.keys_values()
        errors.append(float(((k - layer.keys) ** 2).sum() + ((v - layer.values) ** 2).sum()))
    assert all(b <= a * (1 + 1e-6) + 1e-6 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0]


# ---------------------------------------------------------------- the streaming update
@pytest.mark.parametrize("period", PERIOD_MODES)
@given(layer=prefill_layers(min_len=40, max_len=120, max_protected=2), seed=seeds(),
       chunks=st.lists(st.integers(1, 12), min_size=1, max_size=3))
def test_streaming_update_equals_compressing_the_extended_span(period, layer, seed, chunks):
    layer.max_new_tokens = sum(chunks)
    state = fourier(layer, 0.5, seed, period=period).compress(layer)
    capacity = state.k_span.mid_len + layer.max_new_tokens
    want_period = choose_period(capacity, period)  # a longer period still streams only to the capacity
    assert state.k_span.period == state.v_span.period == want_period
    all_k, all_v = layer.keys, layer.values
    for i, n in enumerate(chunks):
        k_new, v_new = new_tokens(layer, n, seed + i)
        state.append(k_new, v_new)
        all_k, all_v = torch.cat([all_k, k_new], 2), torch.cat([all_v, v_new], 2)
    s, w, total = state.sink, state.local_len, all_k.shape[2]
    assert len(state) == total and w == max(8 + layer.protected, chunks[-1])  # the last chunk stays exact
    assert torch.equal(state.k_exact, torch.cat([all_k[:, :, :s], all_k[:, :, total - w :]], 2))
    for x, span in ((all_k, state.k_span), (all_v, state.v_span)):
        mid = flat_mid(x, s, total - w)
        scratch = FourierSpan(mid, span.comp_idx, span.cos.shape[2], span.period, moment_matching=False)
        assert span.mid_len == scratch.mid_len and torch.equal(span.mid_kept, scratch.mid_kept)
        torch.testing.assert_close(span.cos, scratch.cos, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(span.sin, scratch.sin, atol=1e-4, rtol=1e-4)


def test_appending_past_the_declared_new_tokens_is_a_clear_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 80, 8, generator=g)
    layer = PrefillLayer(0, 1, x, x.clone(), x.clone(), max_new_tokens=2)
    state = fourier(layer, 0.5).compress(layer)
    state.append(*new_tokens(layer, 2, 1))
    with pytest.raises(RuntimeError, match="max_new_tokens"):
        state.append(*new_tokens(layer, 1, 2))


# ---------------------------------------------------------------- attention through the state
@pytest.mark.parametrize("period", ["span", "pow2"])
@given(layer=prefill_layers(min_len=40, max_len=120, max_protected=2), seed=seeds(),
       chunks=st.lists(st.integers(1, 12), min_size=1, max_size=3))
def test_decode_attention_through_the_state_equals_dense_attention_over_the_reconstruction(period, layer, seed, chunks):
    layer.max_new_tokens = sum(chunks)
    state = fourier(layer, 0.5, seed, period=period).compress(layer)
    scale = layer.keys.shape[3] ** -0.5
    for i, n in enumerate(chunks):  # chunks longer than the window (8) check the causal block of a question
        state.append(*new_tokens(layer, n, seed + i))
        q = torch.randn(layer.keys.shape[0], layer.queries.shape[1], n, layer.keys.shape[3],
                        generator=torch.Generator().manual_seed(seed + i))
        want = attention(q.double(), *(t.double() for t in state.keys_values()), causal=True, scale=scale)
        # the first call checks the layout and makes the cache's plan; later ones decode through that plan
        torch.testing.assert_close(state.attend(q, scale).double(), want, atol=1e-5, rtol=1e-5)
    assert state.plan is not None
    torch.testing.assert_close(state.attend(q, scale, impl="torch").double(), want, atol=1e-4, rtol=1e-4)
    # "triton" is the token-major kernel at these sizes (the interpreter on a CPU): the GPU decode path of the method.
    torch.testing.assert_close(state.attend(q, scale, impl="triton").double(), want, atol=1e-4, rtol=1e-4)


def test_triton_backend_takes_the_low_rank_kernel_from_its_size_and_both_kernels_decode_the_state():
    from reference.kv.fourier import LOWRANK_MIN_TOKENS, triton_impl

    assert triton_impl(1, LOWRANK_MIN_TOKENS - 1) == "triton_tiles"
    assert triton_impl(1, LOWRANK_MIN_TOKENS) == triton_impl(8, LOWRANK_MIN_TOKENS // 8) == "triton_lowrank"
    g = torch.Generator().manual_seed(3)
    layer = PrefillLayer(0, 1, *(torch.randn(2, h, 150, 16, generator=g) for h in (4, 2, 2)), max_new_tokens=3)
    state = fourier(layer, 0.5).compress(layer)
    state.append(*new_tokens(layer, 3, 1))
    q = torch.randn(2, 4, 3, 16, generator=g)
    want = attention(q.double(), *(t.double() for t in state.keys_values()), causal=True, scale=0.25)
    for impl in ("triton_tiles", "triton_lowrank"):
        torch.testing.assert_close(state.attend(q, 0.25, impl=impl).double(), want, atol=1e-4, rtol=1e-4)


@given(layer=prefill_layers(min_len=10, max_len=100, max_protected=3), seed=seeds())
def test_ratio_zero_equals_full(layer, seed):
    state = make_method("fourier", 0.0).compress(layer)  # needs no dims: nothing is compressed
    assert state.nbytes() == 2 * layer.keys.numel() * layer.keys.element_size() and len(state) == layer.length
    k_new, v_new = new_tokens(layer, 2, seed)
    state.append(k_new, v_new)
    q = torch.randn(layer.keys.shape[0], layer.queries.shape[1], 2, layer.keys.shape[3])
    want = attention(q, torch.cat([layer.keys, k_new], 2), torch.cat([layer.values, v_new], 2), scale=0.3)
    assert torch.equal(state.attend(q, 0.3), want)


@given(layer=prefill_layers(min_len=10, max_len=40), num_states=st.sampled_from([8, 16, 32]), seed=seeds())
def test_a_context_shorter_than_sink_window_and_states_is_kept_exact(layer, num_states, seed):
    method = fourier(layer, 0.5, seed, window=8, num_states=num_states)
    state = method.compress(layer)
    short = layer.length < 4 + 8 + num_states
    assert isinstance(state, TokenCache) == short
    if short:
        assert torch.equal(state.keys, layer.keys) and torch.equal(state.values, layer.values)


# ---------------------------------------------------------------- bytes
def tensors_held(obj, seen=None) -> list[torch.Tensor]:
    """Every tensor reachable from obj's attributes (not from its methods' bookkeeping)."""
    seen = set() if seen is None else seen
    out = []
    for value in vars(obj).values():
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif hasattr(value, "__dict__") and id(value) not in seen:
            seen.add(id(value))
            out += tensors_held(value, seen)
    return out


@given(layer=prefill_layers(min_len=60, max_len=150, max_protected=3), seed=seeds(), n_new=st.integers(0, 5))
def test_bytes_reported_are_bytes_held(layer, seed, n_new):
    layer.max_new_tokens = n_new
    state = fourier(layer, 0.5, seed).compress(layer)
    b, h, _, d = layer.keys.shape
    ck, cv = state.k_span.comp_idx.numel(), state.v_span.comp_idx.numel()
    assert state.nbytes() == layout_bytes(method_layout(state), b, h * d, layer.keys.element_size(), ck, cv)
    if n_new:
        state.append(*new_tokens(layer, n_new, seed))
    assert state.nbytes() == sum(t.numel() * t.element_size() for t in tensors_held(state))


def method_layout(state: FourierCache) -> FourierLayout:
    return FourierLayout(state.sink, state.k_span.mid_len, state.local_len, state.k_span.period, state.k_span.cos.shape[2])


def test_coefficient_bytes_do_not_grow_with_length():
    g = torch.Generator().manual_seed(0)
    sizes, totals = [], []
    for n in (200, 400, 800):
        layer = PrefillLayer(0, 1, torch.randn(1, 4, n, 16, generator=g), torch.randn(1, 2, n, 16, generator=g),
                             torch.randn(1, 2, n, 16, generator=g))
        state = fourier(layer, 0.5, num_states=32, window=64).compress(layer)
        sizes.append(sum(t.numel() * t.element_size() for s in (state.k_span, state.v_span) for t in (s.cos, s.sin)))
        totals.append(state.nbytes())
    assert sizes[0] == sizes[1] == sizes[2] > 0
    # Past the limit only the critical channels grow: 2 * 32 channels minus 24 + 19 compressed, float32.
    per_token = (2 * 32 - int(0.75 * 32) - int(0.6 * 32)) * 4
    assert totals[1] - totals[0] == 200 * per_token and totals[2] - totals[1] == 400 * per_token


@given(layer=prefill_layers(min_len=150, max_len=400, max_protected=3), ratio=compression_ratios(0.9), seed=seeds())
def test_compression_ratio_sets_the_bytes_held(layer, ratio, seed):
    state = fourier(layer, max(ratio, 0.01), seed, frac_k=0.9, frac_v=0.9, window=16).compress(layer)
    b, h, _, d = layer.keys.shape
    e = layer.keys.element_size()
    target = (1 - max(ratio, 0.01)) * 2 * b * layer.context_length * h * d * e + 2 * b * layer.protected * h * d * e
    per_freq = b * (state.k_span.comp_idx.numel() + state.v_span.comp_idx.numel()) * 8
    n_freq, most = state.k_span.cos.shape[2], state.k_span.mid_len // 2
    held = state.nbytes()
    if n_freq < most:  # the most frequencies that fit (or the floor of 1 when even that is over)
        assert held > target - per_freq
    if n_freq > 1:
        assert held <= target


# ---------------------------------------------------------------- the dimension search
@given(seed=seeds(), n_smooth=st.integers(2, 6), n_noisy=st.integers(2, 6), length=st.integers(160, 320))
def test_search_picks_planted_smooth_channels_and_rejects_noisy_ones(seed, n_smooth, n_noisy, length):
    g = torch.Generator().manual_seed(seed)
    c = n_smooth + n_noisy
    smooth = torch.randperm(c, generator=g)[:n_smooth]
    samples = []
    for _ in range(2):
        t = torch.arange(length, dtype=torch.float64)[:, None] / length
        freq = torch.randint(1, 4, (1, c), generator=g)
        x = torch.randn(length, c, generator=g, dtype=torch.float64) * 2  # white noise: no few frequencies describe it
        x[:, smooth] = (2 * torch.sin(2 * torch.pi * freq * t + torch.rand(1, c, generator=g, dtype=torch.float64) * 6)
                        + 0.01 * torch.randn(length, c, generator=g, dtype=torch.float64))[:, smooth]
        samples.append(x)
    errors = rank_channels(samples)
    noisy = torch.ones(c, dtype=torch.bool)
    noisy[smooth] = False
    assert errors[smooth].max() < errors[noisy].min()
    assert choose_compressed(errors, n_smooth / c) == tuple(sorted(smooth.tolist()))


def test_channel_errors_take_the_given_split():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert not torch.equal(channel_errors(x, num_states=4), channel_errors(x, num_states=40))
    with pytest.raises(ValueError, match="too short"):
        channel_errors(x[:20], num_states=40)


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    return LlamaForCausalLM(config).eval()


def test_calibrate_end_to_end_on_a_tiny_llama(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path))
    model = tiny_llama()
    ids = [torch.randint(0, 100, (1, 120), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    method = make_method("fourier", 0.5)
    method.calibrate(model, ids)
    dims = method.dims
    assert dims.num_layers == 2 and dims.channels == 32
    assert all(len(k) == round(0.73 * 32) for k in dims.k_compressed)
    assert all(len(v) == round(0.79 * 32) for v in dims.v_compressed)
    assert all(sorted(k + kept) == list(range(32)) for k, kept in zip(dims.k_compressed, dims.k_kept))

    # The hooks score k_proj / v_proj outputs (pre-RoPE K, V): the same errors as ranking them by hand.
    seen: list[torch.Tensor] = []
    handle = model.model.layers[1].self_attn.k_proj.register_forward_hook(lambda m, a, out: seen.append(out[0].detach()))
    with torch.no_grad():
        for x in ids:
            model(input_ids=x, use_cache=False)
    handle.remove()
    k_err, _ = layer_errors(model, ids)
    torch.testing.assert_close(k_err[1], rank_channels(seen))
    assert dims.k_compressed[1] == choose_compressed(rank_channels(seen), 0.73)

    # Cached on disk, keyed by model and settings: a second search reads the file.
    cached = list((tmp_path / "fourier_dims").glob("*.json"))
    assert len(cached) == 1 and FourierDims.from_json(cached[0]) == dims
    raw = json.loads(cached[0].read_text())
    raw["k_compressed"][0], raw["k_kept"][0] = raw["k_kept"][0], raw["k_compressed"][0]
    cached[0].write_text(json.dumps(raw))
    assert search_dims(model, ids).k_compressed[0] == dims.k_kept[0]
    assert search_dims(model, ids, fraction_k=0.5) != dims  # other settings: a new search
    assert len(list((tmp_path / "fourier_dims").glob("*.json"))) == 2

    # The calibrated method compresses this model's layers.
    g = torch.Generator().manual_seed(3)
    layer = PrefillLayer(1, 2, torch.randn(1, 4, 90, 16, generator=g), torch.randn(1, 2, 90, 16, generator=g),
                         torch.randn(1, 2, 90, 16, generator=g), max_new_tokens=1)
    state = method.compress(layer)
    assert isinstance(state, FourierCache) and state.nbytes() < 2 * layer.keys.numel() * 4
    state.append(*new_tokens(layer, 1, 4))
    assert state.attend(torch.randn(1, 4, 1, 16, generator=g), 0.25).shape == (1, 4, 1, 16)


def test_dims_path_is_loaded_and_written(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path / "cache"))
    model = tiny_llama()
    ids = [torch.randint(0, 100, (1, 100), generator=torch.Generator().manual_seed(9))]
    path = tmp_path / "dims.json"
    first = make_method("fourier", 0.5, dims_path=str(path))
    first.calibrate(model, ids)
    assert path.is_file() and FourierDims.from_json(path) == first.dims
    second = make_method("fourier", 0.5, dims_path=str(path))
    x = torch.randn(1, 2, 80, 16)
    assert isinstance(second.compress(PrefillLayer(0, 2, torch.randn(1, 4, 80, 16), x, x.clone())), FourierCache)
    assert second.dims == first.dims


def test_fourier_dims_json_round_trip_and_bad_files(tmp_path):
    dims = FourierDims(((3, 1), ()), ((0,), (2, 1, 0)), channels=4, model_id="m", settings={"fraction_k": 0.5})
    assert dims.k_compressed == ((1, 3), ()) and dims.k_kept == ((0, 2), (0, 1, 2, 3)) and dims.v_kept == ((1, 2, 3), (3,))
    dims.to_json(tmp_path / "d.json")
    assert FourierDims.from_json(tmp_path / "d.json") == dims
    (tmp_path / "bad.json").write_text('{"k_compressed": [[0]]}')
    with pytest.raises(ValueError, match="dims_path"):
        FourierDims.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="k_compressed"):
        FourierDims(((5,),), ((0,),), channels=4)
    with pytest.raises(ValueError, match="same layers"):
        FourierDims(((0,),), (), channels=4)


def test_params_round_trip_with_dims():
    x = torch.randn(1, 2, 50, 8)
    method = fourier(PrefillLayer(0, 3, x, x, x), 0.4, num_states=6)
    assert make_method("fourier", **method.params()) == method


# ---------------------------------------------------------------- errors
def test_missing_dims_is_a_clear_error():
    x = torch.randn(1, 2, 100, 8)
    with pytest.raises(RuntimeError, match="calibrate"):
        make_method("fourier", 0.5).compress(PrefillLayer(0, 1, x, x, x))


def test_dims_of_another_model_are_a_clear_error():
    x = torch.randn(1, 2, 100, 8)
    method = fourier(PrefillLayer(0, 1, x, x, x))
    with pytest.raises(ValueError, match="calibrate again"):
        method.compress(PrefillLayer(0, 1, torch.randn(1, 3, 100, 8), x[:, :1].repeat(1, 3, 1, 1), x[:, :1].repeat(1, 3, 1, 1)))


@pytest.mark.parametrize(
    "params,error,needle",
    [
        ({"num_states": 1}, ValueError, "num_states"),
        ({"num_states": 7}, ValueError, "even"),
        ({"window": -3}, ValueError, "window"),
        ({"sink_tokens": -1}, ValueError, "sink_tokens"),
        ({"sink_tokens": 2.5}, ValueError, "sink_tokens"),
        ({"compressed_fraction_k": 1.5}, ValueError, "compressed_fraction_k"),
        ({"compressed_fraction_v": -0.1}, ValueError, "compressed_fraction_v"),
        ({"moment_matching": "yes"}, TypeError, "moment_matching"),
        ({"dims": [1, 2]}, TypeError, "dims"),
        ({"compression_ratio": 1.0}, ValueError, "compression_ratio"),
    ],
)
def test_bad_parameters(params, error, needle):
    ratio = params.pop("compression_ratio", 0.5)
    with pytest.raises(error, match=needle):
        make_method("fourier", ratio, **params)


def test_bad_calibration_input():
    model = tiny_llama()
    with pytest.raises(ValueError, match="calibration_ids"):
        search_dims(model, [])
    with pytest.raises(ValueError, match="too short"):
        search_dims(model, [torch.randint(0, 100, (1, 8))], use_cache=False)
    with pytest.raises(ValueError, match="LLaMA-family"):
        search_dims(torch.nn.Linear(2, 2), [torch.randint(0, 100, (1, 100))], use_cache=False)
