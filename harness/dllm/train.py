"""`python -m harness train-dllm`: train the reference dLLM as a masked-diffusion LM on our synthetic tasks.

Objective: LLaDA's supervised fine-tuning loss (arXiv 2502.09992, eq. 5): the prompt is never masked; each answer
token (answer + EOS padding to gen_len) is masked independently with probability t ~ U(eps, 1), and the loss is
the cross-entropy on masked tokens averaged over the gen_len answer positions, weighted by 1/t (`weighting="elbo"`)
or not (`"uniform"`, our default: the 1/t weight made training spiky at our batch sizes). Lengths follow a
curriculum (64-token contexts first, where each batch holds many examples, up to 1k-4k tokens). AdamW, linear warm-up
then cosine decay, bfloat16 autocast on CUDA. The run stops at a time or step budget and saves the checkpoint
(reference/dllm/checkpoint.py, float16 weights) with its recipe and the accuracy measured on held-out examples.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from harness import argtypes
from harness.dllm import tasks
from reference.dllm.config import DLLMConfig
from reference.dllm.model import DLLM


@dataclass(frozen=True)
class Recipe:
    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 2
    ffn_dim: int = 768
    rope_theta: float = 10000.0
    gen_len: int = 16
    # (fraction of the budget at which a stage starts, context lengths drawn in it): retrieval circuits form fast
    # on short contexts with few distractors and then carry over to long ones (64 tokens learns in a few hundred
    # steps on a CPU; starting at 256-512 learned nothing in 8 H100 minutes).
    curriculum: tuple = ((0.0, (64, 96, 128)), (0.2, (128, 256)), (0.4, (256, 512)), (0.55, (512, 1024)),
                         (0.7, (1024, 2048, 4096)))
    weighting: str = "uniform"       # "uniform" or "elbo" (LLaDA's 1/t); 1/t made training spiky at our batch sizes
    tokens_per_batch: int = 32768
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.1
    minutes: float = 9.0
    max_steps: int = 100_000
    eps: float = 1e-3
    seed: int = 0

    def config(self) -> DLLMConfig:
        return DLLMConfig(vocab_size=tasks.VOCAB_SIZE, d_model=self.d_model, n_layers=self.n_layers,
                          n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, ffn_dim=self.ffn_dim,
                          mask_id=tasks.MASK, eos_id=tasks.EOS, rope_theta=self.rope_theta,
                          max_len=max(self.long_lengths) + self.gen_len)


    @property
    def long_lengths(self) -> tuple[int, ...]:
        return self.curriculum[-1][1]

    def lengths_at(self, progress: float) -> tuple[int, ...]:
        return [lengths for start, lengths in self.curriculum if progress >= start][-1]


CPU_RECIPE = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192,
                  curriculum=((0.0, (64,)), (0.5, (64, 128))), tokens_per_batch=4096, warmup=20, minutes=1.0)


def make_batch(rng: random.Random, length: int, n: int, gen_len: int, device) -> torch.Tensor:
    """[n, length + gen_len] clean sequences (prompt + answer + EOS padding), tasks mixed uniformly."""
    rows = []
    for _ in range(n):
        ex = tasks.make_example(rng.choice(tasks.TASKS), length, rng)
        rows.append(ex.prompt + tasks.target_tokens(ex, gen_len))
    return torch.tensor(rows, dtype=torch.long, device=device)


def diffusion_loss(model: DLLM, x0: torch.Tensor, gen_len: int, gen: torch.Generator, eps: float,
                   weighting: str = "elbo") -> torch.Tensor:
    """LLaDA SFT loss (eq. 5) on the last gen_len positions of x0 [B, L]; weighting "uniform" drops the 1/t."""
    b, length = x0.shape
    t = eps + (1 - eps) * torch.rand(b, 1, device=x0.device, generator=gen)
    masked = torch.rand(b, gen_len, device=x0.device, generator=gen) < t
    masked[masked.sum(1) == 0, 0] = True  # at least one masked token per example
    xt = x0.clone()
    xt[:, length - gen_len:][masked] = model.cfg.mask_id
    logits = model(xt, rows=slice(length - gen_len, length)).float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x0[:, length - gen_len:].reshape(-1),
                         reduction="none").view(b, gen_len)
    weight = 1 / t if weighting == "elbo" else 1.0
    return ((ce * masked * weight).sum(1) / gen_len).mean()


def lr_at(step: int, progress: float, r: Recipe) -> float:
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    return r.min_lr + 0.5 * (r.lr - r.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def train(r: Recipe, device: str = "cpu", log=print) -> tuple[DLLM, dict]:
    """Train until r.minutes or r.max_steps; returns the model and a log of (step, seconds, length, loss)."""
    torch.manual_seed(r.seed)
    model = DLLM(r.config(), device=device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=r.lr, betas=(0.9, 0.95),
                            fused=device.startswith("cuda"))
    rng = random.Random(r.seed)
    gen = torch.Generator(device=device).manual_seed(r.seed)
    budget = r.minutes * 60
    start = time.perf_counter()
    history, step = [], 0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast(
        "cpu", enabled=False)
    while step < r.max_steps:
        elapsed = time.perf_counter() - start
        progress = max(elapsed / budget, step / r.max_steps)
        if progress >= 1:
            break
        length = rng.choice(r.lengths_at(progress))
        n = max(1, r.tokens_per_batch // (length + r.gen_len))
        x0 = make_batch(rng, length, n, r.gen_len, device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, progress, r)
        with amp:
            loss = diffusion_loss(model, x0, r.gen_len, gen, r.eps, r.weighting)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            lv = float(loss.detach())
            history.append({"step": step, "seconds": round(time.perf_counter() - start, 1), "length": length,
                            "batch": n, "loss": round(lv, 4)})
            log(f"step {step:6d}  {time.perf_counter() - start:7.1f}s  len {length:5d} x {n:4d}  loss {lv:.4f}")
        step += 1
    return model, {"steps": step, "seconds": round(time.perf_counter() - start, 1), "history": history}


@torch.no_grad()
def evaluate(model: DLLM, lengths: list[int], n: int, gen_len: int, block_len: int, device, cache_name="vanilla",
             **cache_params) -> dict:
    """Exact-match accuracy (%) per task and length on held-out examples, vanilla decoding (or a named cache)."""
    from reference.dllm import make_cache
    from reference.dllm.generate import GenConfig, generate

    cfg = GenConfig(gen_len=gen_len, block_len=block_len, steps=gen_len)
    out = {}
    model.eval()
    for task in tasks.TASKS:
        for length in lengths:
            exs = tasks.held_out(task, length, n)
            prompts = torch.tensor([e.prompt for e in exs], dtype=torch.long, device=device)
            x, _ = generate(model, prompts, cfg, make_cache(cache_name, **cache_params))
            gen = x[:, length:].tolist()
            out[f"{task}@{length}"] = 100.0 * sum(tasks.is_correct(e, g) for e, g in zip(exs, gen)) / n
    return out


def _arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", default=None, type=argtypes.output_file,
                   help="checkpoint path (default: a new file runs/train-dllm/tiny_dllm-<UTC time>.pt; the committed "
                   "fixture is replaced only by naming it with --force)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", type=argtypes.device,
                   help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--size", choices=("gpu", "cpu"), default=None,
                   help="recipe preset: gpu (256-dim, 8 layers, 1k-4k contexts) or cpu (tiny); default by device")
    p.add_argument("--minutes", type=argtypes.number(above=0.0), default=None, help="time budget (default: the preset's)")
    p.add_argument("--max-steps", type=argtypes.integer(minimum=1), default=None)
    p.add_argument("--eval-lengths", type=argtypes.int_list(minimum=1), default=None,
                   help="comma-separated held-out lengths (default: the preset's)")
    p.add_argument("--eval-n", type=argtypes.integer(minimum=1), default=32, help="held-out examples per task and length")
    p.add_argument("--seed", type=argtypes.integer(minimum=0), default=0)
    return p


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `train-dllm` on the subparsers of the harness CLI (harness/cli.py)."""
    return _arguments(sub.add_parser("train-dllm", help="train the small dLLM on synthetic long-context tasks",
                                     description=__doc__.split("\n\n")[0]))


