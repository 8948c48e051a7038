"""FlashFourierAttention, token-major: the fused decode of the plan in optimized/torch_fourier_tiles.py
(FourierAttention: Liu et al., arXiv 2506.11886).

The spectral kernel (optimized/triton_fourier_spectral.py) takes the compressed-channel scores S = irfft(Z) and the
probabilities' spectrum F = rfft(p) from two length-T transforms with the whole span's S and p in scratch between
its phases. Here both come from one fixed [2N x BLOCK_T] basis inside the streaming pass (docs/fourier-attention.md,
"The token-major plan"). For the query spectrum Z of a row (phase 1 of the spectral kernel, reused) and a tile of
BLOCK_T middle tokens starting at t0:

    S_{t0 + j} = sum_n c_n Re(Z_n e^{i w_n t0} e^{i w_n j})           c_n = 1 at n = 0 and T/2, else 2 (eq. tile scores)
    F_n       += e^{-i w_n t0} sum_j p_{t0 + j} e^{-i w_n j}                                            (eq. tile spectrum)

A program owns one range of RANGE_T tiles of one (sequence, KV head). Its basis products take (query row, tile)
pairs as rows, G x RANGE_T = 64 for LLaMA's G = 4, so they fill tensor-core tiles without padded query rows:
1. scores of the compressed channels for the whole range: the rotated spectrum (phases n t0 mod T in integers,
   rotation in float32) times the basis, into a per-program scratch of [rows x RANGE_T x BLOCK_T] float32;
2. the range's tiles streamed: kept-K dot plus that scratch, an online softmax, kept-V accumulated; each tile's
   scores go back into the scratch;
3. the range's probabilities exp(s - m) times the basis transposed, rotated back per tile and summed over the
   range: the range's spectrum, written with its (max, sum, kept output) like a split of flash decoding.
Other programs run the exact sinks and local window. `_spectrum_merge_kernel` merges the ranges' spectra by
log-sum-exp into the normalized F, one program per chunk of 32 frequencies, and (`fold`) multiplies its chunk by the
V coefficients. The spectral kernel's output phase (reused) merges the kept outputs and adds the compressed V
channels: the merge's per-chunk products, or without `fold` its own loop over F. Per middle token a program reads the kept channels once; the basis (2N x
BLOCK_T, from L2) is read twice per range, not per token, and no length-T buffer exists.

Operands of the basis products: bfloat16 for 16-bit inputs (the plan's measured error at LLaMA-3-8B shapes is
1/150 of a bfloat16 output's rounding; ci/emulate_tokenmajor.py), float32 as 3xTF32 for float32 inputs. The n = 0
bin (it carries the moment shift's score q_c . mu_k) stays out of the rounded operands and is added in float32. The
interpreter has no bfloat16: there the operands of 16-bit inputs are rounded to bfloat16's precision in float32
(`bf16_rounded`), so the CPU's conformance sees the GPU's rounding.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from optimized.fourier_plans import cache_tensors, planned, varlen_lens
from optimized.fourier_plans import phase_times as plan_phase_times
from optimized.triton_fourier import merged_stats, splits_block
from optimized.triton_fourier_spectral import (TL_DTYPE, add_v_products, channel_map, check_plan_inputs, exact_split,
                                               irfft_weights, kept_alignment, kept_runs, output_kernel,
                                               query_spectrum_kernel, run_block, store_split, tuned_knobs,
                                               window_overread)
from optimized.tiles_fit import Setting, fit_setting, tuned_range
from reference.bench_spec import ImplBench
from reference.ops.checks import check_int, check_triton_dtype
from reference.ops.fourier import check_decode_inputs, dft_basis
from reference.ops.fourier_varlen import check_varlen_inputs
from reference.registry import conformance_knobs, register_impl

PHASES = ("query_spectrum", "fused", "spectrum_merge", "output")
# {GPU name: [{programs, mid_len, knobs}]}, written by ci/tune_fourier_tiles.py --table; LONGCTX_TILES_TUNING names another
TUNING_FILE = Path(__file__).with_name("tiles_tuning.json")


@triton.jit
def _phases(t0, period, BLOCK_N: tl.constexpr):
    """The integer phases n t0 mod T of the first frequency chunk (n < BLOCK_N) for the tiles' first tokens t0 [M],
    [M, BLOCK_N] int32, and each tile's step from one chunk to the next, BLOCK_N t0 mod T [M] (int64 products: no
    overflow at any length). A frequency loop then advances the phases by one addition and one conditional
    subtraction per element (`_advance`) instead of a remainder (ci/issue_cost_tiles.py counts the difference)."""
    ns = tl.arange(0, BLOCK_N)
    ph = ((ns[None, :].to(tl.int64) * t0[:, None].to(tl.int64)) % period).to(tl.int32)
    step = ((t0.to(tl.int64) * BLOCK_N) % period).to(tl.int32)
    return ph, step


@triton.jit
def _advance(ph, step, period):
    """Phases of the next frequency chunk: (n + BLOCK_N) t0 mod T from n t0 mod T, exactly."""
    ph = ph + step[:, None]
    return tl.where(ph >= period, ph - period, ph)


@triton.jit
def _rotation(ph, period, FAST_TRIG: tl.constexpr):
    """cos and sin of 2 pi ph / T for integer phases ph in [0, T), float32, with the phase centred on [-T/2, T/2)
    so the angle is in [-pi, pi). FAST_TRIG: the GPU's approximate sin/cos (absolute error below 1e-6 on [-pi, pi])
    for 16-bit basis operands, whose own rounding is 2^-9; the accurate functions otherwise, and always in the
    interpreter. (An offline sm_90 build counted ~1400 of the spectrum loop's 1600 static instructions in the
    rotation with an int64 remainder and accurate sin/cos per element: docs/fourier-attention.md.)"""
    ph = tl.where(2 * ph >= period, ph - period, ph)
    ang = ph.to(tl.float32) * (6.283185307179586 / period)
    if FAST_TRIG:
        return libdevice.fast_cosf(ang), libdevice.fast_sinf(ang)
    return tl.cos(ang), tl.sin(ang)


@triton.jit
def bf16_rounded(x):
    """float32 x rounded to bfloat16's precision (nearest, ties to even), kept in float32: in the interpreter, which
    has no bfloat16 arithmetic, the stand-in for the GPU's bfloat16 operands of the basis products, so the CPU's
    conformance sees the rounding the GPU does."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def tf32_cut(x):
    """float32 x with its mantissa cut to TF32's 10 bits (as the low-rank kernel's `tf32_truncated`): the
    interpreter's stand-in for a tensor core's conversion of a dot operand."""
    return (x.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def _fused_kernel(
    Q, KE, VE, KMID, VMID, KKEPT, KSTART, VSTART, Z, BCOS, BSIN, SC, ACC, ACCK, MAX, SUM, SPEC, LENS,
    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, skmb, skmt, svmb, svmt, szb, szr, sbb,
    Hkv, Le, mid_len, period, NZ, NV, sm_scale, n_ranges, exact_splits,
    G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, VARLEN: tl.constexpr, DT: tl.constexpr, BT_DT: tl.constexpr,
    PREC: tl.constexpr, CPREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, RANGE_T: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_KD: tl.constexpr, BLOCK_VD: tl.constexpr, NVP: tl.constexpr, ALIGN: tl.constexpr,
    FAST_TRIG: tl.constexpr, EMUL_BF16: tl.constexpr,
):
    """One split of one (sequence, KV head): a range of middle tiles (split < n_ranges) or a share of the exact
    tokens. Writes the split's (max, sum, exact output, kept output, spectrum). VARLEN: the sequence's exact length,
    middle length and period come from LENS, and its tile basis is the sequence's own (sbb apart); a range past a
    shorter sequence's middle writes neutral statistics (max -1e30, sum 0, zeros)."""
    bh = tl.program_id(0)
    split = tl.program_id(1)
    b = bh // Hkv
    h = bh % Hkv
    if VARLEN:
        Le = tl.load(LENS + 3 * b)
        mid_len = tl.load(LENS + 3 * b + 1)
        period = tl.load(LENS + 3 * b + 2)
    nz = tl.minimum(NZ, period // 2 + 1)  # frequencies past T/2 carry no weight
    nv = tl.minimum(NV, period // 2 + 1)
    BCOS += b * sbb
    BSIN += b * sbb
    part = bh * (n_ranges + exact_splits) + split
    rows = tl.arange(0, BLOCK_M)
    row_ok = rows < G * LQ
    dv = tl.arange(0, BLOCK_VD)
    m_i = tl.full((BLOCK_M,), -1.0e30, dtype=tl.float32)  # finite: a fully masked tile leaves alpha = 1
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    acc_k = tl.zeros((BLOCK_M, BLOCK_VD), dtype=tl.float32)
    # (row, tile) pairs of the range: pair g * RANGE_T + k is query row g in the range's tile k
    pr = tl.arange(0, BLOCK_R * RANGE_T)
    pg = pr // RANGE_T
    js = tl.arange(0, BLOCK_T)
    spec_rows = SPEC + part * BLOCK_M * NVP * 2 + tl.arange(0, BLOCK_R) * NVP * 2
    if split >= n_ranges:  # ------------------------------------------------ the exact sinks and local window
        per = tl.cdiv(tl.cdiv(Le, BLOCK_T), exact_splits)
        m_i, l_i, acc = exact_split(Q, KE, VE, b, h, (split - n_ranges) * per, per, Le, sqb, sqh, sql, sqd, skb, skh,
                                    skl, skd, svb, svh, svl, svd, sm_scale, G, LQ, D, DT, PREC, BLOCK_M, BLOCK_D,
                                    BLOCK_T)
        # an exact split holds no spectrum: the merge reads the ranges' only
    else:  # ------------------------------------------------------------------ a range of middle tiles
        t_base = split * RANGE_T * BLOCK_T
        t0 = t_base + tl.arange(0, RANGE_T) * BLOCK_T  # each tile's first phase
        pair_ok = pg < G * LQ
        sc_pairs = SC + part * (BLOCK_R * RANGE_T * BLOCK_T) + pr[:, None] * BLOCK_T + js[None, :]
        # 1. compressed-channel scores of the range (eq. tile scores): the rows' spectra [BLOCK_R, n] times each
        # tile's rotation [RANGE_T, n], flattened to (row, tile) pairs
        rr = tl.arange(0, BLOCK_R)
        z_rows = Z + b * szb + (h * G * LQ + rr) * szr
        # The n = 0 bin, Re Z_0 (it carries q_c . mu_k, the moment shift's score, which can dwarf the rest), is the
        # same for every token of a row: added here in float32, and kept out of the rounded basis operands below
        z0 = tl.load(Z + b * szb + (h * G * LQ + pg) * szr, mask=pair_ok, other=0.0)
        s_comp = tl.zeros((BLOCK_R * RANGE_T, BLOCK_T), dtype=tl.float32) + z0[:, None]
        ph, ph_step = _phases(t0, period, BLOCK_N)
        for n0 in range(0, nz, BLOCK_N):
            ns = n0 + tl.arange(0, BLOCK_N)
            n_ok = ns < nz
            zm = (rr < G * LQ)[:, None] & n_ok[None, :]
            c_n = tl.where(ns == 0, 0.0, tl.where(2 * ns == period, 1.0, 2.0))[None, :]  # n = 0: added above
            z_re = (c_n * tl.load(z_rows[:, None] + 2 * ns[None, :], mask=zm, other=0.0))[:, None, :]
            z_im = (c_n * tl.load(z_rows[:, None] + 2 * ns[None, :] + 1, mask=zm, other=0.0))[:, None, :]
            cr, sr = _rotation(ph, period, FAST_TRIG)
            ph = _advance(ph, ph_step, period)
            a_re = tl.reshape(z_re * cr[None, :, :] - z_im * sr[None, :, :], (BLOCK_R * RANGE_T, BLOCK_N))
            a_im = tl.reshape(z_re * sr[None, :, :] + z_im * cr[None, :, :], (BLOCK_R * RANGE_T, BLOCK_N))
            if EMUL_BF16:
                a_re, a_im = bf16_rounded(a_re), bf16_rounded(a_im)
            a_re, a_im = a_re.to(BT_DT), a_im.to(BT_DT)
            bmask = n_ok[:, None]
            bc = tl.load(BCOS + ns[:, None] * BLOCK_T + js[None, :], mask=bmask, other=0.0)
            bs = tl.load(BSIN + ns[:, None] * BLOCK_T + js[None, :], mask=bmask, other=0.0)
            s_comp += tl.dot(a_re, bc, input_precision=CPREC)
            s_comp -= tl.dot(a_im, bs, input_precision=CPREC)
        tl.store(sc_pairs, s_comp)
        tl.debug_barrier()  # the scratch is read back by other threads of this program

        # 2. the range's tiles: kept channels plus the scratch, online softmax, kept V
        dk = tl.arange(0, BLOCK_KD)
        # new names for the aligned strides: a stride of 1 is a constant argument, which a branch may not rebind
        ks, vs, k_run, v_run, q_run, sk_t, sv_t = kept_runs(Q, KKEPT, KSTART, VSTART, b, h, sqb, sqh, sql, sqd, skmt,
                                                            svmt, G, LQ, D, DT, BLOCK_M, BLOCK_KD, BLOCK_VD, ALIGN)
        sc_rows = SC + part * (BLOCK_R * RANGE_T * BLOCK_T) + rows * (RANGE_T * BLOCK_T)
        for k in range(0, RANGE_T):
            ts = t_base + k * BLOCK_T + js
            t_ok = ts < mid_len
            kt = tl.load(KMID + b * skmb + ts[:, None] * sk_t + (ks + dk)[None, :], mask=t_ok[:, None] & k_run[None, :],
                         other=0.0)
            vt = tl.load(VMID + b * svmb + ts[:, None] * sv_t + (vs + dv)[None, :], mask=t_ok[:, None] & v_run[None, :],
                         other=0.0)
            sc_ptr = sc_rows[:, None] + k * BLOCK_T + js[None, :]
            sc_mask = (rows < BLOCK_R)[:, None] & t_ok[None, :]
            s_c = tl.load(sc_ptr, mask=sc_mask & row_ok[:, None], other=0.0)
            s = (tl.dot(q_run, tl.trans(kt.to(DT)), input_precision=PREC) + s_c) * sm_scale
            s = tl.where(t_ok[None, :], s, float("-inf"))
            tl.store(sc_ptr, s, mask=(rows < BLOCK_R)[:, None])  # the final score, for the spectrum
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc_k = acc_k * alpha[:, None] + tl.dot(p.to(DT), vt.to(DT), input_precision=PREC)
            m_i = m_new
        tl.store(MAX + part * BLOCK_M + rows, m_i)
        tl.debug_barrier()  # scores and the range's max are read back by other threads

        # 3. the range's spectrum (eq. tile spectrum), relative to the range's max
        m_pairs = tl.load(MAX + part * BLOCK_M + pg)
        s_all = tl.load(sc_pairs, mask=pair_ok[:, None], other=float("-inf"))
        p_all = tl.where(pair_ok[:, None], tl.exp(s_all - m_pairs[:, None]), 0.0)
        if EMUL_BF16:
            p_all = bf16_rounded(p_all)
        p_all = p_all.to(BT_DT)
        ph, ph_step = _phases(t0, period, BLOCK_N)
        for n0 in range(0, NVP, BLOCK_N):
            ns = n0 + tl.arange(0, BLOCK_N)
            n_ok = ns < nv
            bmask = n_ok[None, :]
            bc = tl.load(BCOS + ns[None, :] * BLOCK_T + js[:, None], mask=bmask, other=0.0)  # [BLOCK_T, BLOCK_N]
            bs = tl.load(BSIN + ns[None, :] * BLOCK_T + js[:, None], mask=bmask, other=0.0)
            pc = tl.reshape(tl.dot(p_all, bc, input_precision=CPREC), (BLOCK_R, RANGE_T, BLOCK_N))  # sum_j p cos
            ps = tl.reshape(tl.dot(p_all, bs, input_precision=CPREC), (BLOCK_R, RANGE_T, BLOCK_N))  # sum_j p sin
            cr, sr = _rotation(ph, period, FAST_TRIG)
            ph = _advance(ph, ph_step, period)
            f_re = tl.sum(pc * cr[None, :, :] - ps * sr[None, :, :], 1)  # (pc - i ps) e^{-i w_n t0}, over tiles
            f_im = -tl.sum(pc * sr[None, :, :] + ps * cr[None, :, :], 1)
            tl.store(spec_rows[:, None] + 2 * ns[None, :], f_re)
            tl.store(spec_rows[:, None] + 2 * ns[None, :] + 1, f_im)
    store_split(ACC, ACCK, MAX, SUM, part, acc, acc_k, m_i, l_i, G * LQ, BLOCK_M, BLOCK_D, BLOCK_VD)


@triton.jit
def _spectrum_merge_kernel(
    SPEC, MAX, SUM, F, PO, VKEPT, VSTART, VCOS, VSIN, LENS, sfb, sfr, Hkv, Ccv, Nv, nv, period, n_ranges,
    num_splits, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, NVP: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_SO: tl.constexpr, CPREC: tl.constexpr, FOLD: tl.constexpr,
):
    """For one chunk of BLOCK_N frequencies of one (sequence, KV head):
    F[b, row, n] = sum_ranges e^{m_r - m} spectrum_r / l, the spectrum of the softmax's middle probabilities (F_0 is
    the middle's probability mass from the ranges' sums, exactly). FOLD: also the chunk's share of the compressed V
    channels before their scale (eq. values): PO[chunk, row, d] = sum_n w_n (Re F_n a'_n(d) - Im F_n b'_n(d)),
    w_n = c_n / T; the output phase adds the chunks (output_kernel, PARTS) instead of looping over all 2N."""
    bh = tl.program_id(0)
    chunk = tl.program_id(1)
    b = bh // Hkv
    h = bh % Hkv
    if VARLEN:
        period = tl.load(LENS + 3 * b + 2)
    m, l_tot = merged_stats(MAX, SUM, bh, num_splits, BLOCK_M, BLOCK_S)
    rr = tl.arange(0, BLOCK_R)
    r_ok = rr < G * LQ
    m_r = tl.sum(tl.where(tl.arange(0, BLOCK_M)[:, None] == rr[None, :], m[:, None], 0.0), 0)  # m of rows < BLOCK_R
    l_r = tl.sum(tl.where(tl.arange(0, BLOCK_M)[:, None] == rr[None, :], l_tot[:, None], 0.0), 0)
    ns = chunk * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = 2 * chunk * BLOCK_N + tl.arange(0, 2 * BLOCK_N)  # the chunk's (Re, Im) pairs: one contiguous row
    f = tl.zeros((BLOCK_R, 2 * BLOCK_N), dtype=tl.float32)
    mass = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for s0 in range(0, n_ranges, BLOCK_SO):
        ss = s0 + tl.arange(0, BLOCK_SO)
        s_ok = ss < n_ranges
        part = bh * num_splits + ss
        w = tl.exp(tl.load(MAX + part[:, None] * BLOCK_M + rr[None, :], mask=s_ok[:, None], other=-1.0e30)
                   - m_r[None, :])  # [BLOCK_SO, BLOCK_R]
        mass += tl.sum(w * tl.load(SUM + part[:, None] * BLOCK_M + rr[None, :], mask=s_ok[:, None], other=0.0), 0)
        off = (part[:, None, None] * BLOCK_M + rr[None, :, None]) * (NVP * 2) + ks[None, None, :]
        f += tl.sum(w[:, :, None] * tl.load(SPEC + off, mask=s_ok[:, None, None], other=0.0), 0)
    f_re, f_im = tl.split(tl.reshape(f, (BLOCK_R, BLOCK_N, 2)))
    inv = 1.0 / l_r
    f_re = tl.where((ns == 0)[None, :], mass[:, None], f_re) * inv[:, None]
    f_im = tl.where((ns == 0)[None, :], 0.0, f_im) * inv[:, None]
    out = F + b * sfb + (h * G * LQ + rr)[:, None] * sfr + 2 * ns[None, :]
    fmask = r_ok[:, None] & (ns < nv)[None, :]
    tl.store(out, f_re, mask=fmask)
    tl.store(out + 1, f_im, mask=fmask)
    if FOLD:
        _chunk_values(f_re, f_im, ns, rr, r_ok, b, h, bh, chunk, period, PO, VKEPT, VSTART, VCOS, VSIN, Ccv, Nv, G,
                      LQ, D, BLOCK_M, BLOCK_D, CPREC)


@triton.jit
def _chunk_values(f_re, f_im, ns, rr, r_ok, b, h, bh, chunk, period, PO, VKEPT, VSTART, VCOS, VSIN, Ccv, Nv,
                  G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                  CPREC: tl.constexpr):
    """PO[chunk] = this chunk's share of the compressed V channels: a [rows, BLOCK_N] x [BLOCK_N, D] product, its
    rows padded to the tensor cores' BLOCK_M (rows past G * LQ are zero)."""
    n_ok = ns < tl.minimum(Nv, period // 2 + 1)
    w_n = tl.where(n_ok, irfft_weights(ns, period), 0.0)
    rows = tl.arange(0, BLOCK_M)
    pad = ((rows[:, None] == rr[None, :]) & r_ok[None, :])[:, :, None]  # [BLOCK_M, BLOCK_R, 1]
    a_re = tl.sum(tl.where(pad, (f_re * w_n[None, :])[None, :, :], 0.0), 1)
    a_im = tl.sum(tl.where(pad, (f_im * w_n[None, :])[None, :, :], 0.0), 1)
    ds = tl.arange(0, BLOCK_D)
    vmap = channel_map(VKEPT, VSTART, h, h * D + ds, 64)
    comp = (ds < D) & (vmap < 0)
    rec = add_v_products(tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32), a_re, a_im, ns, n_ok,
                         tl.where(comp, -1 - vmap, 0), comp, b, Ccv, Nv, VCOS, VSIN, CPREC)
    po = PO + ((bh * tl.num_programs(1) + chunk) * BLOCK_M + rows)[:, None] * BLOCK_D + ds[None, :]
    tl.store(po, rec, mask=(rows < G * LQ)[:, None] & (ds < D)[None, :])


# The module's own Triton kernels by name, for builds outside a launch (ci/compile_tiles_sm90.py); `run` launches
# the fused pass through this table.
KERNELS = {"fused": _fused_kernel, "spectrum merge": _spectrum_merge_kernel}


# ---------------------------------------------------------------- host side
@lru_cache(maxsize=16)
def _tile_basis(block_t: int, n: int, period: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi n j / T, [n, block_t] in the products' operand dtype: one table per (tile, N, T)."""
    cos, sin = dft_basis(torch.arange(block_t, device=device), n, period, torch.float64)
    return cos.T.contiguous().to(dtype), sin.T.contiguous().to(dtype)


def shared_memory_limit(device: torch.device) -> int:
    """Bytes of shared memory one program may use on `device` (opt-in maximum): what Triton's launcher checks a
    kernel's build against before refusing it (OutOfResources)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        return int(triton.runtime.driver.active.utils.get_device_properties(index)["max_shared_mem"])
    except (AttributeError, KeyError):  # another Triton's driver API: the same number from torch
        return int(torch.cuda.get_device_properties(index).shared_memory_per_block_optin)


def _check_options(q, range_t, block_t, exact_splits, num_warps, num_stages, fold) -> None:
    check_triton_dtype("q", q)
    if fold is not None and not isinstance(fold, bool):
        raise TypeError(f"fold must be None, True or False, got {fold!r}")
    for name, v, low in (("range_t", range_t, 1), ("block_t", block_t, 16), ("exact_splits", exact_splits, 1),
                         ("num_warps", num_warps, 1), ("num_stages", num_stages, 1)):
        check_int(name, v, low, optional=True)
        if name in ("range_t", "block_t") and v is not None and v & (v - 1):
            raise ValueError(f"{name} must be None or a power of two, got {v!r}")


class TilesPlan:
    """Shapes, block sizes, the tile basis and scratch buffers of one call; `run()` launches the four kernels
    (query spectrum, fused pass, spectrum merge, output). Made once per cache; `run` replays in a CUDA graph."""

    def __init__(self, q, k_exact, v_exact, k_args, v_args, mid_len, periods, scale, out, range_t, block_t,
                 exact_splits, num_warps, lens=None, compiled=None, num_stages=None, fold=None):
        _check_options(q, range_t, block_t, exact_splits, num_warps, num_stages, fold)
        # compiled: the choices of a GPU launch (default: q on a GPU); an offline sm_90 build of a CPU plan sets it
        self.compiled = gpu = q.is_cuda if compiled is None else compiled
        b, hq, lq, d = q.shape
        hkv, le = k_exact.shape[1], k_exact.shape[2]
        tuned = {}
        chosen = not (range_t is block_t is exact_splits is num_warps is num_stages is None)
        tiles_chosen = not (range_t is block_t is num_stages is None)  # the caller's tile setting: never changed
        if not chosen:  # no knob: this GPU's tuned ones
            tuned = tuned_knobs(q.device, b * hkv, int(mid_len), TUNING_FILE, "LONGCTX_TILES_TUNING")
            block_t, exact_splits, num_warps = tuned.get("block_t"), tuned.get("exact_splits"), tuned.get("num_warps")
            num_stages, fold = tuned.get("num_stages"), fold if fold is not None else tuned.get("fold")
        self.group = check_plan_inputs(q, hkv, out, "fourier_decode_attention_triton_tiles")
        self.q, self.k_exact, self.v_exact = q, k_exact, v_exact
        kc, vc = cache_tensors(k_args), cache_tensors(v_args)
        self.k_mid, self.v_mid, self.k_kept, self.v_kept = kc.mid, vc.mid, kc.kept, vc.kept
        self.k_cos, self.k_sin, self.k_sc, self.k_sh = kc.cos, kc.sin, kc.scale, kc.shift
        self.v_cos, self.v_sin, self.v_sc, self.v_sh = vc.cos, vc.sin, vc.scale, vc.shift
        self.ck, self.cv = kc.compressed, vc.compressed
        heads = torch.arange(hkv + 1, device=q.device) * d
        self.k_start = torch.searchsorted(self.k_kept, heads).to(torch.int32)
        self.v_start = torch.searchsorted(self.v_kept, heads).to(torch.int32)
        self.periods, self.mid_len, self.lens = [int(p) for p in periods], int(mid_len), lens
        self.period = max(self.periods)  # uniform: the period; varlen: each program reads its sequence's
        self.sm_scale = float(scale) if scale is not None else d ** -0.5
        rows = self.group * lq
        self.block_m = max(16, triton.next_power_of_2(rows))
        self.block_r = triton.next_power_of_2(rows)
        # On a GPU 64-token tiles in ranges of 64 (row, tile) pairs; in the interpreter 16-token tiles in ranges of
        # 2 tiles, so small cases cross tiles and ranges (the interpreter's products take any shape).
        self.block_t = block_t or (64 if gpu else 16)
        self.range_t = range_t or (max(1, 64 // self.block_r) if gpu else 2)
        if "range_t" in tuned:  # measured at LLaMA-3-8B's 4 rows: as many (row, tile) pairs here, at least 16
            self.range_t = tuned_range(tuned["range_t"], self.block_r)
        if gpu and self.block_r * self.range_t < 16:
            raise ValueError(f"range_t={self.range_t} gives {self.block_r * self.range_t} (row, tile) pairs; the "
                             f"basis products need at least 16: range_t >= {16 // self.block_r}")
        self.block_d = max(16, triton.next_power_of_2(d))
        k_starts, v_starts = torch.stack([self.k_start, self.v_start]).tolist()  # one sync, when the plan is made
        self.k_starts, self.v_starts = k_starts, v_starts
        self.align = kept_alignment(self.k_mid, self.v_mid)
        self.block_kd, self.block_vd = run_block(k_starts, self.align), run_block(v_starts, self.align)
        self.num_warps = num_warps or 4
        # software-pipelining depth of the fused pass's loops: 3 (Triton's default on Hopper) holds ~139 KB of shared
        # memory at 128-token tiles, one program per SM; 1 holds ~41 KB (ci/issue_cost_tiles.py builds both)
        self.num_stages = num_stages or 3
        self.block_n = 32
        self.nz = min(self.k_cos.shape[2], self.period // 2 + 1) if self.ck else 0
        self.nv = min(self.v_cos.shape[2], self.period // 2 + 1) if self.cv else 0
        self.nvp = max(self.block_n, triton.cdiv(self.nv, self.block_n) * self.block_n)
        self.b, self.hq, self.lq, self.d, self.hkv, self.le = b, hq, lq, d, hkv, le
        # bfloat16 operands for 16-bit inputs on a GPU; float32 in the interpreter, which has no bfloat16 arithmetic
        # (the rounding's effect is the PyTorch plan's to check: optimized/torch_fourier_tiles.py)
        self.operand = torch.bfloat16 if q.dtype != torch.float32 and gpu else torch.float32
        self.coef_prec = "tf32x3"
        # approximate sin/cos only beside 16-bit basis operands (_rotation); in the interpreter the bfloat16
        # operands of 16-bit inputs are emulated in float32 (bf16_rounded; the basis is rounded on the host)
        self.emulate_bf16 = not gpu and q.dtype != torch.float32
        self.fast_trig = gpu and self.operand == torch.bfloat16
        self.basis_prec = "tf32x3" if self.operand == torch.float32 else None
        self.result = out if out is not None else torch.empty_like(q)
        self.merge_chunk = 8 if gpu else 2
        self.lens_arg = lens if lens is not None else self.k_start  # any int32 tensor: not read unless VARLEN
        dev = q.device
        self.z = torch.zeros(b, hq * lq, max(self.nz, 1), 2, dtype=torch.float32, device=dev)
        self.f = torch.zeros(b, hq * lq, max(self.nv, 1), 2, dtype=torch.float32, device=dev)
        # the merge's per-chunk shares of the compressed V channels, added by the output phase
        self.n_chunks = triton.cdiv(self.nv, self.block_n) if self.cv else 0
        # fold: the merge also takes each chunk's share of the compressed V channels, so the output phase has no
        # loop over the 2N frequencies. On an H100 (2ab1e55) that saved 4-5 us per step at batch 1 and cost ~30 us
        # at 8 x 32k, where the merge's 1024 programs carry the products: by default, fold while one wave holds them.
        if fold is None:
            sms = torch.cuda.get_device_properties(dev).multi_processor_count if dev.type == "cuda" else None
            fold = sms is None or b * hkv * self.n_chunks <= sms
        self.fold = fold
        self.po = torch.full((b * hkv, max(self.n_chunks, 1), self.block_m, self.block_d), float("nan"),
                             dtype=torch.float32, device=dev)
        self._exact_knob = exact_splits
        self._layout()
        if q.is_cuda:  # a real launch (not an offline build): the setting must fit this GPU's shared memory
            self.fit_shared_memory(tiles_chosen)

    def _layout(self) -> None:
        """What depends on the tile setting (block_t, range_t): the ranges and splits, the tile basis, scratch."""
        q, gpu, b, hkv = self.q, self.compiled, self.b, self.hkv
        self.n_ranges = triton.cdiv(self.mid_len, self.block_t * self.range_t)
        self.exact_splits = self._exact_knob or (max(1, min(4, triton.cdiv(self.le, self.block_t))) if gpu else 2)
        self.splits = self.n_ranges + self.exact_splits
        nb = max(self.nz, self.nvp, 1)
        rounding = torch.bfloat16 if self.emulate_bf16 else self.operand
        tables = [tuple(t.to(self.operand) for t in _tile_basis(self.block_t, nb, p, rounding, str(q.device)))
                  for p in self.periods]
        if len(set(self.periods)) == 1:  # one table for every sequence (batch stride 0)
            (self.bcos, self.bsin), self.basis_stride = tables[0], 0
        else:
            self.bcos, self.bsin = (torch.stack([t[i] for t in tables]) for i in (0, 1))
            self.basis_stride = nb * self.block_t
        dev = q.device
        parts = b * hkv * self.splits + 8  # a NaN tail: a merge reading past the last split gets NaN
        nan = float("nan")
        self.sc = torch.full((parts, self.block_r * self.range_t * self.block_t), nan, dtype=torch.float32, device=dev)
        self.acc = torch.full((parts, self.block_m, self.block_d), nan, dtype=torch.float32, device=dev)
        self.acc_kept = torch.full((parts, self.block_m, self.block_vd), nan, dtype=torch.float32, device=dev)
        self.mx = torch.full((parts, self.block_m), nan, dtype=torch.float32, device=dev)
        self.sm = torch.full_like(self.mx, nan)
        self.spec = torch.full((parts, self.block_m, self.nvp, 2), nan, dtype=torch.float32, device=dev)

    def fit_shared_memory(self, chosen: bool) -> None:
        """Step the tile setting down until the fused pass's build fits the GPU's shared memory (tiles_fit);
        a setting the caller chose is refused instead. Builds (without launching) through Triton's cache, so the
        first run launches what was built here."""
        limit = shared_memory_limit(self.q.device)

        def shared_bytes(setting: Setting) -> int:
            if tuple(setting) != (self.block_t, self.range_t, self.num_stages):
                self.block_t, self.range_t, self.num_stages = setting
                self._layout()
            grid, args, kw = self._fused_launch()
            return KERNELS["fused"].warmup(*args, grid=grid, **kw).metadata.shared

        fit_setting(Setting(self.block_t, self.range_t, self.num_stages), self.block_r, shared_bytes, limit, chosen)

    def _fused_launch(self) -> tuple[tuple, tuple, dict]:
        """(grid, arguments, keywords) of the fused pass."""
        q, ke, ve, km, vm = self.q, self.k_exact, self.v_exact, self.k_mid, self.v_mid
        args = (
            q, ke, ve, km, vm, self.k_kept, self.k_start, self.v_start, self.z, self.bcos, self.bsin, self.sc,
            self.acc, self.acc_kept, self.mx, self.sm, self.spec, self.lens_arg,
            *q.stride(), *ke.stride(), *ve.stride(), km.stride(0), km.stride(1), vm.stride(0), vm.stride(1),
            self.z.stride(0), self.z.stride(1), self.basis_stride, self.hkv, self.le, self.mid_len, self.period,
            self.nz, self.nv, self.sm_scale, self.n_ranges, self.exact_splits)
        kw = dict(
            G=self.group, LQ=self.lq, D=self.d, VARLEN=self.lens is not None, DT=TL_DTYPE[q.dtype],
            BT_DT=TL_DTYPE[self.operand], PREC="ieee" if q.dtype == torch.float32 else None, CPREC=self.basis_prec,
            BLOCK_M=self.block_m, BLOCK_R=self.block_r, BLOCK_D=self.block_d, BLOCK_T=self.block_t,
            RANGE_T=self.range_t, BLOCK_N=self.block_n, BLOCK_KD=self.block_kd, BLOCK_VD=self.block_vd,
            NVP=self.nvp, ALIGN=self.align, FAST_TRIG=self.fast_trig, EMUL_BF16=self.emulate_bf16,
            num_warps=self.num_warps, num_stages=self.num_stages)
        return (self.b * self.hkv, self.splits), args, kw

    def run(self, upto: int = len(PHASES)) -> torch.Tensor:
        """Launch phases 1..upto of PHASES (all by default: the output)."""
        q, consts = self.q, dict(G=self.group, LQ=self.lq, D=self.d)
        grid_kv = self.b * self.hkv
        if upto >= 1 and self.ck:
            query_spectrum_kernel[(grid_kv, triton.cdiv(self.nz, 32))](
                q, self.k_kept, self.k_start, self.k_cos, self.k_sin, self.k_sc, self.k_sh, self.z, self.lens_arg,
                *q.stride(), self.z.stride(0), self.z.stride(1), self.hkv, self.ck, self.k_cos.shape[2], self.nz,
                self.period, **consts, VARLEN=self.lens is not None, BLOCK_M=self.block_m, BLOCK_D=self.block_d, BLOCK_N=32,
                CPREC=self.coef_prec)
        if upto < 2:
            return self.result
        grid, args, kw = self._fused_launch()
        KERNELS["fused"][grid](*args, **kw)  # by name: ci/issue_cost_tiles.py records this launch
        block_s = splits_block(self.splits)
        block_so = min(self.merge_chunk, triton.next_power_of_2(self.splits))
        if upto >= 3 and self.cv:
            _spectrum_merge_kernel[(grid_kv, self.n_chunks)](
                self.spec, self.mx, self.sm, self.f, self.po, self.v_kept, self.v_start, self.v_cos, self.v_sin,
                self.lens_arg, self.f.stride(0), self.f.stride(1), self.hkv, self.cv, self.v_cos.shape[2], self.nv,
                self.period, self.n_ranges, self.splits, **consts, VARLEN=self.lens is not None,
                BLOCK_M=self.block_m, BLOCK_R=self.block_r, BLOCK_D=self.block_d, BLOCK_N=self.block_n,
                NVP=self.nvp, BLOCK_S=block_s, BLOCK_SO=block_so, CPREC=self.coef_prec, FOLD=self.fold)
        res = self.result
        if upto < 4:
            return res
        output_kernel[(grid_kv, triton.cdiv(self.d, 16))](
            self.acc, self.acc_kept, self.v_kept, self.v_start, self.mx, self.sm, self.f, self.po, self.v_cos,
            self.v_sin, self.v_sc, self.v_sh, res, self.lens_arg, self.f.stride(0), self.f.stride(1), *res.stride(),
            self.hkv, self.cv, self.v_cos.shape[2] if self.cv else 0, self.period, self.splits, self.n_chunks,
            **consts, VARLEN=self.lens is not None,
            BLOCK_M=self.block_m, BLOCK_D=self.block_d, BLOCK_DO=16, BLOCK_N=16, BLOCK_VD=self.block_vd,
            BLOCK_S=block_s, BLOCK_SO=block_so, CPREC=self.coef_prec, ALIGN=self.align,
            PARTS=min(16, triton.next_power_of_2(max(self.n_chunks, 1))) if self.fold else 0)
        return res


def tiles_plan(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None, range_t=None, block_t=None, exact_splits=None, num_warps=None,
    num_stages=None, fold=None,
) -> TilesPlan:
    """The launches of `fourier_decode_attention_triton_tiles` without its input checks (which synchronize with the
    GPU); `n_init` is taken for the op's signature only (the exact tensors hold the sinks first)."""
    return TilesPlan(q, k_exact, v_exact, (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift),
                     (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift), mid_len, [period], scale,
                     out, range_t, block_t, exact_splits, num_warps, num_stages=num_stages, fold=fold)


def planned_tiles(upto: int | None = None, **knobs):
    """run(inputs) with the plan made once per input set (`optimized.fourier_plans.planned`); `upto` runs only
    phases 1..upto of PHASES."""
    return planned(tiles_plan, upto, **knobs)


def phase_times(graph_timer, sets: list[dict], **knobs) -> dict:
    """Milliseconds of each phase (PHASES) on the input sets."""
    return plan_phase_times(tiles_plan, PHASES, graph_timer, sets, **knobs)


def bench_extra(inputs: dict) -> dict:
    """The plan's launch knobs and its scratch traffic beside the cache: per range program the scores written,
    read and rewritten and read again (4 x 4 bytes per row and token), the spectrum written and merged."""
    plan = tiles_plan(**inputs)
    rows = plan.b * plan.hq * plan.lq
    scratch = rows * (16 * plan.n_ranges * plan.range_t * plan.block_t + 2 * 8 * plan.splits * plan.nvp)
    overread = window_overread(plan.k_starts, plan.v_starts, plan.b * plan.mid_len, plan.k_mid.element_size(),
                               plan.align)
    return {"scratch_bytes": float(scratch), "window_overread_bytes": float(overread),
            "knobs": {"block_t": plan.block_t, "range_t": plan.range_t, "exact_splits": plan.exact_splits,
                      "num_warps": plan.num_warps, "num_stages": plan.num_stages, "fold": plan.fold}}


@register_impl("fourier_decode_attention", "triton_tiles",
               bench=ImplBench(name="triton_fourier_tiles", order=3.5, fast=planned_tiles, phases=phase_times,
                               extra=bench_extra))
@conformance_knobs({"block_t": 16, "range_t": 16, "exact_splits": 3, "fold": False})
def fourier_decode_attention_triton_tiles(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None, range_t=None, block_t=None, exact_splits=None, num_warps=None,
    num_stages=None, fold=None,
):
    """FlashFourierAttention decode, token-major (module docstring): out [B, Hq, Lq, D] in q's dtype.

    Same layout and result as `reference.ops.fourier.fourier_decode_attention`. Knobs: `block_t` (tokens per tile,
    a power of two >= 16; 64), `range_t` (tiles per program, a power of two; 64 (row, tile) pairs), `exact_splits`
    (programs for the exact tokens), `num_warps` (4), `num_stages` (3: the loops' software-pipelining depth),
    `fold` (the compressed V channels summed per frequency chunk by the merge; default: while one wave holds the
    merge's programs)."""
    check_decode_inputs(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale,
                        k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len,
                        period, scale)
    return tiles_plan(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale,
                      k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period,
                      scale, out, range_t, block_t, exact_splits, num_warps, num_stages, fold).run()


@register_impl("fourier_decode_attention_varlen", "triton_tiles")
@conformance_knobs({"block_t": 16, "range_t": 16, "exact_splits": 3, "fold": False})
def fourier_decode_attention_varlen_triton_tiles(
    q, k_exact, v_exact, exact_lens, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_lens, periods, scale=None, out=None, range_t=None, block_t=None, exact_splits=None, num_warps=None,
    num_stages=None, fold=None,
):
    """The token-major decode over padded sequences of different lengths (`reference.ops.fourier_varlen`): every
    program reads its sequence's exact length, middle length and period; each sequence has its period's tile
    basis; ranges past a shorter middle add nothing."""
    check_varlen_inputs(q, k_exact, v_exact, exact_lens, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin,
                        k_scale, k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
                        mid_lens, periods, scale)
    lens = varlen_lens(exact_lens, mid_lens, periods)
    return TilesPlan(q, k_exact, v_exact, (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift),
                     (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift), k_mid_kept.shape[1],
                     periods.tolist(), scale, out, range_t, block_t, exact_splits, num_warps, lens=lens,
                     num_stages=num_stages, fold=fold).run()
