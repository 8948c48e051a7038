"""Sparse-dLLM block attention: the current block's queries against the kept cache plus the block's own keys.

    keys(b)   = cat(k_cache[b, :, kept_idx[b]], k_block[b])          (values likewise)
    out[b]    = softmax(q[b] keys(b)^T * scale) values(b)             (bidirectional: no mask)

Sparse-dLLM (Song et al., arXiv 2508.02558; facts in docs/sparse-dllm.md): from step 2 of a block on, only the block's tokens are run, and each layer attends them to
`cat(kept K, block K)` / `cat(kept V, block V)`, non-causal; the kept cache is fixed for the block while the block's
own K/V are recomputed every step.

q: [B, Hq, Lb, D] the block's queries; k_block, v_block: [B, Hkv, Lb, D] the block's keys/values; k_cache, v_cache:
[B, Hkv, S, D] post-RoPE keys/values of the out-of-block positions (S may be 0); kept_idx: None (every cached
position) or long [B, K] of distinct positions in [0, S), in any order, K may be 0, the same for every head of a row
(the paper keeps one index set per layer). scale defaults to D**-0.5. GQA: query head h reads KV head h // (Hq // Hkv).
Output [B, Hq, Lb, D] in q's dtype. The order of kept_idx does not change the result (softmax is a sum over keys).

The reference gathers the kept rows and calls the dense reference (reference/ops/attention.py, causal=False).
"""
from __future__ import annotations

import torch

from reference.ops.attention import attend
from reference.ops.checks import check_finite, check_gqa, check_like, check_scale, check_tensor, finite_checks_enabled
from reference.ops.score_offset import offset_channel, quantize, score_offsets
from reference.registry import HEAD_DIMS, OpSpec, register_op


