"""The middle's attention over whole kept rows: one program per (sequence, token split) for all KV heads. A GPU probe.

`ci/probe_kept_stream.py` measured that loading whole kept rows (every head's channels) reaches the stream's
bandwidth with one wave of programs, where today's per-head windows need eight. This probe adds the attention to
that access pattern, as the spectral kernel's streaming pass does it (split-KV flash decoding over the middle,
the compressed-channel score S_t added from a float32 scratch and the final score written back over it), with
every query row of a sequence in one program: the scores are Q_bd @ K^T, Q_bd [rows x kept K width] block-diagonal
(row r holds its query only on its KV head's kept channels), and P @ V gives every row all heads' kept V channels,
of which a row keeps its own head's. The block-diagonal products do 8x the useful tensor-core work (LLaMA-3-8B:
about 0.65 GFLOP per step at 1 x 32k), which decode can afford.

Timing only, against the spectral kernel's streaming phase (the leaderboard's phase column) and the pure stream of
`probe_kept_stream.py`; the exact tokens (sinks and window) are left out. `--check` compares the merged splits with
PyTorch in the interpreter (TRITON_INTERPRET=1) on a small cache.

    PYTHONPATH=. python ci/probe_whole_row_attention.py [--cases 1x32768,1x131072,8x32768] [--out probe.json]
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch
import triton
import triton.language as tl

from harness.gpu_timing import bench_ms
from reference.ops.fourier_cache import make_fourier_cache


@triton.jit
def _whole_row_split(QBD, KM, VM, S, M, L, ACC, mid_len, skb, skt, svb, svt, ssb, ssr, k_width, v_width,
                     tiles_per_split,
                     R: tl.constexpr, KW: tl.constexpr, BLOCK_VR: tl.constexpr, BLOCK_T: tl.constexpr,
                     CHUNK: tl.constexpr):
    """Split `split` of sequence b: online softmax of all R query rows over its middle tokens, scores
    Q_bd @ K^T + S (S rewritten with the scores), (max, sum, P @ V over whole V rows) stored per split."""
    b = tl.program_id(0)
    split = tl.program_id(1)
    rows = tl.arange(0, R)
    cc = tl.arange(0, CHUNK)
    vc = tl.arange(0, BLOCK_VR)
    m_i = tl.full((R,), -1.0e30, dtype=tl.float32)
    l_i = tl.zeros((R,), dtype=tl.float32)
    acc = tl.zeros((R, BLOCK_VR), dtype=tl.float32)
    s_rows = S + b * ssb + rows * ssr
    for tile in range(split * tiles_per_split, (split + 1) * tiles_per_split):
        ts = tile * BLOCK_T + tl.arange(0, BLOCK_T)
        ok = ts < mid_len
        s = tl.load(s_rows[:, None] + ts[None, :], mask=ok[None, :], other=0.0)
        for c0 in tl.static_range(0, KW, CHUNK):  # the kept K row in CHUNK-wide pieces (KW: its padded stride)
            k = tl.load(KM + b * skb + ts[:, None] * skt + (c0 + cc)[None, :], mask=ok[:, None] & (c0 + cc < k_width)[None, :], other=0.0)
            q = tl.load(QBD + b * R * KW + rows[:, None] * KW + (c0 + cc)[None, :])
            s += tl.dot(q, tl.trans(k))
        tl.store(s_rows[:, None] + ts[None, :], s, mask=ok[None, :])
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(VM + b * svb + ts[:, None] * svt + vc[None, :], mask=ok[:, None] & (vc < v_width)[None, :],
                    other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    part = b * tl.num_programs(1) + split
    tl.store(M + part * R + rows, m_i)
    tl.store(L + part * R + rows, l_i)
    tl.store(ACC + (part * R + rows[:, None]) * BLOCK_VR + vc[None, :], acc)


def block_diagonal_query(c: dict, scale: float) -> torch.Tensor:
    """Q_bd [B, Hq, kept K stride]: row r's query (times scale) on its KV head's kept K channels, zero elsewhere."""
    q, km, kept = c["q"][:, :, 0].float(), c["k_mid_kept"], c["k_kept_idx"]
    b, hq, d = q.shape
    group = hq // (c["k_exact"].shape[1])
    qbd = torch.zeros(b, hq, km.stride(1), dtype=torch.float32, device=q.device)
    head_of = kept // d  # KV head of each kept channel
    for r in range(hq):
        own = head_of == r // group
        qbd[:, r, : kept.numel()][:, own] = q[:, r, kept[own] % d] * scale
    return qbd.to(km.dtype)


def launch(c: dict, qbd: torch.Tensor, s: torch.Tensor, block_t: int, splits_per_seq: int, num_warps: int,
           num_stages: int):
    km, vm = c["k_mid_kept"], c["v_mid_kept"]
    b, mid = km.shape[0], km.shape[1]
    tiles = triton.cdiv(mid, block_t)
    per = triton.cdiv(tiles, min(tiles, splits_per_seq))
    splits = triton.cdiv(tiles, per)
    rows, bvr = qbd.shape[1], triton.next_power_of_2(vm.stride(1))
    out_m = torch.empty(b, splits, rows, device=km.device)
    out_l = torch.empty_like(out_m)
    acc = torch.empty(b, splits, rows, bvr, device=km.device)

    def fn():
        _whole_row_split[(b, splits)](
            qbd, km, vm, s, out_m, out_l, acc, mid, km.stride(0), km.stride(1), vm.stride(0), vm.stride(1),
            s.stride(0), s.stride(1), km.shape[2], vm.shape[2], per, R=rows, KW=km.stride(1), BLOCK_VR=bvr, BLOCK_T=block_t,
            CHUNK=64, num_warps=num_warps, num_stages=num_stages)
    return fn, (out_m, out_l, acc), splits


def check(device: str = "cpu") -> None:
    """The merged splits equal PyTorch's softmax(Q_bd K^T + S) V over the middle (fp16 cache, interpreter)."""
    c = make_fourier_cache(1, 32, 8, 128, 1024 + 300, 512, dtype=torch.float16, device=device, kept_pad=64,
                           kept_align=8)
    qbd = block_diagonal_query(c, 128 ** -0.5)
    km, vm = c["k_mid_kept"], c["v_mid_kept"]
    mid = km.shape[1]
    s = torch.randn(1, 32, mid + 5, device=device)
    scores = (qbd[..., : km.shape[2]].float() @ km.float().transpose(1, 2)) + s[..., :mid]
    k_full = torch.zeros(mid, 8 * 128, device=device)  # the kept channels at their dimensions, the rest zero
    k_full[:, c["k_kept_idx"]] = km[0].float()
    per_head = torch.stack([k_full[:, r // 4 * 128:(r // 4 + 1) * 128] @ c["q"][0, r, 0].float() for r in range(32)])
    assert torch.allclose(scores[0] - s[0, :, :mid], per_head * 128 ** -0.5, atol=1e-2), "Q_bd: row r on its head"
    want = torch.softmax(scores, -1) @ vm.float()
    fn, (m, l, acc), _ = launch(c, qbd, s, 64, 3, 4, 2)
    fn()
    assert torch.allclose(s[..., :mid], scores, atol=1e-4), "the scores written back over S"
    w = torch.exp(m - m.max(1, keepdim=True).values)  # [1, splits, rows]
    got = (w[..., None] * acc).sum(1) / (w * l).sum(1)[..., None]
    err = (got[..., : vm.shape[2]] - want).abs().max().item()
    assert err < 1e-3, err
    print(f"merged splits match PyTorch (max error {err:.1e})")


def probe(batch: int, context: int) -> list[dict]:
    c = make_fourier_cache(batch, 32, 8, 128, context, 512, dtype=torch.bfloat16, device="cuda", kept_pad=64,
                           kept_align=8)
    qbd = block_diagonal_query(c, 128 ** -0.5)
    mid = c["k_mid_kept"].shape[1]
    s = torch.randn(batch, 32, mid, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for bt, waves, warps, stages in itertools.product((32, 64, 128), (1, 2, 4), (4, 8), (2, 3)):
        fn, _, splits = launch(c, qbd, s, bt, max(1, round(waves * sms / batch)), warps, stages)
        try:
            us = bench_ms(fn) * 1e3
        except Exception as exc:  # noqa: BLE001  (a setting that does not build: out of shared memory)
            rows.append({"batch": batch, "context": context, "block_t": bt, "waves": waves, "num_warps": warps,
                         "num_stages": stages, "error": type(exc).__name__})
            continue
        rows.append({"batch": batch, "context": context, "block_t": bt, "waves": waves, "num_warps": warps,
                     "num_stages": stages, "programs": batch * splits, "us": us})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1x32768,1x131072,8x32768")
    ap.add_argument("--out", default=None)
    ap.add_argument("--check", action="store_true", help="check against PyTorch in the interpreter and exit")
    args = ap.parse_args()
    if args.check:
        return check()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
              "rows": []}
    for case in args.cases.split(","):
        batch, context = map(int, case.split("x"))
        rows = probe(batch, context)
        result["rows"] += rows
        best = min((r for r in rows if "us" in r), key=lambda r: r["us"])
        print(f"{case}: whole-row middle attention, best {best['us']:.1f} us {best}", flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(result, fh, indent=1)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
