"""dLLM-Cache: adaptive feature caching with V-verify (Liu et al., arXiv 2506.06295, sec. 3).

Facts: docs/sparse-dllm.md. Per layer the cache holds, for every position, K and V (after RoPE), the attention
output (after Wo) and the MLP output. Steps are counted over the whole generation (step 0 refreshes everything).
The prompt is refreshed every `prompt_interval` steps and the response (every position from the first block on)
every `response_interval` steps; at the other steps the response is updated by V-verify: each layer recomputes V
for every response token, ranks the tokens by the cosine similarity of new and cached V, and recomputes the
`refresh_ratio` least similar ones (q, k, attention over all keys, MLP), reusing the cached attention and MLP
outputs of the others: h <- h + A_cached(with the recomputed rows); h <- h + F_cached(with the recomputed rows).

`rule="official"` (the default) is maomaocun/dLLM-cache at 17235bf, `dllm_cache/hooks/cache_hook_LLaDA.py`:
- layer 0 is fully recomputed (prompt and response) at every step;
- V-verify takes the cosine over a token's whole V row (every KV head together) and recomputes int(R * ratio)
  tokens (none when that is 0); the V of every response token is replaced by the new V, K only for those tokens;
- a step that refreshes the prompt but not the response recomputes the prompt's rows in every layer and runs
  V-verify on the response (it does not refresh the response fully).
`rule="legacy"` is this benchmark's first reading of the paper, kept to compare with records made under it: every
layer takes part in V-verify, the cosine is averaged over KV heads, ceil(R * ratio) tokens (at least one) are
recomputed and only their V is replaced, and a prompt refresh recomputes everything.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference.dllm.cache import CACHES, DecodeCache
from reference.dllm.model import DLLM, Layer, dense_attention

RULES = ("official", "legacy")


@CACHES.register("dllm_cache")
class DLLMCache(DecodeCache):
    order = 3
    presets = {"dllm_cache": {"prompt_interval": 100, "response_interval": 7, "refresh_ratio": 0.25,
                              "rule": "official"}}

    def __init__(self, prompt_interval: int = 100, response_interval: int = 7, refresh_ratio: float = 0.25,
                 rule: str = "official"):
        super().__init__()
        if prompt_interval < 1 or response_interval < 1:
            raise ValueError(f"prompt_interval and response_interval must be >= 1, got {prompt_interval}, "
                             f"{response_interval}")
        if not 0 < refresh_ratio <= 1:
            raise ValueError(f"refresh_ratio must lie in (0, 1], got {refresh_ratio}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.prompt_interval, self.response_interval, self.refresh_ratio = (prompt_interval, response_interval,
                                                                             refresh_ratio)
        self.rule = rule

    def clear(self) -> None:
        self.K, self.V, self.A, self.F = [], [], [], []
        self.r0 = None
        self.t = 0
        self.refreshed: dict[int, torch.Tensor] = {}  # layer -> the response tokens V-verify recomputed last

    def tensors(self) -> list[torch.Tensor]:
        return self.K + self.V + self.A + self.F

    def begin_block(self, lo: int, hi: int, lead: int = 0) -> None:
        super().begin_block(lo, hi, lead)
        if self.r0 is None:
            self.r0 = lo - lead  # the response starts at the first block's first row (P; Dream reads P - 1)

    # ------------------------------------------------------------------ pieces shared by both rules
    def _attend(self, q: torch.Tensor, i: int) -> torch.Tensor:
        """Attention of queries q over every cached key and value of layer i."""
        return dense_attention(q, self.K[i], self.V[i], self.key_mask)

    def _layer(self, model: DLLM, i: int, h: torch.Tensor, start: int, full: bool) -> torch.Tensor:
        """Layer i recomputed for positions start.. (h holds their hidden states); stores its K, V, A, F."""
        layer = model.layers[i]
        cos, sin = model.rope(torch.arange(start, start + h.shape[1], device=h.device))
        q, k, v = layer.qkv(h, cos, sin)
        if full:
            self.K[i:i + 1], self.V[i:i + 1] = [k.clone()], [v.clone()]
        else:
            self.K[i][:, :, start:] = k
            self.V[i][:, :, start:] = v
        a = layer.attn_out(self._attend(q, i))
        h = h + a
        f = layer.mlp(h)
        if full:
            self.A[i:i + 1], self.F[i:i + 1] = [a.clone()], [f.clone()]
        else:
            self.A[i][:, start:] = a
            self.F[i][:, start:] = f
        return h + f

    def _run(self, model: DLLM, x: torch.Tensor, start: int) -> torch.Tensor:
        """Recompute every layer for positions start.. against the cached K/V of the others; start 0 rebuilds."""
        if start == 0:
            self.builds[-1] += 1
        h = model.embed(x[:, start:])
        for i in range(len(model.layers)):
            h = self._layer(model, i, h, start, full=start == 0)
        return h

    def _recompute_rows(self, layer: Layer, model: DLLM, i: int, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """q, k (stored) and V of the tokens at absolute positions pos [B, n] (hidden states h [B, n, d]); returns q."""
        b, n, _ = h.shape
        cos, sin = model.rope(pos.flatten())
        d = cos.shape[-1]
        q, k, v = layer.qkv(h, cos.view(b, 1, n, d), sin.view(b, 1, n, d))
        idx = pos[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.K[i].scatter_(2, idx, k)
        self.V[i].scatter_(2, idx, v)
        return q

    @staticmethod
    def _scatter_rows(buf: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor) -> None:
        buf.scatter_(1, pos[..., None].expand(-1, -1, buf.shape[2]), rows)

    @staticmethod
    def _gather_rows(h: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return h.gather(1, sel[..., None].expand(-1, -1, h.shape[2]))

    # ------------------------------------------------------------------ the official rule
    def _select(self, v_new: torch.Tensor, v_old: torch.Tensor) -> torch.Tensor:
        """The int(R * ratio) response tokens whose new V row (all KV heads together) is least like the cached one,
        ascending: [B, n]."""
        b, _, r, _ = v_new.shape
        n = int(r * self.refresh_ratio)
        sim = F.cosine_similarity(v_new.transpose(1, 2).reshape(b, r, -1).float(),
                                  v_old.transpose(1, 2).reshape(b, r, -1).float(), dim=-1)
        return sim.topk(n, dim=1, largest=False).indices.sort(1).values

    def _verify(self, model: DLLM, i: int, h_resp: torch.Tensor, h_prompt: torch.Tensor | None) -> torch.Tensor:
        """One layer of V-verify for the response (hidden states h_resp), with the prompt's rows recomputed too when
        h_prompt is given; returns the layer's output for the rows it was given (prompt first)."""
        layer, r0 = model.layers[i], self.r0
        v_new = layer.value(h_resp)
        sel = self._select(v_new, self.V[i][:, :, r0:])
        self.refreshed[i] = sel
        self.V[i][:, :, r0:] = v_new  # every response token's V is replaced; K only for the selected tokens
        pos = r0 + sel
        q = self._recompute_rows(layer, model, i, self._gather_rows(h_resp, sel), pos)
        if h_prompt is not None:
            cos, sin = model.rope(torch.arange(r0, device=h_prompt.device))
            qp, kp, vp = layer.qkv(h_prompt, cos, sin)
            self.K[i][:, :, :r0], self.V[i][:, :, :r0] = kp, vp
            q = torch.cat([qp, q], 2)
        a = layer.attn_out(self._attend(q, i))
        if h_prompt is not None:
            self.A[i][:, :r0] = a[:, :r0]
        self._scatter_rows(self.A[i], pos, a[:, a.shape[1] - sel.shape[1]:])
        h_resp = h_resp + self.A[i][:, r0:]
        mlp_in = self._gather_rows(h_resp, sel)
        if h_prompt is not None:
            h_prompt = h_prompt + self.A[i][:, :r0]
            mlp_in = torch.cat([h_prompt, mlp_in], 1)
        f = layer.mlp(mlp_in)
        if h_prompt is not None:
            self.F[i][:, :r0] = f[:, :r0]
        self._scatter_rows(self.F[i], pos, f[:, f.shape[1] - sel.shape[1]:])
        h_resp = h_resp + self.F[i][:, r0:]
        return h_resp if h_prompt is None else torch.cat([h_prompt + self.F[i][:, :r0], h_resp], 1)

    def _official(self, model: DLLM, x: torch.Tensor, prompt: bool, response: bool) -> torch.Tensor:
        """A step that is not a full refresh: layer 0 recomputed everywhere, then each layer by the step's kind."""
        r0 = self.r0
        h = self._layer(model, 0, model.embed(x), 0, full=False)
        if not prompt:
            h = h[:, r0:]
        for i in range(1, len(model.layers)):
            if response:  # the response against the cached prompt K/V
                h = self._layer(model, i, h, r0, full=False)
            else:  # V-verify, with the prompt's rows too when the prompt is refreshed
                h = self._verify(model, i, h[:, r0:] if prompt else h, h[:, :r0] if prompt else None)
        return h[:, r0:] if prompt else h

    # ------------------------------------------------------------------ the legacy rule
    def _partial_legacy(self, model: DLLM, x: torch.Tensor) -> torch.Tensor:
        """V-verify in every layer: the ceil(R * ratio) tokens least similar by the cosine averaged over KV heads."""
        r0 = self.r0
        h = model.embed(x[:, r0:])
        n_sel = max(1, math.ceil(self.refresh_ratio * h.shape[1]))
        for i, layer in enumerate(model.layers):
            sim = F.cosine_similarity(layer.value(h).float(), self.V[i][:, :, r0:].float(), dim=-1).mean(1)
            sel = sim.topk(n_sel, dim=1, largest=False).indices.sort(1).values  # [B, n]
            self.refreshed[i] = sel
            q = self._recompute_rows(layer, model, i, self._gather_rows(h, sel), r0 + sel)
            self._scatter_rows(self.A[i], r0 + sel, layer.attn_out(self._attend(q, i)))
            h = h + self.A[i][:, r0:]
            self._scatter_rows(self.F[i], r0 + sel, layer.mlp(self._gather_rows(h, sel)))
            h = h + self.F[i][:, r0:]
        return h

    def step_logits(self, model: DLLM, x: torch.Tensor, step: int) -> torch.Tensor:
        t, r0 = self.t, self.r0
        self.t += 1
        rows = slice(self.lo - self.lead - r0, self.hi - r0)
        prompt, response = t % self.prompt_interval == 0, t % self.response_interval == 0
        if prompt and (response or self.rule == "legacy"):
            with self.timer.phase("dense"):
                h = self._run(model, x, 0)[:, r0:]
        elif response and self.rule == "legacy":
            with self.timer.phase("refresh"):
                h = self._run(model, x, r0)
        elif self.rule == "legacy":
            with self.timer.phase("partial"):
                h = self._partial_legacy(model, x)
        else:
            with self.timer.phase("prompt" if prompt else "refresh" if response else "partial"):
                h = self._official(model, x, prompt, response)
        self._track()
        return model.logits(h[:, rows])
