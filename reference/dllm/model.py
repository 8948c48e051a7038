"""A LLaDA-style masked-diffusion transformer in plain PyTorch: bidirectional attention, RoPE, RMSNorm, SwiGLU, GQA.

Same blocks as LLaMA (pre-norm, RoPE on q/k, SwiGLU MLP) without the causal mask (LLaDA, arXiv 2502.09992, sec. 2.1:
the mask predictor is a Transformer "without a causal mask"). The forward pass is written so that a caching strategy
(reference/dllm/*.py) can run any subset of positions and decide, per layer, which keys and values the queries see:

    h = embed(ids);  per layer:  a = RMSNorm(h);  q, k, v = RoPE(a Wq), RoPE(a Wk), a Wv
                                 h = h + Wo attend(layer, q, k, v)          (attend defaults to dense bidirectional)
                                 h = h + W2 (silu(RMSNorm(h) W1) * RMSNorm(h) W3)
    logits = RMSNorm(h) W_lm

Shapes: ids [B, n], positions long [n] (absolute positions of those n tokens; RoPE uses them), q [B, H, n, D],
k/v [B, Hkv, n, D] after RoPE. Weights may be any float dtype; norms and the RoPE rotation compute in float32.

Fused projections (`DLLM.fuse_projections`, opt-in, inference): a block step of 32 tokens is bound by reading the
weights, and five skinny GEMMs per layer (q, k, v, gate, up) do that worse than two. Fusing concatenates each layer's
q/k/v weights into one [(H + 2 Hkv) D, d] matrix and gate/up into one [2 F, d] matrix, and re-points the separate
parameters at views of them: the same memory, the same parameter names and state dict, one GEMM each. RoPE then
runs once over the q and k heads together. `ops` swaps the elementwise pieces (RMSNorm, RoPE, SiLU-times-up) for
fused kernels (optimized/triton_dllm_layer.py); the default `TORCH_LAYER_OPS` computes what the separate path does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reference.dllm.config import DLLMConfig

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bidirectional softmax(q k^T / sqrt(D)) v with GQA (query head h reads KV head h // group); SDPA.

    key_mask: bool [B, n_keys], False for keys no query may attend (left padding); None attends every key.
    """
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) * weight over the last dim, computed in float32, returned in x's dtype."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (x32 * weight.float()).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, **factory):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [n, D] for the rotate-half RoPE convention (Su et al., 2021, eq. 34; LLaMA/HF layout)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    ang = positions.to(torch.float32)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    half = x32.shape[-1] // 2
    rot = torch.cat([-x32[..., half:], x32[..., :half]], dim=-1)
    return (x32 * cos + rot * sin).to(x.dtype)


