"""Shared hypothesis strategies for the method suites: random prefills, ratios, seeds (never zeros)."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from reference.kv.base import PrefillLayer


def seeds():
    return st.integers(0, 2**31 - 1)


def compression_ratios(max_ratio: float = 0.9):
    return st.floats(0.0, max_ratio, allow_nan=False)


@st.composite
def prefill_layers(draw, min_len: int = 8, max_len: int = 160, max_protected: int = 0, num_layers: int | None = None,
                   min_protected: int = 0):
    """A PrefillLayer of random normal float32 q/k/v: B 1..2, Hkv 1..3, group 1..3, D in {8, 16, 32}.

    Length in [min_len, max_len] (at least protected + 2, so the context has 2+ tokens); protected (question) tokens
    in [min_protected, max_protected]; num_layers drawn in 1..8 unless given, layer_idx below it.
    """
    b, hkv, group = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d = draw(st.sampled_from([8, 16, 32]))
    protected = draw(st.integers(min_protected, max(min_protected, max_protected)))
    n = draw(st.integers(max(min_len, protected + 2), max(max_len, protected + 2)))
    layers = num_layers or draw(st.integers(1, 8))
    g = torch.Generator().manual_seed(draw(seeds()))
    return PrefillLayer(
        layer_idx=draw(st.integers(0, layers - 1)),
        num_layers=layers,
        queries=torch.randn(b, hkv * group, n, d, generator=g),
        keys=torch.randn(b, hkv, n, d, generator=g),
        values=torch.randn(b, hkv, n, d, generator=g),
        protected=protected,
        max_new_tokens=draw(st.integers(0, 8)),
    )


TOKEN_METHODS = ("full", "streaming_llm", "h2o", "snapkv", "pyramidkv", "tova", "knorm")


# ---------------------------------------------------------------- scheduling: traces, cost models, servers
@st.composite
def acceptance_traces(draw, n: int | None = None):
    """Traces (reference.scheduling.trace.Trace) of random per-step acceptance whose rate drifts then settles:
    draft_len 1..6, output 1..200 tokens, prompt 1..300 tokens."""
    from reference.scheduling.trace import Trace, emitted

    g = draw(st.integers(1, 6))
    count = n or draw(st.integers(1, 6))
    out = []
    for i in range(count):
        length = draw(st.integers(1, 200))
        early, late = draw(st.integers(0, g)), draw(st.integers(0, g))
        jitter = draw(st.lists(st.integers(-1, 1), min_size=1, max_size=8))
        acc, k = [], 0
        while sum(a + 1 for a in acc) < length:
            base = early if len(acc) < 5 else late
            acc.append(min(max(base + jitter[k % len(jitter)], 0), g))
            k += 1
        acc = acc[:len(emitted(acc, length))]
        out.append(Trace(f"t{i}", "hypothesis", draw(st.integers(1, 300)), length, g, tuple(acc)))
    return out


@st.composite
def cost_models(draw, draft_len: int):
    """SpecCostModel with positive random coefficients (never zero), seconds."""
    from reference.scheduling.cost_model import SpecCostModel

    pos = st.floats(1e-4, 5e-2)
    per_tok = st.floats(1e-8, 1e-5)
    return SpecCostModel(draft_len, (draw(pos), draw(pos), draw(per_tok)), (draw(pos), draw(pos), draw(per_tok)),
                         (draw(pos), draw(per_tok)))


@st.composite
def server_configs(draw):
    from reference.scheduling.simulator import ServerConfig

    capacity = draw(st.one_of(st.none(), st.integers(700, 4000)))
    return ServerConfig(max_batch=draw(st.integers(1, 8)), token_budget=draw(st.integers(16, 2048)),
                        kv_capacity=capacity, preemption=draw(st.sampled_from(["recompute", "swap"])),
                        swap_s_per_token=draw(st.floats(0, 1e-4)))


@st.composite
def dllm_cases(draw, n_layers: int | None = None, loop: str = "llada"):
    """A random tiny dLLM (float64) with a prompt and a generation config: (model, prompt [B, P], GenConfig).

    d_model 32-64, heads 2-4 with GQA groups 1-2, 1-3 layers unless given; prompt 12-60 random tokens (never the
    mask), B 1-2; gen_len = blocks x block_len with 1-3 blocks of 4-8, 2-4 steps per block... at most one token
    per step when steps == block_len.
    """
    from reference.dllm.config import DLLMConfig
    from reference.dllm.generate import GenConfig
    from reference.dllm.model import DLLM

    kv_heads, group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    head_dim = draw(st.sampled_from([8, 16]))
    layers = n_layers or draw(st.integers(1, 3))
    vocab = 48
    cfg = DLLMConfig(vocab_size=vocab, d_model=kv_heads * group * head_dim, n_layers=layers,
                     n_heads=kv_heads * group, n_kv_heads=kv_heads, ffn_dim=64, mask_id=vocab - 1, eos_id=0,
                     rope_theta=draw(st.sampled_from([100.0, 10000.0])), shift_logits=loop == "dream")
    seed = draw(seeds())
    torch.manual_seed(seed)
    model = DLLM(cfg, dtype=torch.float64).eval()
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab - 1, (draw(st.integers(1, 2)), draw(st.integers(12, 60))), generator=g)
    block_len, blocks = draw(st.integers(4, 8)), draw(st.integers(1, 3))
    steps_per_block = draw(st.sampled_from([2, block_len // 2, block_len]))
    gen = GenConfig(gen_len=block_len * blocks, block_len=block_len, steps=steps_per_block * blocks, loop=loop)
    return model, prompt, gen
