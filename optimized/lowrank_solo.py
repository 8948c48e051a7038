"""The low-rank decode at batch 1 in two launches (`solo`): the stream's programs do the prologue's and the merge's
work for their own block, and a last launch merges the splits.

With the folds (optimized/lowrank_folds.py) a batch-1 call is four launches: the prologue (A from FoldK, the sinks
and window, the query rows), the stream, the merge (H against FoldV) and the output. Each of the three small ones is
latency-bound and takes 3-9 us on an H100 (docs/fourier-attention.md, fifteenth pass); their work per block is small
and needs nothing from other blocks. Here a stream program of row block r and split s (blocks k of the split):
1. before its token loop, lays out its rows' query over the kept K window (`query_rows`, QBD) and computes A_k of its
   blocks, A_k = sum over the row block's KV heads of q_h @ FoldK_dims[h, k] (eq. scores, folded by dimension: each
   row takes only its own head's rows of FoldK, so no gather), both stored and read back in the loop after a CTA
   barrier (held in registers across it they spill), and Re Z_0 = q . z;
2. streams its blocks as `_middle_kernel` does (kept channels, the rank-r score, P @ V over the V window, H_k with
   the running max m_k it is relative to, stored per block);
3. after the loop, makes its output by dimension O = sum_k e^{m_k - m} H_k @ FoldV_dims[h, k] + l_mid z_v, where
   FoldV_dims holds each compressed V channel's fold row at its dimension times its moment scale (eq. values, folded
   and moment matched) and z_v = s a'_0 / T + mu is the n = 0 bin and the shift, times the middle's mass l_mid;
4. takes its share of the sinks and window, ceil(L_e / splits) tokens, into the same online softmax: the scores
   over the heads' full K rows, P @ V over the full V rows into O (all dimensions of the row's own head).
It stores the split's (max, sum), its kept V accumulators by kept slot (as `_middle_kernel`) and O by dimension.
`_solo_output_kernel` merges the splits by log-sum-exp: per dimension O's share plus, at a kept dimension, the kept
accumulator at its slot (`kept_slots`), over l.

Every product is the four-launch path's, per program; only the order of summation changes. The bytes are the same
(the kept rows, FoldK, FoldV by dimension, the exact tokens), now read by the stream's programs, whose loads of
FoldK and of the exact tokens have no load before them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from optimized.lowrank_folds import fold_operands, k_fold, k_fold_dims, stored_fold, v_fold
from optimized.lowrank_programs import after_predecessor
from optimized.lowrank_rows import heads_window, query_rows
from optimized.lowrank_split_tiles import acc_tile, merged_stats_tiled, split_sums, stats_tile, tile_steps
from optimized.lowrank_tables import planes_table
from optimized.triton_fourier_spectral import TL_DTYPE
from optimized.triton_fourier_tiles import bf16_rounded

# the sinks and window per program: tiles of at most this many tokens
EXACT_TILE_MAX = 64
# the output's splits per tile: [splits, rows, 16 dimensions] float32 within 32 registers a thread at 4 warps for
# 4 rows, as the fold path's output (OUT_TILE_SPLITS of optimized/triton_fourier_lowrank.py)
OUT_TILE_SPLITS = 64


@triton.jit
def _solo_stream_kernel(
    Q, QBD, KKEPT, KSTART, VSTART, KM, VM, VK, VV, FOLDK, ZK, FOLDV, ZV, KE, VE, A, H, HM, MAXM, SUMM, ACCM, OD, LENS,
    sqb, sqh, sql, sqd, skb, skt, svb, svt, svkb, svvb, sfkb, sfkc, sfvb, sfvc, szb,
    skeb, skeh, skel, sked, sveb, sveh, svel, sved,
    mid_len, le, k_width, v_width, n_rows, Hkv, n_blocks, blocks_per_split, sm_scale,
    G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, GL: tl.constexpr, HB: tl.constexpr, VARLEN: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, KWP: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_VC: tl.constexpr, BLOCK_VD: tl.constexpr, BLOCK_T: tl.constexpr, BB: tl.constexpr, PK: tl.constexpr,
    PV: tl.constexpr, TE: tl.constexpr, HAS_S: tl.constexpr, HAS_H: tl.constexpr, DT: tl.constexpr, BDT: tl.constexpr,
    PREC: tl.constexpr, CPREC: tl.constexpr, EMUL_BF16: tl.constexpr, ALIGN: tl.constexpr,
    FK_DT: tl.constexpr, FK_PREC: tl.constexpr, FK_BF16: tl.constexpr, FK_TF32: tl.constexpr,
    FV_DT: tl.constexpr, FV_PREC: tl.constexpr, FV_BF16: tl.constexpr, FV_TF32: tl.constexpr,
    PDL: tl.constexpr = False, PDL_EARLY: tl.constexpr = True,
):
    """Split `split` (axis 1) of row block pid (axis 0: sequence b, BLOCK_R query rows) over whole blocks of BB
    middle tokens, with its share of the exact tokens (module docstring). The row block spans at most HB KV heads
    from h0 = row0 // GL; a product over heads is HB products, each with the other heads' rows zeroed."""
    after_predecessor(PDL, PDL_EARLY)
    # (head masks are vectors, ds * 0 + hj < Hkv: the interpreter makes a vector & a scalar comparison int32, which
    # no load takes as a mask)
    pid = tl.program_id(0)
    split = tl.program_id(1)
    row_blocks = tl.cdiv(n_rows, BLOCK_R)
    b = pid // row_blocks
    rb = pid % row_blocks
    row0 = rb * BLOCK_R
    rows = row0 + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    hk = rows // GL  # each row's KV head
    h0 = row0 // GL
    if VARLEN:
        le = tl.load(LENS + 3 * b)
        mid_len = tl.load(LENS + 3 * b + 1)
    ds = tl.arange(0, BLOCK_D)
    d_ok = ds < D
    rd_ok = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + b * sqb + (rows // LQ)[:, None] * sqh + (rows % LQ)[:, None] * sql + ds[None, :] * sqd,
                mask=rd_ok, other=0.0)
    head_dims = (hk * D)[:, None] + ds[None, :]  # each row's own head's dimensions in the by-dimension tables
    z0 = tl.zeros((BLOCK_R,), dtype=tl.float32)
    if HAS_S:
        z0 = tl.sum(q.to(tl.float32) * tl.load(ZK + b * szb + head_dims, mask=rd_ok, other=0.0), 1)  # Re Z_0
    blk0 = split * blocks_per_split
    blk1 = tl.minimum(blk0 + blocks_per_split, tl.cdiv(mid_len, BB))
    pk = tl.arange(0, PK)
    pv = tl.arange(0, PV)
    hrows = (b * n_rows + rows) * n_blocks  # the rows' blocks in A, H and HM
    # Before the token loop, with none of its registers live: the query over the kept K window (QBD) and A_k of
    # the split's blocks, stored for the loop's loads (held in registers across it, they spill)
    query_rows(Q, KKEPT, KSTART, QBD, sqb, sqh, sql, sqd, n_rows, k_width, b, rb, 0, G, LQ, D, KWP, BLOCK_R, KWP,
               ALIGN)
    if HAS_S:
        q32 = q.to(tl.float32)
        for blk in range(blk0, blk1):
            a = tl.zeros((BLOCK_R, PK), dtype=tl.float32)
            for j in tl.static_range(HB):
                hj = h0 + j
                fk = tl.load(FOLDK + b * sfkb + (hj * D + ds)[:, None] * sfkc + (blk * PK + pk)[None, :],
                             mask=(d_ok & (ds * 0 + hj < Hkv))[:, None] & (pk < PK)[None, :], other=0.0)
                x, y = fold_operands(tl.where((hk == hj)[:, None], q32, 0.0), fk, FK_DT, FK_BF16, FK_TF32)
                a += tl.dot(x, y, input_precision=FK_PREC)
            tl.store(A + (hrows + blk)[:, None] * PK + pk[None, :], a, mask=row_ok[:, None])
    tl.debug_barrier()
    ks, kw = heads_window(KSTART, row0, n_rows, k_width, GL, BLOCK_R, ALIGN)
    vw0, vw = heads_window(VSTART, row0, n_rows, v_width, GL, BLOCK_R, ALIGN)
    cc = tl.arange(0, CHUNK)
    vc = tl.arange(0, BLOCK_VC)
    m_i = tl.full((BLOCK_R,), -1.0e30, dtype=tl.float32)
    l_i = tl.zeros((BLOCK_R,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_R, BLOCK_VC), dtype=tl.float32)
    for blk in range(blk0, blk1):  # `_middle_kernel`'s loop
        ab = tl.zeros((BLOCK_R, PK), dtype=BDT)
        if HAS_S:
            a = tl.load(A + (hrows + blk)[:, None] * PK + pk[None, :], mask=row_ok[:, None], other=0.0)
            if EMUL_BF16:
                a = bf16_rounded(a)
            ab = a.to(BDT)
        h = tl.zeros((BLOCK_R, PV), dtype=tl.float32)
        for sub in range(0, BB, BLOCK_T):
            jj = sub + tl.arange(0, BLOCK_T)
            ts = blk * BB + jj
            ok = ts < mid_len
            s = tl.zeros((BLOCK_R, BLOCK_T), dtype=tl.float32) + z0[:, None]
            if HAS_S:
                vk = tl.load(VK + b * svkb + jj[:, None] * PK + pk[None, :])
                s += tl.dot(ab, tl.trans(vk), input_precision=CPREC)
            for c0 in tl.static_range(0, KWP, CHUNK):
                k = tl.load(KM + b * skb + ts[:, None] * skt + ks + (c0 + cc)[None, :],
                            mask=ok[:, None] & (c0 + cc < kw)[None, :], other=0.0)
                qb = tl.load(QBD + (b * n_rows + rows)[:, None] * KWP + (c0 + cc)[None, :], mask=row_ok[:, None],
                             other=0.0)
                s += tl.dot(qb, tl.trans(k.to(DT)), input_precision=PREC)
            s = tl.where(ok[None, :], s * sm_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(VM + b * svb + ts[:, None] * svt + vw0 + vc[None, :], mask=ok[:, None] & (vc < vw)[None, :],
                        other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(DT), v.to(DT), input_precision=PREC)
            if HAS_H:
                vv = tl.load(VV + b * svvb + jj[:, None] * PV + pv[None, :])
                pb = bf16_rounded(p) if EMUL_BF16 else p
                h = h * alpha[:, None] + tl.dot(pb.to(BDT), vv, input_precision=CPREC)
            m_i = m_new
        if HAS_H:
            tl.store(H + (hrows + blk)[:, None] * PV + pv[None, :], h, mask=row_ok[:, None])
            tl.store(HM + hrows + blk, m_i, mask=row_ok)
    # O, by dimension: sum_k e^{m_k - m} H_k @ FoldV_dims[k] (each block's compressed V channels, moment matched),
    # plus l_mid z_v (the n = 0 bin and the shift, times the middle's mass)
    o = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    if HAS_H:
        tl.debug_barrier()  # H and HM as this program's threads stored them
        o = l_i[:, None] * tl.load(ZV + b * szb + head_dims, mask=rd_ok, other=0.0)
        for blk in range(blk0, blk1):
            hb = tl.load(H + (hrows + blk)[:, None] * PV + pv[None, :], mask=row_ok[:, None], other=0.0)
            hb = hb * tl.exp(tl.load(HM + hrows + blk, mask=row_ok, other=-1.0e30) - m_i)[:, None]
            for j in tl.static_range(HB):
                hj = h0 + j
                fv = tl.load(FOLDV + b * sfvb + (hj * D + ds)[None, :] * sfvc + (blk * PV + pv)[:, None],
                             mask=(pv < PV)[:, None] & (d_ok & (ds * 0 + hj < Hkv))[None, :], other=0.0)
                x, y = fold_operands(tl.where((hk == hj)[:, None], hb, 0.0), fv, FV_DT, FV_BF16, FV_TF32)
                o += tl.dot(x, y, input_precision=FV_PREC)
    # this split's share of the sinks and window, ceil(L_e / splits) tokens, in the same softmax
    per = tl.cdiv(le, tl.num_programs(1))
    e0 = split * per
    e1 = tl.minimum(e0 + per, le)
    qd = tl.load(Q + b * sqb + (rows // LQ)[:, None] * sqh + (rows % LQ)[:, None] * sql + ds[None, :] * sqd,
                 mask=rd_ok, other=0.0).to(DT)  # (loaded again: kept across the loop, it spills)
    for t0 in range(e0, e1, TE):
        js = t0 + tl.arange(0, TE)
        j_ok = js < e1
        s = tl.zeros((BLOCK_R, TE), dtype=tl.float32)
        for j in tl.static_range(HB):
            hj = h0 + j
            ke = tl.load(KE + b * skeb + hj * skeh + js[:, None] * skel + ds[None, :] * sked,
                         mask=j_ok[:, None] & (d_ok & (ds * 0 + hj < Hkv))[None, :], other=0.0)
            s += tl.dot(tl.where((hk == hj)[:, None], qd, 0.0).to(DT), tl.trans(ke.to(DT)), input_precision=PREC)
        see = j_ok[None, :] & (js[None, :] <= (le - LQ + rows % LQ)[:, None])  # query row i sits at L_e - LQ + i
        s = tl.where(see, s * sm_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        o = o * alpha[:, None]
        for j in tl.static_range(HB):
            hj = h0 + j
            ve = tl.load(VE + b * sveb + hj * sveh + js[:, None] * svel + ds[None, :] * sved,
                         mask=j_ok[:, None] & (d_ok & (ds * 0 + hj < Hkv))[None, :], other=0.0)
            o += tl.dot(tl.where((hk == hj)[:, None], p, 0.0).to(DT), ve.to(DT), input_precision=PREC)
        m_i = m_new
    # the split's part of each row's KV head: part = (b * Hkv + head) * splits + split, row within the head
    part = (b * Hkv + hk) * tl.num_programs(1) + split
    slot = part * BLOCK_M + rows % GL
    tl.store(MAXM + slot, m_i, mask=row_ok)
    tl.store(SUMM + slot, l_i, mask=row_ok)
    tl.store(OD + slot[:, None] * BLOCK_D + ds[None, :], o, mask=rd_ok)
    vs = tl.load(VSTART + hk, mask=row_ok, other=0)
    v_end = tl.load(VSTART + hk + 1, mask=row_ok, other=0)
    chans = vw0 + vc  # the lanes' places in the kept V list
    own = row_ok[:, None] & (chans[None, :] >= vs[:, None]) & (chans[None, :] < v_end[:, None])
    tl.store(ACCM + slot[:, None] * BLOCK_VD + (chans[None, :] - vs[:, None]), acc, mask=own)


@triton.jit
def _solo_output_kernel(MAXM, SUMM, ACCM, OD, SLOTS, OUT, sob, soh, sol, sod, Hkv, splits, G: tl.constexpr,
                        LQ: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_VD: tl.constexpr, RB: tl.constexpr, BLOCK_DO: tl.constexpr, BLOCK_S: tl.constexpr,
                        STEPS: tl.constexpr, PDL: tl.constexpr = False, PDL_EARLY: tl.constexpr = True):
    """out[b, KV head bh's rows, dimensions j BLOCK_DO ..] = (sum_s e^{m_s - m} (O_s + the kept accumulator at the
    dimension's kept slot, SLOTS [Hkv, D], -1 at a compressed one)) / l, the splits' statistics merged by
    log-sum-exp; every tile of splits is loaded before the first reduction (optimized/lowrank_split_tiles.py)."""
    after_predecessor(PDL, PDL_EARLY)
    bh = tl.program_id(0)
    b = bh // Hkv
    h = bh % Hkv
    rows = tl.arange(0, RB)
    row_ok = rows < G * LQ
    dims = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    d_ok = dims < D
    kslot = tl.load(SLOTS + h * D + dims, mask=d_ok, other=-1)
    mx, sm = stats_tile(MAXM, SUMM, bh, splits, 0, rows, BLOCK_M, BLOCK_S)
    o_mx, o_acc = acc_tile(OD, MAXM, bh, splits, 0, rows, row_ok, dims, d_ok, BLOCK_M, BLOCK_D, BLOCK_S)
    k_ok = kslot >= 0
    k_mx, k_acc = acc_tile(ACCM, MAXM, bh, splits, 0, rows, row_ok, kslot, k_ok, BLOCK_M, BLOCK_VD, BLOCK_S)
    m, l_tot = merged_stats_tiled(MAXM, SUMM, bh, splits, rows, mx, sm, BLOCK_M, BLOCK_S, STEPS)
    out = split_sums(OD, MAXM, bh, splits, m, rows, row_ok, dims, d_ok, o_mx, o_acc, BLOCK_M, BLOCK_D, BLOCK_S,
                     STEPS)
    out += split_sums(ACCM, MAXM, bh, splits, m, rows, row_ok, kslot, k_ok, k_mx, k_acc, BLOCK_M, BLOCK_VD, BLOCK_S,
                      STEPS)
    out = out / l_tot[:, None]
    o_at = OUT + b * sob + (h * G + rows // LQ)[:, None] * soh + (rows % LQ)[:, None] * sol + dims[None, :] * sod
    tl.store(o_at, out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


# the launches by name, for the offline build (optimized/sm90_build.py)
KERNELS = {"two-launch stream": _solo_stream_kernel, "two-launch output": _solo_output_kernel}


def solo_by_default(on: bool, gpu: bool, folds: bool | None, dense: bool, fold_path: bool, v_slices: int) -> bool:
    """A plan's default (`on`: SOLO): on a GPU, where the plan would take the folds by default (`fold_path`: a plan
    kept across steps whose path allows them, `folds` not set) and not the rebuilt rows (`dense`), with each row
    block's V window in one slice. The interpreter's plans take it when asked (their conformance does)."""
    return on and gpu and folds is None and not dense and fold_path and v_slices == 1


def kept_slots(kept: list[int], hkv: int, d: int) -> torch.Tensor:
    """[hkv, d] int32: dimension d of head h's place in the head's run of the sorted kept V list, -1 where it is
    compressed."""
    slots = torch.full((hkv, d), -1, dtype=torch.int32)
    for c in kept:
        h = c // d
        slots[h, c % d] = int((slots[h] >= 0).sum())
    return slots


def heads_per_row_block(n_rows: int, gl: int, block_r: int) -> int:
    """The most KV heads one row block of `block_r` query rows spans (a head's rows are `gl` consecutive rows)."""
    return max((min(r + block_r, n_rows) - 1) // gl - r // gl + 1 for r in range(0, n_rows, block_r))


def solo_folds(plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(FoldK_dims, z_k, FoldV_dims, z_v) of the plan's cache: FoldK by dimension and z_k as `k_fold_dims` makes
    them, and FoldV by dimension: each compressed V channel's fold row (`v_fold`) at its dimension times its moment
    scale s, with z_v = s a'_0 / T + mu beside it (`k_fold_dims` of the fold times T: its rows s / T times T, its
    z mu + (s / T) a'_0). [B, Hkv x D, blocks x PK or PV] in the plan's `fold_precs`, z float32 [B, Hkv x D]."""
    opts = dict(dtype=torch.float64, device=plan.q.device)
    b, cols_k, cols_v = plan.b, plan.n_blocks * plan.pk, plan.n_blocks * plan.pv
    fk, fv = torch.zeros(b, plan.ck, cols_k, **opts), torch.zeros(b, plan.cv, cols_v, **opts)
    tokens, width = plan.n_blocks * plan.block, max(plan.nv, 1)
    for period, _, nv, idx, w_k, _ in plan.groups:
        seqs = idx if idx is not None else torch.arange(b, device=plan.q.device)
        if plan.ck:
            fk[seqs] = k_fold(plan.k_cos[seqs], plan.k_sin[seqs], w_k)
        if plan.cv:
            table = planes_table(period, nv, tokens, plan.block, plan.pv, width, str(plan.q.device))
            fv[seqs] = v_fold(plan.v_cos[seqs], plan.v_sin[seqs], table)
    periods = torch.tensor(plan.periods if len(plan.periods) == b else plan.periods * b, **opts)
    dims = plan.hkv * plan.d
    fk, zk = k_fold_dims(fk, plan.k_comp, plan.k_sc, plan.k_sh, plan.k_cos[:, :, 0], periods, dims)
    fv, zv = k_fold_dims(fv * periods[:, None, None], plan.v_comp, plan.v_sc, plan.v_sh, plan.v_cos[:, :, 0], periods,
                         dims)
    gpu, (prec_k, prec_v) = plan.q.is_cuda, plan.fold_precs
    return stored_fold(fk, prec_k, gpu), zk.float().contiguous(), stored_fold(fv, prec_v, gpu), zv.float().contiguous()


class SoloPath:
    """A plan's two-launch step (module docstring): its folds by dimension, the slot table, O's scratch, launches."""

    def __init__(self, plan):
        if plan.v_slices != 1:
            raise ValueError(f"solo needs each row block's V window in one slice, got {plan.v_slices} slices "
                             f"(a window of more than {plan.block_vc} kept V channels)")
        self.plan = plan
        self.folds = solo_folds(plan)
        self.slots = kept_slots(plan.v_kept.tolist(), plan.hkv, plan.d).to(plan.q.device)
        self.od = torch.zeros(plan.b * plan.hkv * plan.splits, plan.block_m, plan.block_d, dtype=torch.float32,
                              device=plan.q.device)
        self.a = torch.zeros(plan.b, plan.n_rows, plan.n_blocks, plan.pk, dtype=torch.float32, device=plan.q.device)
        self.hb = heads_per_row_block(plan.n_rows, plan.gl, plan.block_r)
        self.te = min(EXACT_TILE_MAX, max(16, triton.next_power_of_2(triton.cdiv(max(plan.le, 1), plan.splits))))

    def table_bytes(self) -> int:
        """What the step reads beside the cache's kept rows and exact tokens: the folds and their z."""
        return sum(t.numel() * t.element_size() for t in self.folds)

    def _consts(self, prec: str, tag: str) -> dict:
        c = self.plan._fold_consts(prec)
        return {f"{tag}_DT": c["FDT"], f"{tag}_PREC": c["F_PREC"], f"{tag}_BF16": c.get("F_EMUL_BF16", False),
                f"{tag}_TF32": c.get("F_EMUL_TF32", False)}

    def stream(self) -> None:
        p, (fk, zk, fv, zv) = self.plan, self.folds
        q, km, vm, ke, ve = p.q, p.k_mid, p.v_mid, p.k_exact, p.v_exact
        prec_k, prec_v = p.fold_precs
        _solo_stream_kernel[(p.b * triton.cdiv(p.n_rows, p.block_r), p.splits)](
            q, p.qbd, p.k_kept, p.k_start, p.v_start, km, vm, p.vk, p.vv, fk, zk, fv, zv, ke, ve, self.a, p.h, p.hm,
            p.maxm, p.summ,
            p.accm, self.od, p.lens_arg, *q.stride(), km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), p.svk,
            p.svv, fk.stride(0), fk.stride(1), fv.stride(0), fv.stride(1), zk.stride(0), *ke.stride(), *ve.stride(),
            p.mid_len, p.le, p.k_width, p.v_width, p.n_rows, p.hkv, p.n_blocks, p.blocks_per_split, p.sm_scale,
            G=p.group,
            LQ=p.lq, D=p.d, GL=p.gl, HB=self.hb, VARLEN=p.lens is not None, BLOCK_R=p.block_r, BLOCK_M=p.block_m,
            BLOCK_D=p.block_d, KWP=p.kwp, CHUNK=p.chunk, BLOCK_VC=p.block_vc, BLOCK_VD=p.block_vd,
            BLOCK_T=p.block_t, BB=p.block, PK=p.pk, PV=p.pv, TE=self.te, HAS_S=p.ck > 0, HAS_H=p.cv > 0,
            DT=TL_DTYPE[q.dtype], BDT=p.bdt, PREC=p.prec, CPREC=p.basis_prec, EMUL_BF16=p.emulate_bf16,
            ALIGN=p.align, **self._consts(prec_k, "FK"), **self._consts(prec_v, "FV"), num_warps=p.num_warps,
            num_stages=p.num_stages, **p._pdl_kw)

    def output(self) -> None:
        p, res = self.plan, self.plan.result
        block_s, steps = tile_steps(p.splits, OUT_TILE_SPLITS)
        _solo_output_kernel[(p.b * p.hkv, triton.cdiv(p.d, p.out_block_do))](
            p.maxm, p.summ, p.accm, self.od, self.slots, res, *res.stride(), p.hkv, p.splits, G=p.group, LQ=p.lq,
            D=p.d, BLOCK_M=p.block_m, BLOCK_D=p.block_d, BLOCK_VD=p.block_vd, RB=max(2, triton.next_power_of_2(p.gl)),
            BLOCK_DO=p.out_block_do, BLOCK_S=block_s, STEPS=steps, num_warps=p.out_warps, **p._pdl_kw)
