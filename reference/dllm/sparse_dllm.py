"""Sparse-dLLM: delayed bidirectional sparse caching with attention-guided eviction (arXiv 2508.02558, sec. 3).

As specified in docs/sparse-dllm.md. Inside each block:
- step 0: a dense forward, no cache;
- step 1 ("delayed" by one step, after the block's first tokens are decoded): a dense forward; in every layer,
  after RoPE, the out-of-block positions (prefix and masked suffix, in sequence order) are scored by the mean
  block query (eq. 4: s_j = mean_h  qbar_h . k_{h,j}, raw dot products, GQA keys shared by their query heads),
  smoothed by a 1-D max pool (kernel_size, stride 1), and one top-k of k = int((L - block_len) * keep_ratio)
  keeps positions across prefix and suffix together; their K/V are stored (one layer's indices for all heads);
- steps >= 2: only the block's tokens run (RoPE at their absolute positions); each layer attends the block's
  queries to the kept K/V plus the block's freshly computed K/V, bidirectionally. The kept cache is not updated
  within the block and is rebuilt at the next block's step 1.

Note on keep_ratio = 1: every out-of-block position is kept, but its K/V are those of step 1. In a one-layer model
those depend only on token ids (which do not change outside the block), so decoding equals vanilla exactly; with
more layers the cached K/V are one to block_len - 1 steps stale, as in any dual cache (Fast-dLLM), and tokens may
differ from vanilla. suites/methods/test_dllm_caches.py checks the first fact; the accuracy suite measures the
second.

Left padding (a key mask): the official code runs batch 1 without padding. Here padded positions score -inf before
the max pool (so they neither get kept ahead of a token nor lift a neighbour's score) and are masked in every
attention (impl torch only).
"""
from __future__ import annotations

import torch

import torch.nn.functional as F

from reference.dllm.attention_impl import block_attention, saliency
from reference.dllm.cache import CACHES, DecodeCache
from reference.dllm.graphs import GraphedSteps
from reference.dllm.model import DLLM, dense_attention


