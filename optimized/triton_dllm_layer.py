"""The elementwise pieces of a fused dLLM layer in Triton: RMSNorm, RoPE over q and k in place, SiLU times up.

A Sparse-dLLM block step runs 32 tokens through 32 layers. Its GEMMs read the weights (the step's real cost); the
elementwise work between them is tiny, but in plain PyTorch each piece is several kernels (RMSNorm: upcast, square,
mean, rsqrt, two products, downcast; RoPE: upcast, negate, concatenate, two products, sum, downcast), about 35 per
layer beside the GEMMs. Each costs a few microseconds even replayed from a CUDA graph, ~1,000 per step. These
kernels do each piece in one launch, with the arithmetic of reference/dllm/model.py:

- `rms_norm(x, weight, eps)`: x / sqrt(mean(x^2) + eps) * weight in float32, rounded to x's dtype; one program per
  row on the GPU (d <= 16384).
- `rope_(x, cos, sin)`: x [B, n, heads, D] (any strides; the q and k heads of the fused qkv GEMM's output) rotated
  in place with the rotate-half rule: out1 = x1 cos1 - x2 sin1, out2 = x2 cos2 + x1 sin2 (halves of D) in float32;
  cos/sin [n, D] or [B, 1, n, D] (float32, any strides).
- `silu_mul(gate_up)`: silu(gate) * up of the fused [..., 2F] projection (gate first); silu is rounded to the dtype
  before the product, as F.silu(gate) * up rounds it.

`TRITON_LAYER_OPS` bundles them for `DLLM.fuse_projections(ops=...)` (inference only: rope_ writes its input).
Results equal the PyTorch pieces up to float32 rounding (the GPU may contract a product and a sum into one FMA);
suites/methods/test_dllm_fused.py checks each against them under the interpreter. Tile sizes are untuned; off the
GPU (the interpreter, which pays per program) a program takes several rows.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from reference.dllm.model import LayerOps
from reference.ops.checks import check_triton_dtype, check_triton_runnable

MAX_NORM_DIM = 16384


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, m, s_xm, s_om, d, eps, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    ok = (rows < m)[:, None] & (cols < d)[None, :]
    x = tl.load(x_ptr + rows[:, None] * s_xm + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(x * x, 1) / d + eps)
    w = tl.load(w_ptr + cols, mask=cols < d, other=0.0).to(tl.float32)
    y = (x * r[:, None]) * w[None, :]
    tl.store(out_ptr + rows[:, None] * s_om + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _rope_kernel(x_ptr, cos_ptr, sin_ptr, n, n_heads, s_xb, s_xn, s_xh, s_xd, s_cb, s_cn, s_cd, s_sb, s_sn, s_sd,
                 HALF: tl.constexpr, HALF_PAD: tl.constexpr, BLOCK_R: tl.constexpr):
    # Row r of the program's tile is (token r // n_heads, head r % n_heads) of batch row b.
    b = tl.program_id(0).to(tl.int64)
    r = tl.program_id(1).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    t = r // n_heads
    h = r % n_heads
    j = tl.arange(0, HALF_PAD)
    j_ok = j < HALF
    ok = (t < n)[:, None] & j_ok[None, :]
    c = cos_ptr + b * s_cb + t[:, None] * s_cn + j[None, :] * s_cd
    s = sin_ptr + b * s_sb + t[:, None] * s_sn + j[None, :] * s_sd
    c1 = tl.load(c, mask=ok, other=0.0).to(tl.float32)
    c2 = tl.load(c + HALF * s_cd, mask=ok, other=0.0).to(tl.float32)
    s1 = tl.load(s, mask=ok, other=0.0).to(tl.float32)
    s2 = tl.load(s + HALF * s_sd, mask=ok, other=0.0).to(tl.float32)
    p1 = x_ptr + b * s_xb + t[:, None] * s_xn + h[:, None] * s_xh + j[None, :] * s_xd
    p2 = p1 + HALF * s_xd
    x1 = tl.load(p1, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(p2, mask=ok, other=0.0).to(tl.float32)
    tl.store(p1, (x1 * c1 - x2 * s1).to(x_ptr.dtype.element_ty), mask=ok)
    tl.store(p2, (x2 * c2 + x1 * s2).to(x_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _silu_mul_kernel(gu_ptr, out_ptr, m, f, s_gm, s_om, BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    ok = (rows < m)[:, None] & (cols < f)[None, :]
    g_ptr = gu_ptr + rows[:, None] * s_gm + cols[None, :]
    g = tl.load(g_ptr, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(g_ptr + f, mask=ok, other=0.0).to(tl.float32)
    silu = (g / (1.0 + tl.exp(-g))).to(out_ptr.dtype.element_ty).to(tl.float32)
    tl.store(out_ptr + rows[:, None] * s_om + cols[None, :], (silu * u).to(out_ptr.dtype.element_ty), mask=ok)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as [M, last] with unit stride along the last dim (a view when the layout allows)."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 or x2.shape[-1] == 1 else x2.contiguous()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """model.rms_norm in one kernel: x [..., d] float32/16/bf16, weight [d]; returns a new tensor of x's shape/dtype."""
    check_triton_dtype("x", x)
    check_triton_runnable("rms_norm", x)
    d = x.shape[-1]
    if weight.shape != (d,) or weight.device != x.device:
        raise ValueError(f"weight must be [{d}] on {x.device}, got {tuple(weight.shape)} on {weight.device}")
    if not 1 <= d <= MAX_NORM_DIM:
        raise ValueError(f"rms_norm: the last dim must lie in [1, {MAX_NORM_DIM}], got {d}")
    x2 = _rows(x)
    m = x2.shape[0]
    out = torch.empty((m, d), dtype=x.dtype, device=x.device)
    if m:
        block = triton.next_power_of_2(d)
        block_m = 1 if x.is_cuda else max(1, min(16, 4096 // block))  # the interpreter pays per program
        _rms_norm_kernel[(triton.cdiv(m, block_m),)](x2, weight, out, m, x2.stride(0), out.stride(0), d, float(eps),
                                                      BLOCK_M=block_m, BLOCK_D=block,
                                                      num_warps=max(1, min(16, block // 256)))
    return out.view(x.shape)


def _table_strides(t: torch.Tensor, b: int, n: int, d: int, name: str) -> tuple[int, int, int]:
    if t.dim() == 2 and t.shape == (n, d):
        return (0, *t.stride())
    if t.dim() == 4 and t.shape[1] == 1 and t.shape[0] in (1, b) and t.shape[2:] == (n, d):
        return (t.stride(0) if t.shape[0] == b else 0, t.stride(2), t.stride(3))
    raise ValueError(f"{name} must be [n, D]=({n}, {d}) or [B, 1, n, D], got {tuple(t.shape)}")


def rope_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """model.apply_rope on x [B, n, heads, D] (heads in dim 2), written into x; returns x."""
    check_triton_dtype("x", x)
    check_triton_runnable("rope_", x)
    if x.dim() != 4 or x.shape[-1] % 2:
        raise ValueError(f"x must be [B, n, heads, D] with D even, got {tuple(x.shape)}")
    b, n, heads, d = x.shape
    sc, ss = _table_strides(cos, b, n, d, "cos"), _table_strides(sin, b, n, d, "sin")
    if cos.device != x.device or sin.device != x.device:
        raise ValueError("cos and sin must be on x's device")
    if x.numel():
        half = d // 2
        block_r = 32 if x.is_cuda else 256  # (token, head) rows per program
        _rope_kernel[(b, triton.cdiv(n * heads, block_r))](
            x, cos, sin, n, heads, *x.stride(), *sc, *ss, HALF=half, HALF_PAD=max(2, triton.next_power_of_2(half)),
            BLOCK_R=block_r, num_warps=4)
    return x


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of gate_up [..., 2F] (gate first) in one kernel; returns [..., F] in its dtype."""
    check_triton_dtype("gate_up", gate_up)
    check_triton_runnable("silu_mul", gate_up)
    if gate_up.shape[-1] % 2:
        raise ValueError(f"gate_up's last dim must be even (gate then up), got {gate_up.shape[-1]}")
    f = gate_up.shape[-1] // 2
    g2 = _rows(gate_up)
    m = g2.shape[0]
    out = torch.empty((m, f), dtype=gate_up.dtype, device=gate_up.device)
    if out.numel():
        block = min(1024, triton.next_power_of_2(f))
        block_m = 1 if gate_up.is_cuda else max(1, min(64, 4096 // block))
        _silu_mul_kernel[(triton.cdiv(m, block_m), triton.cdiv(f, block))](
            g2, out, m, f, g2.stride(0), out.stride(0), BLOCK_M=block_m, BLOCK_F=block, num_warps=4)
    return out.view(*gate_up.shape[:-1], f)


TRITON_LAYER_OPS = LayerOps("triton", rms_norm, rope_, silu_mul)
