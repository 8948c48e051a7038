"""PyTorch SDPA on the full cache, restricted to one backend: the kernel benchmark's baseline `sdpa_flash`.

Timed on the `decode_attention` op's benchmark inputs (one query token over `context` cached tokens; seq_lens, all
equal to the cache length, are not read) and checked against its reference, but registered as a baseline, not as an
implementation: it ignores seq_lens, so the conformance suite does not check it. GQA through SDPA's `enable_gqa`;
where a torch refuses that, the G query heads of a KV group are passed as the G query rows of that KV head (exact
for one decode token, and each KV head is still read once). The backend is chosen once per shape and run, the first
of SDPA_CANDIDATES that runs (flash first); records name it in params["backend"], e.g. "FLASH_ATTENTION/enable_gqa".
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from reference.bench_spec import ImplBench, Missing
from reference.registry import register_baseline

SDPA_CANDIDATES = (("FLASH_ATTENTION", "enable_gqa"), ("FLASH_ATTENTION", "packed_gqa"),
                   ("EFFICIENT_ATTENTION", "packed_gqa"))


def sdpa_decode(q, k, v, gqa: str):
    """Decode attention through F.scaled_dot_product_attention (call inside `sdpa_kernel`): out [B, Hq, 1, D].

    gqa "enable_gqa": SDPA's own GQA. "packed_gqa": for one query token, the G query heads of a KV group are the
    G query rows of that KV head (no mask: a decode token sees every key), so each KV head is read once.
    """
    if gqa == "enable_gqa":
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=q.shape[1] != k.shape[1])
    b, hq, lq, d = q.shape
    hkv = k.shape[1]
    if lq != 1:
        raise ValueError(f"packed GQA holds for one query token, got Lq={lq}")
    out = F.scaled_dot_product_attention(q.reshape(b, hkv, hq // hkv, d), k, v)
    return out.reshape(b, hq, 1, d)


def sdpa_backend(backend: str | None):
    """`sdpa_kernel` of a resolved backend ("FLASH_ATTENTION/enable_gqa"); nothing without one."""
    if not backend:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(getattr(SDPBackend, backend.split("/")[0]))


def resolve_backend(inputs: dict) -> tuple[str | None, str]:
    """The first backend/GQA mode of SDPA_CANDIDATES that runs these (small) inputs: ("FLASH_ATTENTION/enable_gqa",
    notes), or (None, notes) when none does; notes say why each candidate was refused."""
    notes = []
    for backend, gqa in SDPA_CANDIDATES:
        try:
            with sdpa_backend(backend):
                sdpa_decode(inputs["q"], inputs["k"], inputs["v"], gqa)
            if inputs["q"].is_cuda:
                torch.cuda.synchronize()
            return f"{backend}/{gqa}", "; ".join(notes)
        except (RuntimeError, TypeError, ValueError) as exc:
            notes.append(f"{backend}/{gqa}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")
    return None, "; ".join(notes)


def prepare(inputs: dict, backend: str | None):
    """run(inputs) -> [B, Hq, 1, D] with the resolved backend's GQA mode; Missing when no backend runs the shape."""
    if backend is None:
        raise Missing("no SDPA backend runs this shape (see the run's sdpa notes)")
    gqa = backend.split("/")[1]
    return lambda x: sdpa_decode(x["q"], x["k"], x["v"], gqa)


register_baseline("decode_attention", "sdpa_flash", ImplBench(
    task="sdpa_flash", label="torch-sdpa-flash", order=0, prepare=prepare, capturable=True, resolve=resolve_backend,
    backend_key="sdpa", context=sdpa_backend))
