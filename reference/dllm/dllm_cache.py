"""dLLM-Cache: adaptive feature caching with V-verify (Liu et al., arXiv 2506.06295, sec. 3).

Facts: docs/sparse-dllm.md. Per layer the cache holds, for every position, K and V
(after RoPE), the attention output (after Wo) and the MLP output. The prompt is refreshed every
`prompt_interval` steps (a dense forward over everything), the response (the generated span) every
`response_interval` steps (the response runs through the model against the cached prompt K/V). In between, each
layer recomputes only V for the response (V-verify), ranks response tokens by the cosine similarity of new and
cached V (mean over KV heads), and fully recomputes the `refresh_ratio` least similar ones (their q, k, v,
attention over all cached K/V, MLP), reusing the cached attention and MLP outputs of the others:
h <- h + A_cached(with the recomputed rows);  h <- h + F_cached(with the recomputed rows).
Steps are counted over the whole generation; step 0 is a full refresh. The cache is full-size (no eviction).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference.dllm.cache import CACHES, DecodeCache
from reference.dllm.model import DLLM, dense_attention


@CACHES.register("dllm_cache")
class DLLMCache(DecodeCache):
    order = 3
    presets = {"dllm_cache": {"prompt_interval": 100, "response_interval": 7, "refresh_ratio": 0.25}}

    def __init__(self, prompt_interval: int = 100, response_interval: int = 7, refresh_ratio: float = 0.25):
        super().__init__()
        if prompt_interval < 1 or response_interval < 1:
            raise ValueError(f"prompt_interval and response_interval must be >= 1, got {prompt_interval}, "
                             f"{response_interval}")
        if not 0 < refresh_ratio <= 1:
            raise ValueError(f"refresh_ratio must lie in (0, 1], got {refresh_ratio}")
        self.prompt_interval, self.response_interval, self.refresh_ratio = (prompt_interval, response_interval,
                                                                             refresh_ratio)

    def clear(self) -> None:
        self.K, self.V, self.A, self.F = [], [], [], []
        self.r0 = None
        self.t = 0

    def tensors(self) -> list[torch.Tensor]:
        return self.K + self.V + self.A + self.F

    def begin_block(self, lo: int, hi: int) -> None:
        super().begin_block(lo, hi)
        if self.r0 is None:
            self.r0 = lo  # the response starts at the first window (P, or P - 1 for Dream's shifted logits)

    def _run(self, model: DLLM, x: torch.Tensor, start: int) -> torch.Tensor:
        """Positions start.. through every layer, storing their features; attention over cached K/V before start."""
        full = start == 0
        if full:
            self.K, self.V, self.A, self.F = [], [], [], []
            self.builds[-1] += 1
        positions = torch.arange(start, x.shape[1], device=x.device)
        cos, sin = model.rope(positions)
        h = model.embed(x[:, start:])
        for i, layer in enumerate(model.layers):
            q, k, v = layer.qkv(h, cos, sin)
            if full:
                self.K.append(k.clone())
                self.V.append(v.clone())
            else:
                self.K[i][:, :, start:] = k
                self.V[i][:, :, start:] = v
            a = layer.attn_out(dense_attention(q, self.K[i], self.V[i]))
            h = h + a
            f = layer.mlp(h)
            h = h + f
            if full:
                self.A.append(a.clone())
                self.F.append(f.clone())
            else:
                self.A[i][:, start:] = a
                self.F[i][:, start:] = f
        return h

    def _partial(self, model: DLLM, x: torch.Tensor) -> torch.Tensor:
        """V-verify: recompute the least similar response tokens of each layer, reuse the rest."""
        r0 = self.r0
        h = model.embed(x[:, r0:])
        b, r, d = h.shape
        n_sel = max(1, math.ceil(self.refresh_ratio * r))
        for i, layer in enumerate(model.layers):
            v_new = layer.value(h)                                               # [B, Hkv, R, D]
            sim = F.cosine_similarity(v_new.float(), self.V[i][:, :, r0:].float(), dim=-1).mean(1)  # [B, R]
            sel = sim.topk(n_sel, dim=1, largest=False).indices.sort(1).values  # [B, n]
            cos, sin = model.rope((r0 + sel).flatten())
            cos, sin = cos.view(b, 1, n_sel, -1), sin.view(b, 1, n_sel, -1)
            h_sel = h.gather(1, sel[..., None].expand(-1, -1, d))
            q, k, v = layer.qkv(h_sel, cos, sin)
            kv_idx = (r0 + sel)[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            self.K[i].scatter_(2, kv_idx, k)
            self.V[i].scatter_(2, kv_idx, v)
            row_idx = (r0 + sel)[..., None].expand(-1, -1, d)
            self.A[i].scatter_(1, row_idx, layer.attn_out(dense_attention(q, self.K[i], self.V[i])))
            h = h + self.A[i][:, r0:]
            self.F[i].scatter_(1, row_idx, layer.mlp(h.gather(1, sel[..., None].expand(-1, -1, d))))
            h = h + self.F[i][:, r0:]
        return h

    def step_logits(self, model: DLLM, x: torch.Tensor, step: int) -> torch.Tensor:
        t, r0 = self.t, self.r0
        self.t += 1
        rows = slice(self.lo - r0, self.hi - r0)
        if t % self.prompt_interval == 0:
            with self.timer.phase("dense"):
                h = self._run(model, x, 0)[:, r0:]
        elif t % self.response_interval == 0:
            with self.timer.phase("refresh"):
                h = self._run(model, x, r0)
        else:
            with self.timer.phase("partial"):
                h = self._partial(model, x)
        self._track()
        return model.logits(h[:, rows])
