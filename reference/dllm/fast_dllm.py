"""Fast-dLLM's block-wise KV cache, prefix or dual (Wu et al., arXiv 2505.22618, sec. 3.2).

Facts: docs/sparse-dllm.md. At each block's step 0 a dense forward refreshes the cache
(once per block, no eviction):
- `prefix`: keeps the K/V of every position before the window; later steps recompute the window and everything
  after it (the masked suffix) and attend to cat(prefix K/V, their own K/V);
- `dual`: also keeps the masked suffix's K/V; later steps recompute only the window.
Parallel decoding (confidence threshold) is an option of the generation loop (GenConfig.threshold), usable with any
cache; Fast-dLLM's own setting is threshold 0.9.

Forwards per block: the benchmark stops a block as soon as it is complete, so it counts only forwards that can
commit a token. The official cached loops (NVlabs/Fast-dLLM at 24cc59e, `llada/generate.py`,
`generate_with_prefix_cache` / `generate_with_dual_cache`) always run a second forward after step 0, even when step 0
completed the block (common with a threshold); `extra_forward=True` does the same. It changes no token, only the
number of forwards and the time.
"""
from __future__ import annotations

import torch

from reference.dllm.cache import CACHES, DecodeCache
from reference.dllm.graphs import GraphedSteps
from reference.dllm.model import DLLM, dense_attention

MODES = ("prefix", "dual")


@CACHES.register("fast_dllm")
class FastDLLM(DecodeCache):
    order = 2
    presets = {"fast_dllm_prefix": {"mode": "prefix"}, "fast_dllm_dual": {"mode": "dual"}}

    def __init__(self, mode: str = "prefix", cuda_graphs: bool = False, extra_forward: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(extra_forward, bool):
            raise ValueError(f"extra_forward must be a bool, got {extra_forward!r}")
        self.mode = mode
        self.min_block_steps = 2 if extra_forward else 1
        self.graphs = GraphedSteps(cuda_graphs)  # one capture per block: the cache is new at every block
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.k_suffix: list[torch.Tensor] = []
        self.v_suffix: list[torch.Tensor] = []

    def clear(self) -> None:
        self.k, self.v, self.k_suffix, self.v_suffix = [], [], [], []
        self.graphs.reset()

    def tensors(self) -> list[torch.Tensor]:
        return self.k + self.v + self.k_suffix + self.v_suffix

    def _build(self, layer: int, q, k, v):
        lo, hi = self.lo, self.hi
        self.k.append(k[:, :, :lo].clone())
        self.v.append(v[:, :, :lo].clone())
        if self.mode == "dual":
            self.k_suffix.append(k[:, :, hi:].clone())
            self.v_suffix.append(v[:, :, hi:].clone())
        return dense_attention(q, k, v, self.key_mask)

    def step_logits(self, model: DLLM, x: torch.Tensor, step: int) -> torch.Tensor:
        lo, hi = self.lo, self.hi
        if step == 0:
            self.clear()
            self.builds[-1] += 1
            with self.timer.phase("dense"):
                logits = model(x, attend=self._build, rows=self.rows)
            self._track()
            return logits
        end = hi if self.mode == "dual" else x.shape[1]
        positions = torch.arange(lo, end, device=x.device)
        key_mask = self.key_mask  # the keys below are every position in order, in both modes

        def attend(layer, q, k, v):
            ks, vs = [self.k[layer], k], [self.v[layer], v]
            if self.mode == "dual":
                ks.append(self.k_suffix[layer])
                vs.append(self.v_suffix[layer])
            return dense_attention(q, torch.cat(ks, 2), torch.cat(vs, 2), key_mask)

        def cached_step(ids, pos):
            return model(ids, positions=pos, attend=attend, rows=slice(0, hi - lo))

        with self.timer.phase("cached"):
            return self.lead_rows(self.graphs((lo, hi, end), cached_step, x[:, lo:end], positions))