def build_parser() -> argparse.ArgumentParser:
    """The same options as a parser of its own, for `python -m harness.dllm.train`."""
    return _arguments(argparse.ArgumentParser(prog="python -m harness train-dllm",
                                              description=__doc__.split("\n\n")[0]))


def problem(a) -> str | None:
    """What makes the arguments unusable before any training (argparse's "argument --x: ..." form), or None."""
    if a.out is not None and os.path.exists(a.out) and not a.force:  # never silently replace a checkpoint
        return f"argument --out: {a.out} exists; pass --force to overwrite it, or name a new path"
    for length in a.eval_lengths or ():  # a prompt must hold every task's needles: fail before training
        for task in tasks.TASKS:
            try:
                tasks.make_example(task, length, random.Random(0)) if length < 512 else None
            except (ValueError, AssertionError):
                return f"argument --eval-lengths: {length} tokens is too short for task {task!r}"
    return None


def cmd_train(a) -> int:
    """`python -m harness train-dllm`: train, evaluate on held-out examples, save the checkpoint. An unusable
    argument raises ValueError naming it (the CLI prints it on one line, exit 2)."""
    from reference.dllm import checkpoint

    if (bad := problem(a)) is not None:
        raise ValueError(bad)
    if a.out is None:
        a.out = os.path.join("runs", "train-dllm", f"tiny_dllm-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.pt")
    size = a.size or ("gpu" if a.device.startswith("cuda") else "cpu")
    fields = {} if size == "gpu" else dict(CPU_RECIPE)
    if a.minutes is not None:
        fields["minutes"] = a.minutes
    if a.max_steps is not None:
        fields["max_steps"] = a.max_steps
    fields["seed"] = a.seed
    r = Recipe(**fields)
    model, log = train(r, a.device)
    lengths = list(a.eval_lengths) if a.eval_lengths else [256, *r.long_lengths]
    acc = evaluate(model, lengths, a.eval_n, r.gen_len, r.gen_len // 2, a.device)
    print("held-out accuracy (vanilla, exact match %):", acc)
    meta = {"device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
            "torch": str(torch.__version__), **log}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    checkpoint.save(model, a.out, recipe={**asdict(r), "size": size, "train": meta},
                    metrics={"vanilla_accuracy": acc, "eval_n": a.eval_n, "block_len": r.gen_len // 2})
    print(f"saved {a.out} ({model.num_params() / 1e6:.2f}M parameters)")
    return 0


def main(argv=None) -> int:
    """`python -m harness.dllm.train ...`, the same command as `python -m harness train-dllm ...`."""
    return argtypes.run_main(build_parser(), problem, cmd_train, argv)


if __name__ == "__main__":
    sys.exit(main())
