"""The generation loops of masked-diffusion LMs, one loop for every caching strategy.

LLaDA (arXiv 2502.09992, Algorithm 5 "low-confidence remasking", with semi-autoregressive blocks; the official loop is
ML-GSAI/LLaDA at b7e9d5e, `generate.py`; facts in docs/sparse-dllm.md): x = [prompt | MASK * gen_len]; blocks of
`block_len` decoded left to right, `steps // num_blocks` steps each; the masks of a block are spread evenly over its
steps (base count, remainder to the earliest steps). Each step draws candidates and their confidence
(reference/dllm/sampling.py); only masked positions of the current block compete; the most confident are committed
and never remasked. Options of the official loop: `cfg_scale` (unsupervised classifier-free guidance: the prompt,
padding included, masked in a second batch half; logits = un + (scale + 1) (cond - un)), a left-padding
`attention_mask` (padded keys are attended by no query in any forward; positions stay absolute), and the EOS options
of reference/dllm/sampling.py. Fast-dLLM's parallel decoding (arXiv 2505.22618, sec. 3.3) replaces the count by a
threshold: commit every masked token with confidence >= threshold, at least one per step, until the block is done.

Dream (Ye et al., 2025): logits shifted right by one; confidence by `alg`; step s of T commits
int(n_mask * (1 - t_{s+1} / t_s)) tokens on timesteps linspace(1, 1e-3, T + 1), everything left at the last step:
the most confident ones, or with `alg_temp` > 0 a draw without replacement from softmax(confidence / alg_temp) over
the masked positions (the official `alg_temp`; here by Gumbel-top-k, the same distribution as its multinomial).
With blocks, step 0 follows the block loops of OpenMOSS/Sparse-dLLM (3fd8986, `dream/generation_utils.py`) and
NVlabs/Fast-dLLM (24cc59e, `dream/model/generation_utils_block.py`): it commits the block's first token (its logit
read at the row before the block) whatever its confidence, and the block [bs, be) is what the caches see
(`dream_step0="first_token"`, the default). `dream_step0="schedule"` is this benchmark's earlier rule: the block seen
by the caches is [bs - 1, be) and step 0 commits Dream's count like any other step. With one step per block the
official loops leave all but the first token masked; here that step also commits the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reference.dllm.cache import DecodeCache
from reference.dllm.model import DLLM
from reference.dllm.sampling import dream_step, llada_step

REMASKING = ("low_confidence", "random")
DREAM_ALGS = ("maskgit_plus", "topk_margin", "entropy")
DREAM_STEP0 = ("first_token", "schedule")
LLADA_ONLY = ("cfg_scale", "logits_eos_inf", "confidence_eos_eot_inf")  # options of the official LLaDA loop
DREAM_ONLY = ("top_k", "alg_temp")  # options of the official Dream sampler


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
    top_p: float | None = None      # nucleus filter (Dream: at any temperature; LLaDA loop: T > 0 only)
    top_k: int | None = None        # Dream: keep the logits >= the k-th largest before sampling / confidence
    alg_temp: float | None = None   # Dream: > 0 draws the positions to commit from softmax(confidence / alg_temp)
    seed: int = 0
    cfg_scale: float = 0.0          # LLaDA's unsupervised classifier-free guidance (0 = off)
    tempered_confidence: bool = False  # LLaDA at T > 0: rank by softmax(logits / T) (ours) instead of softmax(logits)
    logits_eos_inf: bool = False    # LLaDA: EOS is never a candidate
    confidence_eos_eot_inf: bool = False  # LLaDA: EoT (and EOS at T = 0) candidates get confidence 0
    eot_id: int | None = None       # the EoT token of confidence_eos_eot_inf (LLaDA-8B: 126348); EOS is the model's
    dream_step0: str = "first_token"  # Dream with blocks: "first_token" (official) or "schedule" (ours before)

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
        if self.dream_step0 not in DREAM_STEP0:
            raise ValueError(f"dream_step0 must be one of {DREAM_STEP0}, got {self.dream_step0!r}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1], got {self.threshold}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not (isinstance(self.cfg_scale, (int, float)) and math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise ValueError(f"cfg_scale must be a finite number >= 0, got {self.cfg_scale!r}")
        for name in ("tempered_confidence", "logits_eos_inf", "confidence_eos_eot_inf"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.eot_id is not None and (isinstance(self.eot_id, bool) or not isinstance(self.eot_id, int)
                                        or self.eot_id < 0):
            raise ValueError(f"eot_id must be None or a token id >= 0, got {self.eot_id!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be None or an int >= 1, got {self.top_k!r}")
        if self.alg_temp is not None and not (isinstance(self.alg_temp, (int, float))
                                              and not isinstance(self.alg_temp, bool)
                                              and math.isfinite(self.alg_temp) and self.alg_temp >= 0):
            raise ValueError(f"alg_temp must be None or a finite number >= 0, got {self.alg_temp!r}")
        if self.loop == "dream":
            used = [n for n in LLADA_ONLY if getattr(self, n)]
            if used:
                raise ValueError(f"{', '.join(used)}: options of the LLaDA loop (loop 'llada'); the Dream loop has none")
        else:
            used = [n for n in DREAM_ONLY if getattr(self, n)]
            if used:
                raise ValueError(f"{', '.join(used)}: options of the Dream loop (loop 'dream'); the LLaDA loop has none")

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


def _commit(x: torch.Tensor, bs: int, x0, conf, masked, counts: list[int], threshold: float | None,
            left: list[int], alg_temp: float | None = None, gen: torch.Generator | None = None) -> list[int]:
    """Write the chosen candidates of each row into x[:, bs:]; returns how many tokens each row committed.

    left[b]: how many positions of row b's block are masked (the loop tracks it on the host, so a fixed-count step
    reads nothing back from the device: no sync between a step's forward and the next one's).
    alg_temp > 0 (Dream): the counts[b] positions are drawn without replacement from softmax(conf / alg_temp) over the
    masked ones (Gumbel-top-k with noise from `gen`) instead of being the most confident."""
    conf = conf.masked_fill(~masked, float("-inf"))
    done = [0] * x.shape[0]
    for b in range(x.shape[0]):
        if left[b] == 0:
            continue
        if threshold is not None:
            pick = (conf[b] >= threshold).nonzero()[:, 0]
            if pick.numel() == 0:
                pick = conf[b].argmax()[None]
        else:
            k = min(counts[b], left[b])
            if k == 0:
                continue
            if alg_temp:
                u = torch.rand(conf.shape[1], dtype=torch.float64, generator=gen, device="cpu").to(conf.device)
                pick = (conf[b] / alg_temp - torch.log(-torch.log(u.clamp_min(1e-300)))).topk(k).indices
            else:
                pick = conf[b].topk(k).indices
        x[b, bs + pick] = x0[b, pick]
        done[b] = k if threshold is None else int(pick.numel())
    return done


def key_mask_of(attention_mask: torch.Tensor | None, prompt: torch.Tensor, gen_len: int) -> torch.Tensor | None:
    """The keys every query may attend, bool [B, P + gen_len]: the prompt's attention mask (1 = token, 0 = left
    padding) followed by the generated positions; None when nothing is padded (the official loop passes no mask then)."""
    if attention_mask is None:
        return None
    if attention_mask.shape != prompt.shape:
        raise ValueError(f"attention_mask must have the prompt's shape {tuple(prompt.shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    if bool((attention_mask == 1).all()):
        return None
    ones = torch.ones(prompt.shape[0], gen_len, dtype=torch.bool, device=prompt.device)
    return torch.cat([attention_mask.to(device=prompt.device, dtype=torch.bool), ones], 1)


@torch.no_grad()
def generate(model: DLLM, prompt: torch.Tensor, cfg: GenConfig, cache: DecodeCache | None = None,
             timer=None, max_blocks: int | None = None,
             attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Decode `cfg.gen_len` tokens after `prompt` [B, P] (long); returns (x [B, P + gen_len], stats).

    max_blocks stops after that many blocks (timing a method whose every block costs the same).
    attention_mask [B, P]: 1 for prompt tokens, 0 for left padding (LLaDA loop only).

    stats: forward steps run, tokens committed per step, cache builds per block, peak cache bytes.
    """
    if prompt.dim() != 2 or prompt.dtype != torch.long:
        raise ValueError(f"prompt must be a long tensor [B, P], got {prompt.dtype} {tuple(prompt.shape)}")
    if prompt.shape[1] == 0:
        raise ValueError("prompt must hold at least one token")
    key_mask = key_mask_of(attention_mask, prompt, cfg.gen_len)
    if key_mask is not None and cfg.loop == "dream":
        raise ValueError("attention_mask with padding: the llada loop only (Dream shifts positions per row, and the "
                         "Sparse-dLLM Dream loop refuses padding)")
    cache = cache or DecodeCache()
    mask_id, eos_id = model.cfg.mask_id, model.cfg.eos_id
    dream = cfg.loop == "dream"
    first_token = dream and cfg.dream_step0 == "first_token"
    # Dream reads position p's logit at row p - 1: the loop asks for one leading row (first_token), or the cache's
    # block itself starts one position early (the earlier rule).
    lead = 1 if first_token else 0
    shift = 1 if dream and not first_token else 0
    b, p = prompt.shape
    x = torch.cat([prompt, torch.full((b, cfg.gen_len), mask_id, dtype=torch.long, device=prompt.device)], 1)
    guided = cfg.cfg_scale > 0
    prompt_index = x != mask_id  # what guidance masks: the prompt, its padding included

    def inputs() -> torch.Tensor:  # guidance runs the unconditional half as more batch rows, as the official loop
        return torch.cat([x, x.masked_fill(prompt_index, mask_id)]) if guided else x

    gen = torch.Generator().manual_seed(cfg.seed)
    cache.reset(model, inputs(), p, timer, key_mask.repeat(2, 1) if guided and key_mask is not None else key_mask)
    steps_run, per_step = 0, []
    t_block = cfg.steps_per_block
    n_blocks = cfg.gen_len // cfg.block_len
    for blk in range(n_blocks if max_blocks is None else min(max_blocks, n_blocks)):
        bs, be = p + blk * cfg.block_len, p + (blk + 1) * cfg.block_len
        cache.begin_block(bs - shift, be, lead)
        n0 = (x[:, bs:be] == mask_id).sum(1).tolist()
        # Masked positions per row, on the host: a candidate is never the mask token and only masked positions are
        # written, so each step lowers them by what it committed.
        left = list(n0)
        counts = [transfer_counts(n, t_block) for n in n0]
        step = 0
        while True:
            if step >= cache.min_block_steps and (not any(left) or (cfg.threshold is None and step >= t_block)):
                break
            masked = x[:, bs:be] == mask_id
            logits = cache.step_logits(model, inputs(), step)[:, :cfg.block_len]
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + (cfg.cfg_scale + 1) * (cond - uncond)
            if dream:
                x0, conf = dream_step(logits, cfg, gen, mask_id)
            else:
                x0, conf = llada_step(logits, cfg, gen, mask_id, eos_id)
            done, only_first = 0, False
            if first_token and step == 0:  # the block's first token, whatever its confidence (masked: a new block)
                x[:, bs] = x0[:, 0]
                left = [n - 1 for n in left]
                done, masked = b, x[:, bs:be] == mask_id
                only_first = t_block > 1 or cfg.threshold is not None  # else this only step commits the rest too
            if not only_first:
                if dream:
                    k = [dream_counts(n, step, t_block) for n in left]
                else:
                    k = [c[step] if step < t_block else 1 for c in counts]
                rows = _commit(x, bs, x0, conf, masked, k, cfg.threshold, left, cfg.alg_temp, gen)
                left = [n - r for n, r in zip(left, rows)]
                done += sum(rows)
            per_step.append(done)
            step += 1
            steps_run += 1
    stats = {"steps": steps_run, "blocks": blk + 1, "committed_per_step": per_step, "builds_per_block": list(cache.builds),
             "peak_cache_bytes": cache.peak_bytes}
    return x, stats
