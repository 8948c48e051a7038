"""Every registered KV method (token eviction and FourierAttention alike) is reachable by name."""
from __future__ import annotations

import pytest
import torch

from reference.kv import METHODS, make_method
from reference.kv.base import KVMethod, PrefillLayer
from suites.strategies import TOKEN_METHODS

# Importing reference.kv (above) registers every method before the parametrizations read METHODS.
ALL_METHODS = sorted(METHODS.names())


def test_the_expected_methods_are_registered():
    assert set(ALL_METHODS) >= {"full", "streaming_llm", "h2o", "snapkv", "pyramidkv", "tova", "knorm", "fourier"}
    assert "fourier" not in TOKEN_METHODS and "full" in TOKEN_METHODS


@pytest.mark.parametrize("name", ALL_METHODS)
def test_make_method_builds_each_registered_method(name):
    method = make_method(name, 0.5)
    assert isinstance(method, KVMethod) and isinstance(method, METHODS.get(name))
    assert method.compression_ratio == 0.5
    # The recorded parameters rebuild the same method (results are replayable from their record).
    params = method.params()
    assert params["compression_ratio"] == 0.5
    assert make_method(name, **params) == method


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_each_token_method_compresses_to_a_layer_state(name):
    # FourierAttention needs calibration first; suites/methods/test_fourier.py covers its state.
    g = torch.Generator().manual_seed(7)
    layer = PrefillLayer(1, 3, torch.randn(1, 4, 96, 16, generator=g), torch.randn(1, 2, 96, 16, generator=g),
                         torch.randn(1, 2, 96, 16, generator=g))
    state = make_method(name, 0.5).compress(layer)
    full_bytes = make_method("full").compress(layer).nbytes()
    expected = 96 if name == "full" else 48
    assert len(state) == expected and state.nbytes() == full_bytes * expected // 96


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="snapkv"):
        make_method("nonexistent", 0.5)


def test_unknown_parameter_is_named():
    with pytest.raises(TypeError, match="bogus"):
        make_method("h2o", 0.5, bogus=1)
    with pytest.raises(TypeError, match=r"'windw' \(did you mean 'window'\?\); its parameters: \['window', "):
        make_method("snapkv", 0.5, windw=16)
