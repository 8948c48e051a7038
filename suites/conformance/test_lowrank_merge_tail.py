"""`merge_tail`: the low-rank stream's last program of each row block (an acquire-release count per row block) does
`_merge_kernel`'s work for its rows: their softmax statistics over the exact and middle splits, the middle's mass,
and H rescaled to them. It must leave exactly what the merge launch leaves, on every layout the launch grid takes:
several row blocks per sequence, a KV head's rows spread over two row blocks (group x q_len > 16), a last row block
only partly filled, V windows sliced over program axis 2, varlen batches of several periods, an empty middle. And
the counts must be back at 0 after a call, so the next call (a CUDA graph replays the same buffers) merges again.
On a CPU the interpreter runs the programs one after another; on a GPU (`pytest suites/conformance/
test_lowrank_merge_tail.py` there) the same tests check the count's ordering between programs that run at once, and
`test_graph_replays_merge_every_time` (marked gpu: add `-m gpu`) a CUDA graph's replays."""
from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, given, settings

import optimized.triton_fourier_lowrank as lowrank
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_op
from suites.strategies import seeds

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# each draw runs four plans in the interpreter; a seed has nothing to shrink
DRAWS = settings(max_examples=2, deadline=None, database=None, phases=(Phase.generate,))

# (batch, hq, hkv, d, context, freqs, q_len, compressed V fraction): four row blocks per sequence; a head's 32 rows
# over two row blocks; 6 rows in one part-filled row block; 48-channel heads mostly kept (in float32 a V window wider
# than 128 channels is sliced over program axis 2)
UNIFORM = [(2, 16, 4, 16, 200, 20, 4, 0.7), (1, 8, 1, 16, 150, 12, 4, 0.7), (3, 6, 3, 24, 170, 16, 1, 0.7),
           (1, 8, 4, 48, 140, 10, 2, 0.2)]
VARLEN = {"batch": 3, "kv_heads": 2, "group": 3, "head_dim": 16, "q_len": 2, "n_init": 2, "n_locals": [3, 40, 5],
          "mid_lens": [0, 70, 41], "periods": [1, 80, 45], "num_freqs": 9, "v_num_freqs": 6, "k_fraction": 0.5,
          "v_fraction": 0.6, "kept_align": 1, "score_offset": None, "magnitude": 3.0}


def merged(make, x: dict, tail: bool) -> tuple[lowrank.LowRankPlan, list[torch.Tensor]]:
    """A plan with merge_tail `tail`, run twice: its output and what the merge leaves (m, l, the middle's mass, H)."""
    plan = make(**x, block_t=16, block=16, num_splits=3)
    plan.merge_tail = tail
    plan.run()
    out = plan.run().clone()
    return plan, [out] + [t.clone() for t in (plan.m, plan.l, plan.mid, plan.h)]


def assert_tail_merges(make, x: dict) -> lowrank.LowRankPlan:
    (_, ref), (plan, got) = merged(make, x, False), merged(make, x, True)
    assert plan.merge_tail and plan.done.numel() == plan.b * -(-plan.n_rows // plan.block_r)
    assert not plan.done.any(), f"counts left after the call: {plan.done.tolist()}"
    for name, r, g in zip(("out", "m", "l", "mid", "h"), ref, got):
        assert r.abs().max() > 0, name
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6 * float(r.abs().max()), msg=lambda m: f"{name}: {m}")
    return plan


@pytest.mark.parametrize("shape", UNIFORM, ids=lambda s: "x".join(map(str, s)))
@DRAWS
@given(seed=seeds())
def test_the_tail_leaves_what_the_merge_launch_leaves(shape, seed):
    batch, hq, hkv, d, context, freqs, q_len, v_fraction = shape
    x = make_fourier_cache(batch, hq, hkv, d, context, freqs, k_fraction=0.5, v_fraction=v_fraction, n_init=2,
                           n_local=40, dtype=torch.float32, device=DEVICE, seed=seed, q_len=q_len)
    plan = assert_tail_merges(lowrank.lowrank_plan, x)
    assert plan.splits > 1 and plan.esplits > 1
    if shape == UNIFORM[1]:
        assert plan.gl > plan.block_r
    if shape == UNIFORM[3]:
        assert plan.v_slices > 1


@DRAWS
@given(seed=seeds())
def test_the_tail_merges_varlen_batches_with_an_empty_middle(seed):
    x = get_op("fourier_decode_attention_varlen").make_inputs(dict(VARLEN, seed=seed), torch.float32, DEVICE)
    plan = assert_tail_merges(lowrank.varlen_lowrank_plan, x)
    assert len(plan.groups) > 1 and plan.esplits > 1


def test_the_interpreter_takes_the_tail_and_a_gpu_its_constant(monkeypatch):
    x = make_fourier_cache(1, 4, 2, 16, 96, 8, k_fraction=0.5, v_fraction=0.5, n_init=2, n_local=8,
                           dtype=torch.float32, device=DEVICE, seed=7)
    assert lowrank.lowrank_plan(**x).merge_tail == (lowrank.MERGE_TAIL or DEVICE.type == "cpu")
    for on in (False, True):
        monkeypatch.setattr(lowrank, "MERGE_TAIL", on)
        assert lowrank.fused_for("mt", True) is on


@pytest.mark.gpu
def test_graph_replays_merge_every_time():
    """LLaMA-3-8B heads in bfloat16 at 8 x 4k: a CUDA graph of the call with merge_tail, replayed three times on
    fresh queries, gives each time what the eager call with the merge launch gives on them."""
    if DEVICE.type != "cuda":
        pytest.skip("needs a CUDA GPU")
    x = make_fourier_cache(8, 32, 8, 128, 4096, 512, dtype=torch.bfloat16, device=DEVICE, seed=3, kept_pad=64,
                           kept_align=8)
    ref_plan, plan = lowrank.lowrank_plan(**x), lowrank.lowrank_plan(**x)
    ref_plan.merge_tail, plan.merge_tail = False, True
    plan.run()  # builds the kernels outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        plan.run()
    for _ in range(3):
        x["q"].copy_(torch.randn_like(x["q"]))
        graph.replay()
        ref = ref_plan.run()
        torch.cuda.synchronize()
        assert not plan.done.any()
        torch.testing.assert_close(plan.result.float(), ref.float(), rtol=1e-2, atol=1e-2 * float(ref.abs().max()))
