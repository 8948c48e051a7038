"""FourierAttention's two layout options (issue 14, items 5 and 2): the official per-layer dimension split
(`fractions="per_layer"`, reference/kv/fourier_search.py) and a power-of-two DFT period (`period="pow2"`,
reference/kv/fourier.py)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.kv import make_method
from reference.kv.base import PrefillLayer
from reference.kv.fourier import FourierCache
from reference.ops.fourier_period import choose_period
from reference.kv.fourier_search import FourierDims, fraction_schedule, official_band_fractions, search_dims
from suites.methods.test_fourier import fourier, new_tokens, tiny_llama
from suites.strategies import prefill_layers, seeds

FIRST, MIDDLE, LAST = (0.9, 0.95), (0.8, 0.8), (0.5, 0.7)


def bands(schedule) -> list[list[int]]:
    """The layers of each official band (first, middle, last) in a schedule."""
    return [[i for i, kv in enumerate(schedule) if kv == band] for band in (FIRST, MIDDLE, LAST)]


# ---------------------------------------------------------------- the per-layer schedule
def test_per_layer_schedule_for_30_layers():
    schedule = fraction_schedule("per_layer", 30)
    assert schedule == (FIRST,) * 4 + (MIDDLE,) * 17 + (LAST,) * 9
    assert bands(schedule) == [list(range(4)), list(range(4, 21)), list(range(21, 30))]
    # Totals near the official ~73% of K and ~79% of V channels.
    assert sum(k for k, _ in schedule) / 30 == pytest.approx(21.7 / 30)
    assert sum(v for _, v in schedule) / 30 == pytest.approx(23.7 / 30)


def test_28_layers_reproduce_the_official_llama_3_2_3b_table():
    schedule = fraction_schedule("per_layer", 28)
    assert bands(schedule) == [list(range(4)), list(range(4, 20)), list(range(20, 28))]
    assert sum(k for k, _ in schedule) / 28 == pytest.approx(0.7286, abs=1e-4)
    assert sum(v for _, v in schedule) / 28 == pytest.approx(0.7929, abs=1e-4)


def test_32_layers_scale_the_bands_by_depth():
    # Documented: the official Llama-3.1-8B table uses layers 0-3 and 24-31; scaling by depth gives 0-4 and 23-31.
    assert bands(fraction_schedule("per_layer", 32)) == [list(range(5)), list(range(5, 23)), list(range(23, 32))]


@given(num_layers=st.integers(1, 300))
def test_bands_are_contiguous_and_proportional(num_layers):
    schedule = fraction_schedule("per_layer", num_layers)
    first, middle, last = bands(schedule)
    assert len(first) + len(middle) + len(last) == num_layers
    assert first + middle + last == list(range(num_layers))  # in depth order, no band split in two
    for layers, share in ((first, 4 / 28), (middle, 16 / 28), (last, 8 / 28)):
        assert abs(len(layers) - share * num_layers) <= 1
    assert schedule == tuple(official_band_fractions(i, num_layers) for i in range(num_layers))


def test_global_schedule_is_one_pair_everywhere():
    assert fraction_schedule("global", 30) == ((0.73, 0.79),) * 30
    assert fraction_schedule("global", 3, 0.5, 0.25) == ((0.5, 0.25),) * 3


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "params,error,needle",
    [
        ({"fractions": "perlayer"}, ValueError, r"fractions must be one of \['global', 'per_layer'\], got 'perlayer' "
                                                r"\(did you mean 'per_layer'\?\)"),
        ({"fractions": "Per_Layer"}, ValueError, "fractions"),
        ({"fractions": None}, ValueError, "fractions"),
        ({"period": "power2"}, ValueError, r"period must be one of \['span', 'smooth', 'pow2'\]"),
        ({"period": "Pow2"}, ValueError, "did you mean 'pow2'"),
        ({"period": 1024}, ValueError, "period"),
        ({"fraction": "per_layer"}, TypeError, "did you mean 'fractions'"),
        ({"periods": "pow2"}, TypeError, "did you mean 'period'"),
        ({"fractions": "per_layer", "compressed_fraction_k": 0.5}, ValueError, "only with fractions='global'"),
    ],
)
def test_bad_parameters_are_clear_errors(params, error, needle):
    with pytest.raises(error, match=needle):
        make_method("fourier", 0.5, **params)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="fractions must be one of"):
        fraction_schedule("perlayer", 30)
    with pytest.raises(ValueError, match="num_layers"):
        fraction_schedule("per_layer", 0)
    with pytest.raises(ValueError, match="fraction_k"):
        fraction_schedule("global", 4, 1.5)
    with pytest.raises(ValueError, match="layer must lie"):
        official_band_fractions(30, 30)
    with pytest.raises(ValueError, match="fractions must be one of"):
        search_dims(tiny_llama(), [torch.randint(0, 100, (1, 100))], fractions="layers", use_cache=False)


# ---------------------------------------------------------------- recorded parameters
def test_defaults_are_not_recorded_so_old_cells_keep_their_keys():
    before = {"compression_ratio", "sink_tokens", "window", "num_states", "compressed_fraction_k",
              "compressed_fraction_v", "moment_matching", "dims", "dims_path"}
    assert set(make_method("fourier", 0.5).params()) == before
    variant = make_method("fourier", 0.5, fractions="per_layer", period="pow2")
    assert variant.params()["fractions"] == "per_layer" and variant.params()["period"] == "pow2"
    assert make_method("fourier", **variant.params()) == variant
    assert make_method("fourier", **make_method("fourier", 0.5).params()) == make_method("fourier", 0.5)


# ---------------------------------------------------------------- the search with per-layer fractions
def test_per_layer_search_counts_and_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path))
    model = tiny_llama()  # 2 layers, 32 channels: layer 0 in the middle band, layer 1 in the last one
    ids = [torch.randint(0, 100, (1, 120), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    per_layer = search_dims(model, ids, fractions="per_layer")
    assert [len(k) for k in per_layer.k_compressed] == [round(0.8 * 32), round(0.5 * 32)]
    assert [len(v) for v in per_layer.v_compressed] == [round(0.8 * 32), round(0.7 * 32)]
    assert per_layer.settings["fractions"] == "per_layer"
    assert per_layer.settings["layer_fractions"] == [list(MIDDLE), list(LAST)]
    glob = search_dims(model, ids)
    assert [len(k) for k in glob.k_compressed] == [round(0.73 * 32)] * 2
    assert len(list((tmp_path / "fourier_dims").glob("*.json"))) == 2  # never one cached search for both
    assert search_dims(model, ids, fractions="per_layer") == per_layer  # read back from its own file
    # The ranking is the same; only the count per layer differs: the per-layer picks are a prefix of one order.
    assert set(per_layer.k_compressed[1]) <= set(glob.k_compressed[1])

    method = make_method("fourier", 0.5, fractions="per_layer")
    method.calibrate(model, ids)
    assert method.dims == per_layer


def test_a_dims_file_of_the_other_split_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "dims.json"
    FourierDims(((0,),), ((1,),), channels=4, settings={"fractions": "global"}).to_json(path)
    with pytest.raises(ValueError, match="fractions='global'"):
        make_method("fourier", 0.5, fractions="per_layer", dims_path=str(path)).calibrate(tiny_llama(), [])
    assert make_method("fourier", 0.5, dims_path=str(path))._load_dims(path).k_compressed == ((0,),)


# ---------------------------------------------------------------- the power-of-two period
@given(capacity=st.integers(1, 10**7))
def test_pow2_period_is_the_next_power_of_two(capacity):
    t = choose_period(capacity, "pow2")
    assert t >= capacity and t & (t - 1) == 0 and t < 2 * capacity
    assert choose_period(capacity, "span") == capacity


def _is_smooth(n: int) -> bool:
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


@given(capacity=st.integers(1, 10**6))
def test_smooth_period_is_the_next_7_smooth_length(capacity):
    t = choose_period(capacity, "smooth")
    assert t >= capacity and _is_smooth(t) and t <= choose_period(capacity, "pow2")
    assert not any(_is_smooth(m) for m in range(capacity, t))  # none shorter


def test_choose_period_errors():
    with pytest.raises(ValueError, match="period must be one of"):
        choose_period(100, "fft")
    with pytest.raises(ValueError, match="capacity"):
        choose_period(0, "pow2")


@pytest.mark.parametrize("mode", ["smooth", "pow2"])
@given(layer=prefill_layers(min_len=40, max_len=200, max_protected=3), seed=seeds(),
       num_states=st.sampled_from([None, 2, 8, 64, 400]))
def test_other_periods_keep_the_layout_frequencies_and_bytes_of_span(mode, layer, seed, num_states):
    span = fourier(layer, 0.5, seed, num_states=num_states)
    pow2 = fourier(layer, 0.5, seed, num_states=num_states, period=mode)
    ck, cv = (len(x[layer.layer_idx]) for x in (span.dims.k_compressed, span.dims.v_compressed))
    a, b = span.layout(layer, ck, cv), pow2.layout(layer, ck, cv)
    if a is None:
        assert b is None
        return
    capacity = a.mid_len + layer.max_new_tokens
    assert a.period == capacity and b.period == choose_period(capacity, mode)
    assert (a.sink, a.mid_len, a.local, a.num_freqs) == (b.sink, b.mid_len, b.local, b.num_freqs)
    s_span, s_pow2 = span.compress(layer), pow2.compress(layer)
    assert s_pow2.k_span.period == b.period and s_pow2.k_span.cos.shape == s_span.k_span.cos.shape
    assert s_span.nbytes() == s_pow2.nbytes()


# Streaming with period="pow2" equals compressing from scratch: test_fourier.py's streaming test, parametrized
# over both periods; attention through a pow2 state: its decode-attention test.


def test_pow2_state_refuses_tokens_past_its_period():
    x = torch.randn(1, 2, 80, 8, generator=torch.Generator().manual_seed(0))
    layer = PrefillLayer(0, 1, x, x.clone(), x.clone(), max_new_tokens=2)
    state = fourier(layer, 0.5, period="pow2").compress(layer)
    assert isinstance(state, FourierCache)
    room = state.k_span.period - state.k_span.mid_len  # the declared 2 tokens and the rest of the power of two
    assert room >= 2
    for i in range(room):  # one token at a time: each pushes the oldest local token into the middle
        state.append(*new_tokens(layer, 1, i))
    assert state.k_span.mid_len == state.k_span.period
    with pytest.raises(RuntimeError, match="max_new_tokens"):
        state.append(*new_tokens(layer, 1, room))


def test_harness_methods_lists_both_options_with_their_defaults(capsys):
    from harness.cli import main

    assert main(["methods"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("fourier "))
    assert "'fractions': 'global'" in line and "'period': 'span'" in line
