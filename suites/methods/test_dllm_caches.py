"""Properties of the dLLM caching strategies (reference/dllm): docs/design.md, "Method properties the suites check".

- keep_ratio 1 equals vanilla token for token where the cache is exact: in a one-layer model the out-of-block
  K/V depend only on token ids, so every cache (Sparse-dLLM, Fast-dLLM prefix/dual, dLLM-Cache recomputing every
  response token) must reproduce vanilla decoding exactly, in the LLaDA and the Dream loop;
- the kept set is the top-k of the smoothed saliency, recomputed here independently from the step-1 q/k;
- the cache is rebuilt once per block; the bytes reported equal the bytes held (counted from shapes).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.dllm import CACHES, make_cache
from reference.dllm.generate import GenConfig, dream_counts, generate, transfer_counts
from reference.dllm.model import dense_attention
from suites.strategies import dllm_cases

EXACT_IN_ONE_LAYER = [("sparse_dllm", {"keep_ratio": 1.0}), ("fast_dllm", {"mode": "prefix"}),
                      ("fast_dllm", {"mode": "dual"}),
                      ("dllm_cache", {"response_interval": 3, "refresh_ratio": 1.0}),
                      ("dllm_cache", {"response_interval": 1})]


@pytest.mark.parametrize("name, params", EXACT_IN_ONE_LAYER, ids=lambda v: str(v))
@pytest.mark.parametrize("loop", ["llada", "dream"])
@given(data=st.data())
def test_exact_caches_equal_vanilla_in_one_layer(name, params, loop, data):
    model, prompt, gen = data.draw(dllm_cases(n_layers=1, loop=loop))
    want, _ = generate(model, prompt, gen)
    got, stats = generate(model, prompt, gen, make_cache(name, **params))
    assert torch.equal(got, want), f"{name} {params} differs from vanilla at {(got != want).nonzero()[:5].tolist()}"
    assert (got[:, prompt.shape[1]:] != model.cfg.mask_id).all(), "every generated position is decoded"


@given(data=st.data())
def test_prompt_refresh_every_step_equals_vanilla_at_any_depth(data):
    """dLLM-Cache with prompt_interval 1 runs a dense forward at every step: vanilla, whatever the depth."""
    model, prompt, gen = data.draw(dllm_cases())
    want, _ = generate(model, prompt, gen)
    got, _ = generate(model, prompt, gen, make_cache("dllm_cache", prompt_interval=1))
    assert torch.equal(got, want)


def _step1_qk(model, x):
    """Per layer (q, k) of a dense forward over x, as every strategy sees them at a block's step 1."""
    seen = []

    def record(layer, q, k, v):
        seen.append((q, k))
        return dense_attention(q, k, v)

    model.hidden(x, attend=record)
    return seen


