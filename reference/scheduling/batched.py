"""One speculative step of several sessions in one target pass: the real counterpart of the simulator's
continuous batching (reference/scheduling/simulator.py).

Each session keeps its own KV cache between iterations (a request not picked keeps its KV, as the simulator's
resident requests do; the batch changes every iteration). For a step, the sessions' caches are left-padded to
the longest and stacked; every session's input is its last token + its draft, right-padded to 1 + draft_len; an
attention mask hides the left padding and positions continue each session's own sequence, so each row computes
what its session alone would (up to floating-point reduction order). After the pass each row's cache is cut back
out (padding dropped) and cropped to its accepted length by `SpecSession.commit`. Right-padded inputs come after
a row's real tokens, so causal attention keeps them from touching the real tokens' logits.
"""
from __future__ import annotations

import time

import torch
from transformers import DynamicCache

from reference.scheduling.speculative import SpecSession, StepRecord


def _stack(caches: list[DynamicCache], lengths: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    longest = max(lengths)
    layers = []
    for i in range(len(caches[0].layers)):
        ks, vs = [], []
        for cache, n in zip(caches, lengths):
            k, v = cache.layers[i].keys, cache.layers[i].values
            pad = longest - n
            ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)) if pad else k)
            vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)) if pad else v)
        layers.append((torch.cat(ks), torch.cat(vs)))
    return layers


@torch.inference_mode()
def batched_step(sessions: list[SpecSession]) -> list[StepRecord]:
    """One speculative step of every session (same engine, none finished) with one target pass; their records.
    A record's draft_s is its own proposal's time, verify_s the whole batch's pass (what the step waited for)."""
    if not sessions:
        raise ValueError("sessions must not be empty")
    engine = sessions[0].engine
    if any(s.engine is not engine for s in sessions) or any(s.done for s in sessions):
        raise ValueError("sessions must share one engine and none may be finished")
    if len(sessions) == 1:
        return [sessions[0].step()]
    for s in sessions:
        s.prefill()
    drafts, draft_s = [], []
    for s in sessions:
        t0 = time.perf_counter()
        drafts.append(s.propose())
        draft_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    g = engine.draft_len
    lengths = [s._target_cache.get_seq_length() for s in sessions]
    longest = max(lengths)
    pad_id = 0
    ids = torch.tensor([s.ids[-1:] + d + [pad_id] * (g - len(d)) for s, d in zip(sessions, drafts)],
                       device=engine.device)
    mask = torch.zeros(len(sessions), longest + g + 1, dtype=torch.long, device=engine.device)
    for b, n in enumerate(lengths):
        mask[b, longest - n:] = 1
    positions = torch.tensor([[n + j for j in range(g + 1)] for n in lengths], device=engine.device)
    cache = DynamicCache(ddp_cache_data=_stack([s._target_cache for s in sessions], lengths))
    out = engine.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                       **{engine._cache_kwarg: cache})
    targets = out.logits.argmax(-1).tolist()
    for b, (s, n) in enumerate(zip(sessions, lengths)):
        s._target_cache = DynamicCache(ddp_cache_data=[
            (layer.keys[b:b + 1, :, longest - n:], layer.values[b:b + 1, :, longest - n:]) for layer in cache.layers])
    verify_s = time.perf_counter() - t0
    return [s.commit(d, t, ds, verify_s) for s, d, t, ds in zip(sessions, drafts, targets, draft_s)]
