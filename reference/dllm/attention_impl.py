"""The attention a caching strategy runs over cached K/V, by implementation name.

`torch`: gather the kept rows, concatenate with the block's K/V and call SDPA, as the official Sparse-dLLM code does
(a new concatenated copy per layer and step). `triton` or any registered name / `pkg.module:fn`: the op
`sparse_block_attention` of reference/ops (the Triton kernel reads kept rows through the indices, no copy; its output
is written in [B, Lb, H, D] memory, the layout the o-projection reads, so no transpose copy follows).
Saliency likewise: `torch` runs the reference op `sparse_dllm_saliency`, other names its implementations.
The model calls these on every layer of every step, on its own activations: the ops' NaN/inf scan (a reduction and a
host sync each; reference/ops/checks.py) is off inside them, the other argument checks stay.
"""
from __future__ import annotations

import functools

import torch

from reference.dllm.model import dense_attention
from reference.ops.checks import finite_checks
from reference.ops.sparse_block_attention import gather_kept
from reference.registry import get_impl


def _without_finite_check(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with finite_checks(False):
            return fn(*args, **kwargs)

    return call


def block_attention(impl: str, graphable: bool = False):
    """fn(q, k_block, v_block, k_cache, v_cache, kept_idx=None) -> o [B, H, Lb, D].

    graphable: the Triton kernel skips its host-side check of kept_idx's values (a sync CUDA graphs cannot hold).
    """
    if impl == "torch":
        def torch_block_attention(q, k_block, v_block, k_cache, v_cache, kept_idx=None):
            k_cache, v_cache = gather_kept(k_cache, kept_idx), gather_kept(v_cache, kept_idx)
            return dense_attention(q, torch.cat([k_cache, k_block], 2), torch.cat([v_cache, v_block], 2))
        return torch_block_attention
    fn = get_impl("sparse_block_attention", impl)
    if impl == "triton":
        validate = not graphable

        @_without_finite_check
        def triton_block_attention(q, k_block, v_block, k_cache, v_cache, kept_idx=None):
            # out in [B, Lb, H, D] memory: the o-projection reads it as [B, Lb, H * D] without a copy
            b, h, n, d = q.shape
            out = torch.empty(b, n, h, d, dtype=q.dtype, device=q.device).transpose(1, 2)
            return fn(q, k_block, v_block, k_cache, v_cache, kept_idx, out=out, validate=validate)
        return triton_block_attention
    return _without_finite_check(fn)


def saliency(impl: str):
    """fn(q_block, k, keep, kernel_size) -> (scores [B, S], kept_idx [B, keep] ascending)."""
    return _without_finite_check(get_impl("sparse_dllm_saliency", "reference" if impl == "torch" else impl))
