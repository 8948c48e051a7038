"""FlashInfer's decode on the full cache: the kernel benchmark's baseline `flashinfer`, where the package imports.

Timed on the `decode_attention` op's benchmark inputs (one query token over the whole cache; seq_lens are not read)
and checked against its reference; a baseline, not an implementation (the conformance suite does not check
someone else's kernel). Without the package its cells are recorded as `missing: flashinfer is not installed ...`.
"""
from __future__ import annotations

import torch

from reference.bench_spec import ImplBench, Missing
from reference.registry import register_baseline


def prepare(inputs: dict, backend: str | None = None):
    """FlashInfer's decode on dense [B, Hkv, L, D] K/V, as run(inputs) -> [B, Hq, 1, D]; raises Missing without it.

    Batch 1: `single_decode_with_kv_cache` (K/V as [L, Hkv, D] views, layout HND = [Hkv, L, D]). Larger batches:
    `BatchDecodeWithPagedKVCacheWrapper` with one page of L tokens per sequence, which is exactly the HND paged
    layout [pages, Hkv, page_size, D] of our tensors; its host-side `plan` runs here, once, outside the timing.
    """
    try:
        import flashinfer
    except ImportError as exc:
        raise Missing(f"flashinfer is not installed on this machine ({exc})") from None

    q = inputs["q"]
    b, hq, _, d = q.shape
    hkv, length = inputs["k"].shape[1], inputs["k"].shape[2]
    if b == 1:
        return lambda x: flashinfer.single_decode_with_kv_cache(
            x["q"][0, :, 0], x["k"][0], x["v"][0], kv_layout="HND").reshape(1, hq, 1, d)
    workspace = torch.empty(128 << 20, dtype=torch.uint8, device=q.device)
    wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "HND")
    pages = torch.arange(b + 1, dtype=torch.int32, device=q.device)
    wrapper.plan(pages, pages[:-1], torch.full((b,), length, dtype=torch.int32, device=q.device), hq, hkv, d, length,
                 q_data_type=q.dtype, kv_data_type=inputs["k"].dtype)
    return lambda x: wrapper.run(x["q"][:, :, 0], (x["k"], x["v"])).reshape(b, hq, 1, d)


register_baseline("decode_attention", "flashinfer", ImplBench(
    task="flashinfer", label="flashinfer", order=4, prepare=prepare, capturable=True))
