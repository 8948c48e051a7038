"""The generation loops of masked-diffusion LMs, one loop for every caching strategy.

LLaDA (arXiv 2502.09992, Algorithm 5 "low-confidence remasking", with semi-autoregressive blocks; facts in
docs/sparse-dllm.md): x = [prompt | MASK * gen_len]; blocks of
`block_len` decoded left to right, `steps // num_blocks` steps each; the masks of a block are spread evenly over its
steps (base count, remainder to the earliest steps). Each step: x0 = argmax of the logits (or Gumbel-max sampling
in float64 at temperature > 0), confidence = softmax probability of x0 ("low_confidence") or uniform ("random");
only masked positions of the current block compete; the most confident are committed and never remasked.
Fast-dLLM's parallel decoding (arXiv 2505.22618, sec. 3.3) replaces the count by a threshold: commit every masked
token with confidence >= threshold, at least one per step, until the block is done.

Dream (Ye et al., 2025): logits shifted right by one; confidence by `alg` (maskgit_plus: top-1 probability,
topk_margin: p1 - p2, entropy: minus the entropy); step s of T commits int(n_mask * (1 - t_{s+1} / t_s)) tokens on
timesteps linspace(1, 1e-3, T + 1), everything left at the last step; no blocks by default (block_len = gen_len).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.dllm.cache import DecodeCache
from reference.dllm.model import DLLM

REMASKING = ("low_confidence", "random")
DREAM_ALGS = ("maskgit_plus", "topk_margin", "entropy")


@dataclass(frozen=True)
class GenConfig:
    gen_len: int = 256
    block_len: int = 32
    steps: int = 256
    temperature: float = 0.0
    remasking: str = "low_confidence"
    threshold: float | None = None  # Fast-dLLM parallel decoding; None = fixed count per step
    loop: str = "llada"             # "llada" or "dream"
    alg: str = "entropy"            # Dream's confidence
    top_p: float | None = None      # Dream's nucleus sampling (temperature > 0)
    seed: int = 0

    def __post_init__(self):
        if self.gen_len <= 0 or self.block_len <= 0 or self.steps <= 0:
            raise ValueError(f"gen_len, block_len and steps must be positive, got {self.gen_len}, "
                             f"{self.block_len}, {self.steps}")
        if self.gen_len % self.block_len:
            raise ValueError(f"gen_len ({self.gen_len}) must be a multiple of block_len ({self.block_len})")
        blocks = self.gen_len // self.block_len
        if self.steps % blocks:
            raise ValueError(f"steps ({self.steps}) must be a multiple of the number of blocks ({blocks})")
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking must be one of {REMASKING}, got {self.remasking!r}")
        if self.loop not in ("llada", "dream"):
            raise ValueError(f"loop must be 'llada' or 'dream', got {self.loop!r}")
        if self.alg not in DREAM_ALGS:
            raise ValueError(f"alg must be one of {DREAM_ALGS}, got {self.alg!r}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1], got {self.threshold}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")

    @property
    def steps_per_block(self) -> int:
        return self.steps // (self.gen_len // self.block_len)


def transfer_counts(n_mask: int, steps: int) -> list[int]:
    """LLaDA's schedule: n_mask tokens over `steps` steps, base count each, the remainder to the earliest steps."""
    base, rem = divmod(n_mask, steps)
    return [base + (1 if i < rem else 0) for i in range(steps)]


def dream_counts(n_mask: int, step: int, steps: int, eps: float = 1e-3) -> int:
    """Dream's schedule: int(n_mask * (1 - t_{s+1} / t_s)) on linspace(1, eps, steps + 1); all left at the end."""
    if step == steps - 1:
        return n_mask
    t = 1 - (1 - eps) * step / steps
    s = 1 - (1 - eps) * (step + 1) / steps
    return int(n_mask * (1 - s / t))


def _sample(logits: torch.Tensor, cfg: GenConfig, gen: torch.Generator | None, mask_id: int):
    """Candidate tokens x0 [B, n] and the probability matrix [B, n, V] (float64).

    The mask token is never a candidate (a trained model gives it ~0 probability; an untrained one could otherwise
    "commit" a mask and leave the position undecoded).
    """
    logits = logits.to(torch.float64)
    logits[..., mask_id] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if cfg.temperature == 0:
        return logits.argmax(-1), probs
    scaled = logits / cfg.temperature
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_l, order = scaled.sort(dim=-1, descending=True)
        cum = torch.softmax(sorted_l, -1).cumsum(-1)
        drop = cum - torch.softmax(sorted_l, -1) > cfg.top_p
        scaled = scaled.scatter(-1, order, sorted_l.masked_fill(drop, float("-inf")))
    u = torch.rand(scaled.shape, dtype=torch.float64, generator=gen, device="cpu").to(scaled.device)
    x0 = (scaled - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)  # Gumbel-max
    return x0, torch.softmax(scaled, dim=-1)