def check_sparse_block_attention_inputs(q: torch.Tensor, k_block: torch.Tensor, v_block: torch.Tensor,
                                        k_cache: torch.Tensor, v_cache: torch.Tensor,
                                        kept_idx: torch.Tensor | None = None, scale: float | None = None,
                                        check_values: bool = True) -> None:
    """Raise TypeError/ValueError naming the argument when the inputs are not a valid call (module docstring).

    Two checks read values (a host sync on a GPU): kept_idx's (in [0, S), distinct), and no NaN/inf in q, the block's
    K/V and the kept cache rows (rows not kept may hold anything; the finite check also follows
    reference/ops/checks.py's switch). `check_values=False` skips both, for timed loops and CUDA graph capture.
    """
    check_tensor("q", q, 4, floating=True, layout="[B, Hq, Lb, D]")
    for name, t in (("k_block", k_block), ("v_block", v_block), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_tensor(name, t, 4, floating=True, layout="[B, Hkv, L, D]")
        check_like(name, t, "q", q)
    check_scale(scale)
    b, hq, lb, d = q.shape
    if b == 0 or d == 0 or lb == 0:
        raise ValueError(f"q must have a non-empty batch, block and head_dim, got shape {tuple(q.shape)}")
    hkv = k_block.shape[1]
    if tuple(k_block.shape) != (b, hkv, lb, d):
        raise ValueError(f"k_block must have shape [B, Hkv, Lb, D] = ({b}, Hkv, {lb}, {d}) to match q, "
                         f"got {tuple(k_block.shape)}")
    if v_block.shape != k_block.shape:
        raise ValueError(f"v_block must have k_block's shape {tuple(k_block.shape)}, got {tuple(v_block.shape)}")
    check_gqa("q", hq, "k_block", hkv)
    s = k_cache.shape[2]
    if tuple(k_cache.shape) != (b, hkv, s, d):
        raise ValueError(f"k_cache must have shape [B, Hkv, S, D] = ({b}, {hkv}, S, {d}), got {tuple(k_cache.shape)}")
    if v_cache.shape != k_cache.shape:
        raise ValueError(f"v_cache must have k_cache's shape {tuple(k_cache.shape)}, got {tuple(v_cache.shape)}")
    if kept_idx is not None:
        if not isinstance(kept_idx, torch.Tensor):
            raise TypeError(f"kept_idx must be None or a torch.Tensor, got {type(kept_idx).__name__}")
        check_tensor("kept_idx", kept_idx, dtype=torch.long)
        if kept_idx.dim() != 2 or kept_idx.shape[0] != b:
            raise ValueError(f"kept_idx must have shape [B, K] with B={b}, got {tuple(kept_idx.shape)}")
        check_like("kept_idx", kept_idx, "q", q, dtype=False)
        if kept_idx.shape[1] > s:
            raise ValueError(f"kept_idx holds {kept_idx.shape[1]} positions per row, more than the S={s} cached ones "
                             f"of k_cache")
    if not check_values:
        return
    kept_rows = None
    if kept_idx is not None and kept_idx.numel():
        bad = (kept_idx < 0) | (kept_idx >= s)
        if bool(bad.any()):
            r, c = bad.nonzero()[0].tolist()
            raise ValueError(f"kept_idx values must lie in [0, S={s}); kept_idx[{r}, {c}] = {int(kept_idx[r, c])}")
        dup = (kept_idx.sort(dim=1).values.diff(dim=1) == 0).any(dim=1)
        if bool(dup.any()):
            raise ValueError(f"kept_idx must hold distinct positions per row; row {int(dup.nonzero()[0])} repeats one")
    if kept_idx is not None and finite_checks_enabled():  # only the kept rows of the cache are read
        kept_rows = torch.zeros(b, s, dtype=torch.bool, device=q.device).scatter_(1, kept_idx, True)[:, None, :, None]
    check_finite(("q", q), ("k_block", k_block), ("v_block", v_block), ("k_cache", k_cache, kept_rows),
                 ("v_cache", v_cache, kept_rows))


def gather_kept(cache: torch.Tensor, kept_idx: torch.Tensor | None) -> torch.Tensor:
    """cache [B, Hkv, S, D] -> [B, Hkv, K, D]: row b keeps positions kept_idx[b] (all of them when None)."""
    if kept_idx is None:
        return cache
    b, h, _, d = cache.shape
    return torch.gather(cache, 2, kept_idx[:, None, :, None].expand(b, h, kept_idx.shape[1], d))


def sparse_block_attention(q: torch.Tensor, k_block: torch.Tensor, v_block: torch.Tensor, k_cache: torch.Tensor,
                           v_cache: torch.Tensor, kept_idx: torch.Tensor | None = None,
                           scale: float | None = None) -> torch.Tensor:
    """Reference: out [B, Hq, Lb, D] in q's dtype, dense bidirectional attention over cat(kept cache, block)."""
    check_sparse_block_attention_inputs(q, k_block, v_block, k_cache, v_cache, kept_idx, scale)
    k = torch.cat([gather_kept(k_cache, kept_idx), k_block], dim=2)
    v = torch.cat([gather_kept(v_cache, kept_idx), v_block], dim=2)
    return attend(q, k, v, causal=False, scale=scale)


# LLaDA-8B (32 heads, no GQA, head_dim 128) and a GQA shape (8 KV heads, group 4, as LLaMA-3-8B).
_GPU_HEADS = ((32, 1, 128), (8, 4, 128))


def _cases(profile: str):
    """Hypothesis strategy of cases (plain values, replayable).

    "ci": B 1..2, Hkv 1..2, group 1..3, D in HEAD_DIMS up to 64, Lb 1..40, S 0..300, kept None or K in 0..S positions.
    "gpu": LLaDA-8B and GQA heads, Lb 32 (the paper's block_len), S up to 16384, kept None or K in 0..S.
    `kept` is the number of kept positions (None: every one); make_inputs draws which, in random order.
    """
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        if big:
            kv_heads, group, head_dim = draw(st.sampled_from(_GPU_HEADS))
        else:
            kv_heads, group = draw(st.integers(1, 2)), draw(st.integers(1, 3))
            head_dim = draw(st.sampled_from(HEAD_DIMS[:-1]))
        cache_len = draw(st.integers(0, 16384 if big else 300))
        return {
            "batch": draw(st.integers(1, 2)),
            "kv_heads": kv_heads,
            "group": group,
            "head_dim": head_dim,
            "block_len": 32 if big else draw(st.integers(1, 40)),
            "cache_len": cache_len,
            "kept": draw(st.one_of(st.none(), st.integers(0, cache_len))),
            "scale": draw(st.one_of(st.none(), st.none(), st.sampled_from([0.05, 0.125, 0.3]))),
            "score_offset": draw(score_offsets(st)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


def _make_inputs(case: dict, dtype: torch.dtype, device) -> dict:
    """Random normal q, k/v block and cache (seeded, drawn in float32 then cast); kept_idx a random permutation's
    first `kept` positions per row (so unsorted), or None. With a score_offset, channel 0 of q and of every key
    shifts every score (reference/ops/score_offset.py)."""
    g = torch.Generator().manual_seed(case["seed"])
    b, hkv, d, lb, s = case["batch"], case["kv_heads"], case["head_dim"], case["block_len"], case["cache_len"]

    shapes = {"q": (b, hkv * case["group"], lb, d), "k_block": (b, hkv, lb, d), "v_block": (b, hkv, lb, d),
              "k_cache": (b, hkv, s, d), "v_cache": (b, hkv, s, d)}
    x = {name: torch.randn(*shape, generator=g) for name, shape in shapes.items()}
    ab = offset_channel(case.get("score_offset"), d, case.get("scale"))
    if ab is not None:
        for name in ("q", "k_block", "k_cache"):
            quantize(x[name])
        x["q"][..., 0], x["k_block"][..., 0], x["k_cache"][..., 0] = ab[0], ab[1], ab[1]
    x = {name: t.to(device=device, dtype=dtype) for name, t in x.items()}
    x.update(kept_idx=None, scale=case.get("scale"))
    if case["kept"] is not None:
        kept = [torch.randperm(s, generator=g)[:case["kept"]] for _ in range(b)]
        x["kept_idx"] = torch.stack(kept).to(device=device, dtype=torch.long)
    return x


# Checked before any drawn case (OpSpec.examples): an empty cache (the block alone); a cache with none of its
# tokens kept; one kept token of a cache one past a 32-token tile under GQA; every token kept (None); an odd head
# dim with every score far below 0 over a kept set one past a tile; every score far above 0, head dim 24.
EXAMPLES = (
    {"batch": 1, "kv_heads": 2, "group": 2, "head_dim": 16, "block_len": 3, "cache_len": 0, "kept": None,
     "scale": None, "score_offset": None, "seed": 1},
    {"batch": 2, "kv_heads": 1, "group": 1, "head_dim": 32, "block_len": 1, "cache_len": 20, "kept": 0,
     "scale": 0.125, "score_offset": None, "seed": 2},
    {"batch": 1, "kv_heads": 2, "group": 3, "head_dim": 16, "block_len": 17, "cache_len": 33, "kept": 1,
     "scale": None, "score_offset": None, "seed": 3},
    {"batch": 1, "kv_heads": 1, "group": 2, "head_dim": 64, "block_len": 32, "cache_len": 65, "kept": None,
     "scale": 0.3, "score_offset": None, "seed": 4},
    {"batch": 2, "kv_heads": 1, "group": 2, "head_dim": 59, "block_len": 5, "cache_len": 40, "kept": 33,
     "scale": None, "score_offset": "below", "seed": 5},
    {"batch": 1, "kv_heads": 2, "group": 1, "head_dim": 24, "block_len": 4, "cache_len": 17, "kept": None,
     "scale": 0.05, "score_offset": "above", "seed": 6},
)

SPEC = register_op(
    OpSpec(
        name="sparse_block_attention",
        reference=sparse_block_attention,
        cases=_cases,
        make_inputs=_make_inputs,
        dtypes=(torch.float32, torch.float16, torch.bfloat16),
        float_inputs=("q", "k_block", "v_block", "k_cache", "v_cache"),
        examples=EXAMPLES,
        doc=__doc__,
    )
)
