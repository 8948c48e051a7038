"""One decoding step's candidates x0 and their confidence, for the LLaDA and the Dream loop (reference/dllm/generate.py).

LLaDA (ML-GSAI/LLaDA at b7e9d5e, `generate.py`; NVlabs/Fast-dLLM at 24cc59e, `llada/generate.py`,
`get_transfer_index`): x0 = argmax of the logits, or at temperature T > 0 Gumbel-max sampling in float64 (argmax of
logits / T plus Gumbel noise, the same draw as the official exp(logits) / (-log u)^T); `low_confidence` ranks by the
probability of x0 under the *untempered* softmax of the logits, `random` by uniform noise. Options of the official
LLaDA loop: `logits_eos_inf` removes EOS from the logits before anything else; `confidence_eos_eot_inf` zeroes the
confidence of a candidate that is EoT (`eot_id`), and at temperature 0 also of one that is EOS (the official code sets
both logits to -inf after drawing x0, but at T > 0 its EOS assignment lands on the noisy copy, which is no longer
read). Deliberate deviations: the mask token is never a candidate (a trained model gives it ~0 probability; an
untrained one could otherwise "commit" a mask), and `tempered_confidence=True` ranks by softmax(logits / T), this
benchmark's earlier rule.

Dream (Ye et al., 2025; the block loops of OpenMOSS/Sparse-dLLM and Fast-dLLM, and Dream's own `sample_tokens`):
logits / T (T > 0), then the nucleus filter (top_p) and the top-k filter (top_k), both at any temperature as the
official code applies them (so at T = 0 they change the confidence, not x0); probabilities of the filtered logits;
x0 their argmax (T = 0) or a sample; confidence by `alg` (maskgit_plus: the probability of x0, topk_margin: p1 - p2,
entropy: minus the entropy). top_k keeps every logit at least the k-th largest (ties kept), as the official filter.
"""
from __future__ import annotations

import torch

NEG_INF = float("-inf")


def _gumbel_argmax(scaled: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(scaled.shape, dtype=torch.float64, generator=gen, device="cpu").to(scaled.device)
    return (scaled - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)


def _nucleus(scaled: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Logits outside the smallest set whose probability reaches top_p set to -inf (the first token always stays)."""
    if top_p is None or top_p >= 1:
        return scaled
    sorted_l, order = scaled.sort(dim=-1, descending=True)
    p = torch.softmax(sorted_l, -1)
    drop = p.cumsum(-1) - p > top_p
    return scaled.scatter(-1, order, sorted_l.masked_fill(drop, NEG_INF))


def _top_k(scaled: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Logits below the k-th largest of their row set to -inf (ties with it stay); None keeps all."""
    if top_k is None:
        return scaled
    kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
    return scaled.masked_fill(scaled < kth, NEG_INF)


def llada_step(logits: torch.Tensor, cfg, gen: torch.Generator | None, mask_id: int, eos_id: int):
    """(x0 [B, n], confidence [B, n] float64) of the LLaDA loop; cfg is a GenConfig."""
    logits = logits.to(torch.float64)
    logits[..., mask_id] = NEG_INF
    if cfg.logits_eos_inf:
        logits[..., eos_id] = NEG_INF
    t = cfg.temperature
    scaled = None if t == 0 else _nucleus(logits / t, cfg.top_p)
    x0 = logits.argmax(-1) if t == 0 else _gumbel_argmax(scaled, gen)
    if cfg.remasking == "random":
        return x0, torch.rand(x0.shape, dtype=torch.float64, generator=gen, device="cpu").to(x0.device)
    ranked = scaled if (t > 0 and cfg.tempered_confidence) else logits.clone()
    if cfg.confidence_eos_eot_inf:
        if cfg.eot_id is not None:
            ranked[..., cfg.eot_id] = NEG_INF
        if t == 0:
            ranked[..., eos_id] = NEG_INF
    return x0, torch.softmax(ranked, dim=-1).gather(-1, x0[..., None])[..., 0]


def dream_step(logits: torch.Tensor, cfg, gen: torch.Generator | None, mask_id: int):
    """(x0 [B, n], confidence [B, n] float64) of the Dream loop; cfg is a GenConfig."""
    logits = logits.to(torch.float64)
    logits[..., mask_id] = NEG_INF
    t = cfg.temperature
    scaled = _top_k(_nucleus(logits / t if t > 0 else logits, cfg.top_p), cfg.top_k)
    probs = torch.softmax(scaled, dim=-1)
    x0 = scaled.argmax(-1) if t == 0 else _gumbel_argmax(scaled, gen)
    if cfg.alg == "maskgit_plus":
        return x0, probs.gather(-1, x0[..., None])[..., 0]
    if cfg.alg == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        return x0, top2[..., 0] - top2[..., 1]
    return x0, (probs * torch.log(probs.clamp_min(1e-300))).sum(-1)  # minus the entropy