def _smoothed_saliency_naive(q_block, k, kernel_size):
    """mean over block positions, dot with every key (GQA shared), mean over heads, max over the window."""
    b, hq, _, _ = q_block.shape
    group = hq // k.shape[1]
    qbar = q_block.mean(2)
    s = k.shape[2]
    raw = torch.zeros(b, s, dtype=torch.float64)
    for h in range(hq):
        raw += torch.einsum("bd,bsd->bs", qbar[:, h].double(), k[:, h // group].double()) / hq
    half = kernel_size // 2
    return torch.stack([raw[:, max(0, j - half):j + half + 1].max(1).values for j in range(s)], 1)


@given(data=st.data(), keep_ratio=st.sampled_from([0.25, 0.5, 0.75]), kernel_size=st.sampled_from([1, 3, 5]))
def test_kept_set_is_topk_of_smoothed_saliency(data, keep_ratio, kernel_size):
    model, prompt, gen = data.draw(dllm_cases())
    p = prompt.shape[1]
    x = torch.cat([prompt, torch.full((prompt.shape[0], gen.gen_len), model.cfg.mask_id)], 1)
    x[:, p:p + 2] = torch.randint(1, model.cfg.mask_id, (prompt.shape[0], 2))  # two tokens decoded at step 0
    cache = make_cache("sparse_dllm", keep_ratio=keep_ratio, kernel_size=kernel_size)
    cache.reset(model, x, p)
    lo, hi = p, p + gen.block_len
    cache.begin_block(lo, hi)
    cache.step_logits(model, x, 1)
    keep = int((x.shape[1] - gen.block_len) * keep_ratio)
    for layer, (q, k) in enumerate(_step1_qk(model, x)):
        k_out = torch.cat([k[:, :, :lo], k[:, :, hi:]], 2)
        want = _smoothed_saliency_naive(q[:, :, lo:hi], k_out, kernel_size)
        torch.testing.assert_close(cache.scores[layer].double(), want, rtol=1e-9, atol=1e-9)
        kept = cache.kept_idx[layer]
        assert kept.shape == (x.shape[0], keep)
        for b in range(x.shape[0]):
            chosen = want[b, kept[b]]
            rest = torch.ones(want.shape[1], dtype=torch.bool)
            rest[kept[b]] = False
            if keep and rest.any():  # every kept score >= every dropped score (ties may go either way)
                assert chosen.min() >= want[b, rest].max() - 1e-12, f"layer {layer} row {b}: not a top-{keep}"
            assert len(set(kept[b].tolist())) == keep
        idx = kept[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        torch.testing.assert_close(cache.k[layer], k_out.gather(2, idx), rtol=0, atol=0)


@given(data=st.data())
def test_caches_rebuilt_once_per_block_and_bytes_match_shapes(data):
    model, prompt, gen = data.draw(dllm_cases())
    cfg = model.cfg
    b, p = prompt.shape
    total = p + gen.gen_len
    blocks = gen.gen_len // gen.block_len
    elem = torch.tensor([], dtype=torch.float64).element_size()
    kv_row = 2 * b * cfg.n_kv_heads * cfg.head_dim * elem * cfg.n_layers  # K and V of one position, all layers

    sparse = make_cache("sparse_dllm", keep_ratio=0.5)
    _, st_ = generate(model, prompt, gen, sparse)
    assert st_["builds_per_block"] == [1 if gen.steps_per_block >= 2 else 0] * blocks
    if gen.steps_per_block >= 2:
        assert sparse.nbytes() == int((total - gen.block_len) * 0.5) * kv_row
        assert sparse.nbytes() == sum(t.numel() * t.element_size() for t in sparse.k + sparse.v)
        assert st_["peak_cache_bytes"] == sparse.nbytes()

    for mode, held in (("prefix", total - gen.gen_len + (blocks - 1) * gen.block_len),
                       ("dual", total - gen.block_len)):
        fast = make_cache("fast_dllm", mode=mode)
        _, st_ = generate(model, prompt, gen, fast)
        assert st_["builds_per_block"] == [1] * blocks
        assert fast.nbytes() == held * kv_row, mode  # after the last block's refresh
        assert st_["peak_cache_bytes"] == max(fast.nbytes(), st_["peak_cache_bytes"])

    dc = make_cache("dllm_cache", prompt_interval=1000, response_interval=3)
    _, st_ = generate(model, prompt, gen, dc)
    assert sum(st_["builds_per_block"]) == 1  # one full refresh (step 0); responses refresh without rebuilding
    features = 2 * b * total * cfg.d_model * elem * cfg.n_layers  # attention and MLP outputs
    assert dc.nbytes() == total * kv_row + features


@settings(max_examples=3)
@given(data=st.data())
def test_keep_ratio_zero_attends_only_the_block(data):
    model, prompt, gen = data.draw(dllm_cases(n_layers=2))
    cache = make_cache("sparse_dllm", keep_ratio=0.0)
    x, _ = generate(model, prompt, gen, cache)
    assert (x[:, prompt.shape[1]:] != model.cfg.mask_id).all()
    assert cache.nbytes() == 0


@given(data=st.data())
def test_threshold_commits_every_confident_token_and_at_least_one(data):
    model, prompt, gen = data.draw(dllm_cases())
    loose = GenConfig(gen_len=gen.gen_len, block_len=gen.block_len, steps=gen.steps, threshold=1e-12)
    _, st_ = generate(model, prompt, loose)
    blocks = gen.gen_len // gen.block_len
    assert st_["committed_per_step"] == [gen.block_len * prompt.shape[0]] * blocks  # all at once
    strict = GenConfig(gen_len=gen.gen_len, block_len=gen.block_len, steps=gen.steps, threshold=1.0)
    x, st_ = generate(model, prompt, strict)
    assert all(c >= prompt.shape[0] for c in st_["committed_per_step"])
    assert (x[:, prompt.shape[1]:] != model.cfg.mask_id).all()


@given(n=st.integers(0, 64), steps=st.integers(1, 64))
def test_schedules_spread_every_mask(n, steps):
    counts = transfer_counts(n, steps)
    assert sum(counts) == n and max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    left = n
    for s in range(steps):
        k = dream_counts(left, s, steps)
        assert 0 <= k <= left
        left -= k
    assert left == 0


@settings(max_examples=1)
@given(data=st.data())
def test_bad_inputs_name_the_argument(data):
    model, prompt, gen = data.draw(dllm_cases(n_layers=1))
    with pytest.raises(ValueError, match="prompt"):
        generate(model, prompt.float(), gen)
    with pytest.raises(ValueError, match="block_len"):
        GenConfig(gen_len=10, block_len=4, steps=10)
    with pytest.raises(ValueError, match="steps"):
        GenConfig(gen_len=8, block_len=4, steps=3)
    with pytest.raises(ValueError, match="keep_ratio"):
        make_cache("sparse_dllm", keep_ratio=1.5)
    with pytest.raises(ValueError, match="kernel_size"):
        make_cache("sparse_dllm", kernel_size=2)
    with pytest.raises(ValueError, match="mode"):
        make_cache("fast_dllm", mode="triple")
    with pytest.raises(KeyError, match="unknown dLLM cache"):
        make_cache("nope")
    assert set(CACHES) == {"vanilla", "sparse_dllm", "fast_dllm", "dllm_cache"}