def masked_saliency(q_block: torch.Tensor, k: torch.Tensor, keep: int, kernel_size: int,
                    key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The saliency of reference/ops/sparse_dllm_saliency.py with the keys key_mask [B, S] marks False scoring -inf
    before the max pool: (scores [B, S], kept_idx [B, keep] ascending; ties to the lower position)."""
    b, hq, _, d = q_block.shape
    hkv = k.shape[1]
    acc = torch.promote_types(q_block.dtype, torch.float32)
    qbar = q_block.to(acc).mean(dim=2).view(b, hkv, hq // hkv, d)
    raw = torch.einsum("bkgd,bksd->bkgs", qbar, k.to(acc)).mean(dim=(1, 2)).masked_fill(~key_mask, float("-inf"))
    scores = F.max_pool1d(raw[:, None], kernel_size, stride=1, padding=kernel_size // 2)[:, 0] if raw.shape[1] else raw
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return scores, order[:, :keep].sort(dim=1).values


@CACHES.register("sparse_dllm")
class SparseDLLM(DecodeCache):
    order = 1
    presets = {"sparse_dllm": {"kernel_size": 3}}
    sweeps_keep_ratio = True

    def __init__(self, keep_ratio: float = 0.5, kernel_size: int = 3, impl: str = "torch", cuda_graphs: bool = False):
        super().__init__()
        if not 0 <= keep_ratio <= 1:
            raise ValueError(f"keep_ratio must lie in [0, 1], got {keep_ratio}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.keep_ratio, self.kernel_size, self.impl = keep_ratio, kernel_size, impl
        self._attend_fn = block_attention(impl, graphable=cuda_graphs)
        self.graphs = GraphedSteps(cuda_graphs)
        self._score_fn = saliency(impl)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.kept_idx: list[torch.Tensor] = []   # per layer [B, keep], indices into the out-of-block positions
        self.scores: list[torch.Tensor] = []     # per layer [B, S] smoothed saliency (kept for tests; not counted)
        self.kept_mask: list[torch.Tensor] = []  # per layer [B, 1, keep, 1]: the kept rows' key mask (padding only)

    def reset(self, model, x, prompt_len, timer=None, key_mask=None) -> None:
        if key_mask is not None and self.impl != "torch":
            raise ValueError(f"attention_mask with padding needs sparse_dllm impl 'torch' (impl {self.impl!r} "
                             "attends without a key mask)")
        super().reset(model, x, prompt_len, timer, key_mask)

    def clear(self) -> None:
        self.k, self.v, self.kept_idx, self.scores, self.kept_mask = [], [], [], [], []
        self.graphs.reset()

    def tensors(self) -> list[torch.Tensor]:
        return self.k + self.v

    def _store(self, buffers: list[torch.Tensor], layer: int, src: torch.Tensor, gidx: torch.Tensor) -> None:
        """Gather the kept rows into the layer's buffer, in place when its shape allows (CUDA graphs read it)."""
        shape = (*gidx.shape[:3], src.shape[3])
        if layer < len(buffers) and tuple(buffers[layer].shape) == shape and buffers[layer].dtype == src.dtype:
            torch.gather(src, 2, gidx, out=buffers[layer])
        elif layer < len(buffers):
            buffers[layer] = src.gather(2, gidx)
        else:
            buffers.append(src.gather(2, gidx))

    def _build(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Step 1, one layer: score and keep the out-of-block K/V; attention stays dense."""
        lo, hi = self.lo, self.hi
        k_out = torch.cat([k[:, :, :lo], k[:, :, hi:]], 2)  # what the saliency scores; V is gathered from v itself
        keep = int(k_out.shape[2] * self.keep_ratio)
        with self.timer.phase("score"):
            if self.key_mask is None:
                scores, idx = self._score_fn(q_block=q[:, :, lo:hi], k=k_out, keep=keep, kernel_size=self.kernel_size)
            else:
                mask_out = torch.cat([self.key_mask[:, :lo], self.key_mask[:, hi:]], 1)
                scores, idx = masked_saliency(q[:, :, lo:hi], k_out, keep, self.kernel_size, mask_out)
                self._store(self.kept_mask, layer, mask_out[:, None, :, None], idx[:, None, :, None])
            del k_out
            seq = idx + (idx >= lo) * (hi - lo)  # out-of-block index -> position in the sequence
            gidx = seq[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            self._store(self.k, layer, k, gidx)
            self._store(self.v, layer, v, gidx)
            self.kept_idx[layer:] = [idx]
            self.scores[layer:] = [scores]
        return dense_attention(q, k, v, self.key_mask)

    def step_logits(self, model: DLLM, x: torch.Tensor, step: int) -> torch.Tensor:
        lo, hi = self.lo, self.hi
        if step == 0:
            with self.timer.phase("dense"):
                return model(x, rows=self.rows, key_mask=self.key_mask)
        if step == 1:  # the kept buffers are overwritten layer by layer (in place when their shapes stay the same)
            self.builds[-1] += 1
            with self.timer.phase("dense"):
                logits = model(x, attend=self._build, rows=self.rows)
            self._track()
            return logits
        positions = torch.arange(lo, hi, device=x.device)

        def attend(layer, q, k, v):
            if self.key_mask is None:
                return self._attend_fn(q, k, v, self.k[layer], self.v[layer])
            mask = torch.cat([self.kept_mask[layer][:, 0, :, 0], torch.ones_like(self.key_mask[:, lo:hi])], 1)
            return dense_attention(q, torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2), mask)

        def block_step(ids, pos):
            return model(ids, positions=pos, attend=attend)

        key = (tuple(x.shape), hi - lo, tuple(self.k[0].shape))
        with self.timer.phase("sparse"):
            return self.lead_rows(self.graphs(key, block_step, x[:, lo:hi], positions))
