"""Attention through PyTorch's fused SDPA with float32 accumulation: exercises the conformance machinery."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.ops.attention import causal_mask, check_attention_inputs
from reference.registry import register_impl


@register_impl("attention", "torch")
def attention_torch(q, k, v, causal=True, scale=None, out=None):
    """Same contract as reference.ops.attention.attention; writes into `out` when given."""
    check_attention_inputs(q, k, v, causal)
    group = q.shape[1] // k.shape[1]
    q32, k32, v32 = q.float(), k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1)
    mask = causal_mask(q.shape[2], k.shape[2], q.device) if causal else None
    result = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask, scale=scale).to(q.dtype)
    if out is None:
        return result
    if out.shape != result.shape or out.dtype != result.dtype:
        raise ValueError(f"out must be {tuple(result.shape)} {result.dtype}, got {tuple(out.shape)} {out.dtype}")
    return out.copy_(result)