def rope_heads_last(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rope on x [B, n, heads, D] (the fused layout) with cos/sin [n, D] or [B, 1, n, D] (Layer.qkv's)."""
    if cos.dim() == 2:
        return apply_rope(x, cos[:, None], sin[:, None])
    return apply_rope(x, cos.transpose(-3, -2), sin.transpose(-3, -2))


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of the fused [..., 2F] projection (gate first), as the separate path computes it."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@dataclass(frozen=True)
class LayerOps:
    """The elementwise pieces of a fused layer. rms_norm(x, weight, eps) -> x's dtype; rope(x [B, n, heads, D],
    cos, sin) -> rotated x (cos/sin [n, D] or [B, 1, n, D]; it may write x in place); silu_mul(gate_up) -> [..., F]."""
    name: str
    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    rope: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    silu_mul: Callable[[torch.Tensor], torch.Tensor]


TORCH_LAYER_OPS = LayerOps("torch", rms_norm, rope_heads_last, silu_mul)


class Layer(nn.Module):
    def __init__(self, cfg: DLLMConfig, **factory):
        super().__init__()
        d, hd = cfg.d_model, cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, cfg.norm_eps, **factory)
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=cfg.qkv_bias, **factory)
        self.k_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias, **factory)
        self.v_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias, **factory)
        self.o_proj = nn.Linear(cfg.n_heads * hd, d, bias=False, **factory)
        self.mlp_norm = RMSNorm(d, cfg.norm_eps, **factory)
        self.gate_proj = nn.Linear(d, cfg.ffn_dim, bias=False, **factory)
        self.up_proj = nn.Linear(d, cfg.ffn_dim, bias=False, **factory)
        self.down_proj = nn.Linear(cfg.ffn_dim, d, bias=False, **factory)
        self.fused = False
        self.ops = TORCH_LAYER_OPS

    # ------------------------------------------------------------------ the fused layout (opt-in)
    def _proj_groups(self):
        return (("qkv_weight", (self.q_proj, self.k_proj, self.v_proj), "weight"),
                ("qkv_bias", (self.q_proj, self.k_proj, self.v_proj), "bias"),
                ("gate_up_weight", (self.gate_proj, self.up_proj), "weight"))

    def fuse(self, ops: LayerOps = TORCH_LAYER_OPS) -> None:
        """One qkv and one gate_up matrix; the separate parameters become views of them (no extra memory)."""
        self.ops = ops
        if self.fused:
            return
        with torch.no_grad():
            for name, mods, attr in self._proj_groups():
                params = [getattr(m, attr) for m in mods]
                if params[0] is None:
                    setattr(self, name, None)
                    continue
                whole = torch.cat([p.detach() for p in params], 0)
                for p, view in zip(params, whole.split([p.shape[0] for p in params], 0)):
                    p.data = view
                setattr(self, name, whole)  # a plain attribute: not a parameter, not in the state dict
        self.fused = True

    def unfuse(self) -> None:
        """Back to separate matrices (each parameter its own copy)."""
        if not self.fused:
            return
        with torch.no_grad():
            for name, mods, attr in self._proj_groups():
                for m in mods:
                    p = getattr(m, attr)
                    if p is not None:
                        p.data = p.data.clone()
                delattr(self, name)
        self.fused, self.ops = False, TORCH_LAYER_OPS

    def _apply(self, fn, *args, **kwargs):
        """.to() / .half() / .cuda() move each parameter on its own: fuse again afterwards."""
        out = super()._apply(fn, *args, **kwargs)
        if self.fused:
            self.fused = False
            self.fuse(self.ops)
        return out

    def heads(self, x: torch.Tensor, n_heads: int) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, n_heads, self.head_dim).transpose(1, 2)

    def qkv(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q [B, H, n, D], k/v [B, Hkv, n, D] of hidden states h [B, n, d]; RoPE applied to q and k."""
        if self.fused:  # one GEMM; RoPE once over the q and k heads; q/k/v are views in [B, n, heads, D] memory
            b, n, _ = h.shape
            hq, hkv = self.n_heads, self.n_kv_heads
            a = self.ops.rms_norm(h, self.attn_norm.weight, self.attn_norm.eps)
            y = F.linear(a, self.qkv_weight, self.qkv_bias).view(b, n, hq + 2 * hkv, self.head_dim)
            qk = self.ops.rope(y[:, :, :hq + hkv], cos, sin)
            return qk[:, :, :hq].transpose(1, 2), qk[:, :, hq:].transpose(1, 2), y[:, :, hq + hkv:].transpose(1, 2)
        a = self.attn_norm(h)
        q = apply_rope(self.heads(self.q_proj(a), self.n_heads), cos, sin)
        k = apply_rope(self.heads(self.k_proj(a), self.n_kv_heads), cos, sin)
        return q, k, self.heads(self.v_proj(a), self.n_kv_heads)

    def value(self, h: torch.Tensor) -> torch.Tensor:
        """v [B, Hkv, n, D] alone (dLLM-Cache's V-verify computes only this)."""
        return self.heads(self.v_proj(self.attn_norm(h)), self.n_kv_heads)

    def attn_out(self, o: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = o.shape
        return self.o_proj(o.transpose(1, 2).reshape(b, n, -1))

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        if self.fused:
            a = self.ops.rms_norm(h, self.mlp_norm.weight, self.mlp_norm.eps)
            return self.down_proj(self.ops.silu_mul(F.linear(a, self.gate_up_weight)))
        a = self.mlp_norm(h)
        return self.down_proj(F.silu(self.gate_proj(a)) * self.up_proj(a))


class DLLM(nn.Module):
    """The mask predictor p_theta(x_0 | x_t) of a masked-diffusion LM (LLaDA eq. 3), plus the pieces caches use."""

    def __init__(self, cfg: DLLMConfig, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, **factory)
        self.layers = nn.ModuleList(Layer(cfg, **factory) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps, **factory)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False, **factory)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        layer = self.layers[0] if len(self.layers) else None
        if layer is not None and layer.fused:
            return self.lm_head(layer.ops.rms_norm(h, self.norm.weight, self.norm.eps))
        return self.lm_head(self.norm(h))

    def fuse_projections(self, ops: LayerOps = TORCH_LAYER_OPS) -> "DLLM":
        """Every layer's q/k/v and gate/up as one matrix each (inference; parameters and state dict unchanged), with
        `ops` as the elementwise pieces. Returns self."""
        for layer in self.layers:
            layer.fuse(ops)
        return self

    def unfuse_projections(self) -> "DLLM":
        for layer in self.layers:
            layer.unfuse()
        return self

    @property
    def layout(self) -> str:
        """"separate", or "fused" / "fused-<ops name>" (the non-torch elementwise ops named)."""
        if not len(self.layers) or not self.layers[0].fused:
            return "separate"
        name = self.layers[0].ops.name
        return "fused" if name == "torch" else f"fused-{name}"

    def hidden(self, ids: torch.Tensor, positions: torch.Tensor | None = None, attend: Attend | None = None,
               key_mask: torch.Tensor | None = None):
        """Final hidden states [B, n, d] of tokens `ids` [B, n] at `positions` (default 0..n-1).

        attend(layer_idx, q, k, v) -> o [B, H, n, D] decides what the n queries see; default: each other, densely,
        except the keys `key_mask` [B, n] marks False (padding). An `attend` of a cache applies its own mask.
        """
        if ids.dim() != 2:
            raise ValueError(f"ids must be [B, n], got shape {tuple(ids.shape)}")
        n = ids.shape[1]
        if positions is None:
            positions = torch.arange(n, device=ids.device)
        if positions.shape != (n,):
            raise ValueError(f"positions must be [n]=({n},), got {tuple(positions.shape)}")
        cos, sin = self.rope(positions)
        h = self.embed(ids)
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(h, cos, sin)
            o = dense_attention(q, k, v, key_mask) if attend is None else attend(i, q, k, v)
            h = h + layer.attn_out(o)
            h = h + layer.mlp(h)
        return h

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None, attend: Attend | None = None,
                rows: slice | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, n, V] (or of `rows` only: the LM head over a long context is the largest activation)."""
        h = self.hidden(ids, positions, attend, key_mask)
        return self.logits(h if rows is None else h[:, rows])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
