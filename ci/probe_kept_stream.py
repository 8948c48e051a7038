"""How fast can a decode kernel stream the Fourier cache's kept middle channels? A GPU probe, timing only.

Both coefficient-space kernels read the kept K/V rows of the middle one KV head at a time: a program owns
(sequence, KV head, token range) and loads its head's run of each row through a window aligned to 8 channels
(`kept_runs`). A head's window is 40-48 channels (80-96 bytes) of a row of ~320: it touches 3-4 of the row's
32-byte sectors, and neighbouring heads share a sector at each boundary. The other way is one program per
(sequence, token range) that loads whole rows (every head's channels) and serves all query heads from them
(block-diagonal query tiles). This probe times the two access patterns alone (loads and a sum, no attention) on
the benchmark's layout (LLaMA-3-8B, bf16, random kept sets rounded per head to 8, rows padded to 64), beside a
device copy of the same rows, and reports GB/s of the kept bytes each pattern must read:

    PYTHONPATH=. python ci/probe_kept_stream.py [--cases 1x32768,1x131072,8x32768] [--out probe.json]
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch
import triton
import triton.language as tl

from harness.gpu_timing import bench_ms, copy_bandwidth_gbs
from reference.ops.fourier_cache import make_fourier_cache


@triton.jit
def _per_head(KM, VM, KS, VS, OUT, mid_len, skb, skt, svb, svt, Hkv, tiles_per_split,
              BLOCK_T: tl.constexpr, BLOCK_KD: tl.constexpr, BLOCK_VD: tl.constexpr):
    """One program per (sequence x KV head, split): the head's aligned windows of its tokens' rows."""
    bh = tl.program_id(0)
    split = tl.program_id(1)
    b = bh // Hkv
    h = bh % Hkv
    ks = tl.multiple_of(tl.load(KS + h) // 8 * 8, 8)
    vs = tl.multiple_of(tl.load(VS + h) // 8 * 8, 8)
    kw = tl.arange(0, BLOCK_KD) < (tl.load(KS + h + 1) - ks + 7) // 8 * 8
    vw = tl.arange(0, BLOCK_VD) < (tl.load(VS + h + 1) - vs + 7) // 8 * 8
    acc = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for tile in range(split * tiles_per_split, (split + 1) * tiles_per_split):
        ts = tile * BLOCK_T + tl.arange(0, BLOCK_T)
        ok = ts < mid_len
        k = tl.load(KM + b * skb + ts[:, None] * skt + (ks + tl.arange(0, BLOCK_KD))[None, :],
                    mask=ok[:, None] & kw[None, :], other=0.0)
        v = tl.load(VM + b * svb + ts[:, None] * svt + (vs + tl.arange(0, BLOCK_VD))[None, :],
                    mask=ok[:, None] & vw[None, :], other=0.0)
        acc += tl.sum(k.to(tl.float32), 1) + tl.sum(v.to(tl.float32), 1)
    tl.store(OUT + bh * tl.num_programs(1) + split, tl.sum(acc, 0))


@triton.jit
def _whole_rows(KM, VM, OUT, mid_len, skb, skt, svb, svt, k_width, v_width, tiles_per_split,
                BLOCK_T: tl.constexpr, BLOCK_KR: tl.constexpr, BLOCK_VR: tl.constexpr):
    """One program per (sequence, split): whole kept rows (every head's channels) of its tokens."""
    b = tl.program_id(0)
    split = tl.program_id(1)
    kc = tl.arange(0, BLOCK_KR)
    vc = tl.arange(0, BLOCK_VR)
    acc = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for tile in range(split * tiles_per_split, (split + 1) * tiles_per_split):
        ts = tile * BLOCK_T + tl.arange(0, BLOCK_T)
        ok = ts < mid_len
        k = tl.load(KM + b * skb + ts[:, None] * skt + kc[None, :], mask=ok[:, None] & (kc < k_width)[None, :],
                    other=0.0)
        v = tl.load(VM + b * svb + ts[:, None] * svt + vc[None, :], mask=ok[:, None] & (vc < v_width)[None, :],
                    other=0.0)
        acc += tl.sum(k.to(tl.float32), 1) + tl.sum(v.to(tl.float32), 1)
    tl.store(OUT + b * tl.num_programs(1) + split, tl.sum(acc, 0))


def _splits(programs: int, tiles: int, waves: float, sms: int) -> tuple[int, int]:
    splits = max(1, min(tiles, round(waves * sms / programs)))
    per = triton.cdiv(tiles, splits)
    return triton.cdiv(tiles, per), per


def probe(batch: int, context: int, sms: int) -> list[dict]:
    c = make_fourier_cache(batch, 32, 8, 128, context, 512, dtype=torch.bfloat16, device="cuda", kept_pad=64,
                           kept_align=8)
    km, vm = c["k_mid_kept"], c["v_mid_kept"]
    mid, hkv = km.shape[1], 8
    heads = torch.arange(hkv + 1, device="cuda", dtype=c["k_kept_idx"].dtype) * 128
    ks = torch.searchsorted(c["k_kept_idx"], heads).to(torch.int32)
    vs = torch.searchsorted(c["v_kept_idx"], heads).to(torch.int32)
    kept_bytes = (km.shape[2] + vm.shape[2]) * mid * batch * km.element_size()
    rows_bytes = (km.stride(1) + vm.stride(1)) * mid * batch * km.element_size()
    widths = [b - a for a, b in zip(ks.tolist(), ks.tolist()[1:])] + [b - a for a, b in zip(vs.tolist(), vs.tolist()[1:])]
    out = torch.empty(batch * hkv * 4096, device="cuda")
    rows = []

    def record(pattern, ms, **knobs):
        rows.append({"batch": batch, "context": context, "pattern": pattern, "us": ms * 1e3,
                     "kept_gbs": kept_bytes / ms / 1e6, "kept_bytes": kept_bytes, **knobs})

    block_kd = triton.next_power_of_2(max(widths) + 14)
    for bt, waves, warps in itertools.product((32, 64, 128), (1, 2, 4, 8), (4, 8)):
        tiles = triton.cdiv(mid, bt)
        splits, per = _splits(batch * hkv, tiles, waves, sms)
        fn = lambda: _per_head[(batch * hkv, splits)](  # noqa: E731
            km, vm, ks, vs, out, mid, km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), hkv, per,
            BLOCK_T=bt, BLOCK_KD=block_kd, BLOCK_VD=block_kd, num_warps=warps)
        record("per head (today's kernels)", bench_ms(fn), block_t=bt, waves=waves, num_warps=warps,
               programs=batch * hkv * splits)
        splits, per = _splits(batch, tiles, waves, sms)
        fn = lambda: _whole_rows[(batch, splits)](  # noqa: E731
            km, vm, out, mid, km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), km.stride(1), vm.stride(1), per,
            BLOCK_T=bt, BLOCK_KR=triton.next_power_of_2(km.stride(1)), BLOCK_VR=triton.next_power_of_2(vm.stride(1)),
            num_warps=warps)
        record("whole rows", bench_ms(fn), block_t=bt, waves=waves, num_warps=warps, programs=batch * splits,
               rows_bytes=rows_bytes)
    flat = torch.empty(rows_bytes // 2, dtype=torch.bfloat16, device="cuda")
    src = torch.randn_like(flat)
    ms = bench_ms(lambda: flat.copy_(src))
    rows.append({"batch": batch, "context": context, "pattern": "device copy of the padded rows", "us": ms * 1e3,
                 "kept_gbs": rows_bytes / ms / 1e6, "rows_bytes": rows_bytes})
    return rows


def check(device: str = "cpu") -> None:
    """Both patterns' sums equal torch's over the same bytes (a probe that reads the wrong bytes times nothing):
    run in the interpreter (TRITON_INTERPRET=1) on a small cache."""
    c = make_fourier_cache(1, 32, 8, 128, 1024 + 300, 512, dtype=torch.float16, device=device, kept_pad=64,
                           kept_align=8)
    km, vm = c["k_mid_kept"], c["v_mid_kept"]
    mid = km.shape[1]
    heads = torch.arange(9, device=device, dtype=c["k_kept_idx"].dtype) * 128
    ks = torch.searchsorted(c["k_kept_idx"], heads).to(torch.int32)
    vs = torch.searchsorted(c["v_kept_idx"], heads).to(torch.int32)
    out = torch.zeros(8 * 3, device=device)
    _per_head[(8, 3)](km, vm, ks, vs, out, mid, km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), 8, 2,
                      BLOCK_T=64, BLOCK_KD=64, BLOCK_VD=64)
    want = km.float().sum() + vm.float().sum()  # kept_align 8: every head's window is exactly its run
    assert torch.allclose(out.sum(), want, rtol=1e-4), (out.sum(), want)
    out.zero_()
    _whole_rows[(1, 3)](km, vm, out, mid, km.stride(0), km.stride(1), vm.stride(0), vm.stride(1), km.shape[2],
                        vm.shape[2], 2, BLOCK_T=64, BLOCK_KR=512, BLOCK_VR=512)
    assert torch.allclose(out.sum(), want, rtol=1e-4), (out.sum(), want)
    print("both patterns read exactly the kept bytes")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1x32768,1x131072,8x32768")
    ap.add_argument("--out", default=None)
    ap.add_argument("--check", action="store_true", help="check the kernels' sums in the interpreter and exit")
    args = ap.parse_args()
    if args.check:
        return check()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
              "copy_bandwidth_gbs": copy_bandwidth_gbs(), "rows": []}
    for case in args.cases.split(","):
        batch, context = map(int, case.split("x"))
        rows = probe(batch, context, sms)
        result["rows"] += rows
        for pattern in dict.fromkeys(r["pattern"] for r in rows):
            best = min((r for r in rows if r["pattern"] == pattern), key=lambda r: r["us"])
            print(f"{case} {pattern}: best {best['us']:.1f} us, {best['kept_gbs']:.0f} GB/s of kept bytes "
                  f"({ {k: best[k] for k in ('block_t', 'waves', 'num_warps', 'programs') if k in best} })",
                  flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(result, fh, indent=1)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
