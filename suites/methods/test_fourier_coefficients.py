"""FourierAttention decode in coefficient space (reference/ops/fourier_coefficients.py) equals rebuild-then-attend
(the oracle, reference/ops/fourier.py) in float64 over every layout the ops allow: T > L, odd T, the Nyquist term
kept, N past T/2 + 1, moment matching on and off, every/no channel compressed, sinks or none, GQA, varlen. So does
the token-major plan (optimized/torch_fourier_tiles.py) at any tile width and range length."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.registry import get_impl, get_op

F64 = torch.float64
TOL = dict(atol=1e-11, rtol=1e-9)

# Layouts forced on top of a drawn case: each names what it pins.
LAYOUTS = {
    "drawn": {},
    "odd_period_longer_than_span": {"mid_len": 37, "period": 53},
    "nyquist_kept": {"mid_len": 40, "period": 40, "num_freqs": 21},
    "past_half_period": {"mid_len": 30, "period": 34, "num_freqs": 40},
    "one_token_middle": {"mid_len": 1, "period": 1, "num_freqs": 3},
    "all_compressed_no_sinks": {"k_fraction": 1.0, "v_fraction": 1.0, "n_init": 0},
    "nothing_compressed": {"k_fraction": 0.0, "v_fraction": 0.0},
    "gqa_chunk": {"group": 3, "q_len": 5, "kv_heads": 2},
}


def _both(op: str, inputs: dict, impl: str = "coefficients", **knobs) -> tuple[torch.Tensor, torch.Tensor]:
    spec = get_op(op)
    return get_impl(op, impl)(**inputs, **knobs), spec.reference(**inputs)


@pytest.mark.parametrize("impl", ["coefficients", "tiles"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@given(data=st.data())
def test_coefficient_space_equals_rebuild_in_float64(impl, layout, data):
    spec = get_op("fourier_decode_attention")
    case = {**data.draw(spec.cases("ci")), **LAYOUTS[layout]}
    case["n_local"] = max(case["n_local"], case["q_len"])
    inputs = spec.make_inputs(case, F64, torch.device("cpu"))
    knobs = {} if impl == "coefficients" else {"block_t": data.draw(st.integers(1, 9), label="block_t"),
                                               "range_tiles": data.draw(st.integers(1, 3), label="range_tiles")}
    got, want = _both("fourier_decode_attention", inputs, impl, **knobs)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("knob, value", [("block_t", 0), ("range_tiles", 0), ("block_t", 2.5)])
def test_tiles_refuses_bad_knobs_by_name(knob, value):
    spec = get_op("fourier_decode_attention")
    inputs = spec.make_inputs(spec.examples[0], torch.float32, torch.device("cpu"))
    with pytest.raises((TypeError, ValueError), match=knob):
        get_impl("fourier_decode_attention", "tiles")(**inputs, **{knob: value})


@given(data=st.data(), moment_matching=st.booleans())
def test_moment_matching_off_is_the_plain_reconstruction(data, moment_matching):
    spec = get_op("fourier_decode_attention")
    inputs = spec.make_inputs(data.draw(spec.cases("ci")), F64, torch.device("cpu"))
    if not moment_matching:  # scale 1, shift 0: the affine map is the identity
        for p in "kv":
            inputs[f"{p}_scale"] = torch.ones_like(inputs[f"{p}_scale"])
            inputs[f"{p}_shift"] = torch.zeros_like(inputs[f"{p}_shift"])
    got, want = _both("fourier_decode_attention", inputs)
    torch.testing.assert_close(got, want, **TOL)


@given(data=st.data())
def test_varlen_coefficient_space_equals_rebuild_in_float64(data):
    spec = get_op("fourier_decode_attention_varlen")
    inputs = spec.make_inputs(data.draw(spec.cases("ci")), F64, torch.device("cpu"))
    got, want = _both("fourier_decode_attention_varlen", inputs)
    torch.testing.assert_close(got, want, **TOL)


def test_a_wrong_coefficient_changes_the_output():
    """Control: the comparison above sees the compressed channels (a flipped sin coefficient is caught)."""
    spec = get_op("fourier_decode_attention")
    inputs = spec.make_inputs(spec.examples[0], F64, torch.device("cpu"))  # every K channel compressed
    want = spec.reference(**inputs)
    inputs["k_sin"] = inputs["k_sin"].clone()
    inputs["k_sin"][:, :, 1] *= -1
    got = get_impl("fourier_decode_attention", "coefficients")(**inputs)
    assert (got - want).abs().max() > 1e-6