def _confidence(x0: torch.Tensor, probs: torch.Tensor, cfg: GenConfig, gen) -> torch.Tensor:
    if cfg.loop == "dream":
        if cfg.alg == "maskgit_plus":
            return probs.gather(-1, x0[..., None])[..., 0]
        if cfg.alg == "topk_margin":
            top2 = probs.topk(2, dim=-1).values
            return top2[..., 0] - top2[..., 1]
        return (probs * torch.log(probs.clamp_min(1e-300))).sum(-1)  # minus the entropy
    if cfg.remasking == "random":
        return torch.rand(x0.shape, dtype=torch.float64, generator=gen, device="cpu").to(x0.device)
    return probs.gather(-1, x0[..., None])[..., 0]


def _commit(x: torch.Tensor, bs: int, x0, conf, masked, counts: list[int], threshold: float | None) -> int:
    """Write the chosen candidates of each row into x[:, bs:]; returns how many tokens were committed."""
    conf = conf.masked_fill(~masked, float("-inf"))
    done = 0
    for b in range(x.shape[0]):
        n_masked = int(masked[b].sum())
        if n_masked == 0:
            continue
        if threshold is not None:
            pick = (conf[b] >= threshold).nonzero()[:, 0]
            if pick.numel() == 0:
                pick = conf[b].argmax()[None]
        else:
            k = min(counts[b], n_masked)
            if k == 0:
                continue
            pick = conf[b].topk(k).indices
        x[b, bs + pick] = x0[b, pick]
        done += int(pick.numel())
    return done


@torch.no_grad()
def generate(model: DLLM, prompt: torch.Tensor, cfg: GenConfig, cache: DecodeCache | None = None,
             timer=None, max_blocks: int | None = None) -> tuple[torch.Tensor, dict]:
    """Decode `cfg.gen_len` tokens after `prompt` [B, P] (long); returns (x [B, P + gen_len], stats).

    max_blocks stops after that many blocks (timing a method whose every block costs the same).

    stats: forward steps run, tokens committed per step, cache builds per block, peak cache bytes.
    """
    if prompt.dim() != 2 or prompt.dtype != torch.long:
        raise ValueError(f"prompt must be a long tensor [B, P], got {prompt.dtype} {tuple(prompt.shape)}")
    if prompt.shape[1] == 0:
        raise ValueError("prompt must hold at least one token")
    cache = cache or DecodeCache()
    mask_id = model.cfg.mask_id
    shift = 1 if cfg.loop == "dream" else 0
    b, p = prompt.shape
    x = torch.cat([prompt, torch.full((b, cfg.gen_len), mask_id, dtype=torch.long, device=prompt.device)], 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    cache.reset(model, x, p, timer)
    steps_run, per_step = 0, []
    t_block = cfg.steps_per_block
    n_blocks = cfg.gen_len // cfg.block_len
    for blk in range(n_blocks if max_blocks is None else min(max_blocks, n_blocks)):
        bs, be = p + blk * cfg.block_len, p + (blk + 1) * cfg.block_len
        cache.begin_block(bs - shift, be)
        n0 = (x[:, bs:be] == mask_id).sum(1).tolist()
        counts = [transfer_counts(n, t_block) for n in n0]
        step = 0
        while True:
            masked = x[:, bs:be] == mask_id
            if not masked.any() or (cfg.threshold is None and step >= t_block):
                break
            logits = cache.step_logits(model, x, step)[:, :cfg.block_len]
            x0, probs = _sample(logits, cfg, gen, mask_id)
            conf = _confidence(x0, probs, cfg, gen)
            if cfg.loop == "dream":
                k = [dream_counts(int(m.sum()), step, t_block) for m in masked]
            else:
                k = [c[step] if step < t_block else 1 for c in counts]
            per_step.append(_commit(x, bs, x0, conf, masked, k, cfg.threshold))
            step += 1
            steps_run += 1
    stats = {"steps": steps_run, "blocks": blk + 1, "committed_per_step": per_step, "builds_per_block": list(cache.builds),
             "peak_cache_bytes": cache.peak_bytes}
    return x, stats
