"""Attention through PyTorch's fused SDPA with float32 accumulation (registered as `attention` / `torch`).

A second formulation of reference/ops/attention.py (fused kernel, explicit bottom-right mask, GQA by
repeat_interleave) that exercises the conformance machinery on CPU, and the fast path KV methods can pick.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.ops.attention import causal_mask, check_attention_inputs
from reference.ops.checks import check_out
from reference.registry import register_impl


@register_impl("attention", "torch")
def attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    scale: float | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Same contract as reference.ops.attention.attention; q: [B, Hq, Lq, D], k/v: [B, Hkv, Lk, D].

    Computes in float32 whatever the input dtype, returns q's dtype; writes into `out` ([B, Hq, Lq, D], q's
    dtype and device) and returns it when given.
    """
    check_attention_inputs(q, k, v, causal, scale)
    check_out(out, q.shape, q.dtype, q.device)
    group = q.shape[1] // k.shape[1]
    q32 = q.float()
    k32 = k.float().repeat_interleave(group, dim=1)
    v32 = v.float().repeat_interleave(group, dim=1)
    # SDPA's own is_causal is top-left aligned; the explicit mask gives the bottom-right convention.
    mask = causal_mask(q.shape[2], k.shape[2], q.device) if causal else None
    result = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask, scale=scale)
    if out is None:
        return result.to(q.dtype)
    return out.copy_(result)
