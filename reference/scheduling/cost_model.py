"""Speculative-decoding cost model: tokens per verification step, and step times fitted to measured ones.

Tokens per step with i.i.d. acceptance a and draft length g (Leviathan et al. 2023, arXiv 2211.17192, eq. 1):
    E[tokens] = (1 - a^(g+1)) / (1 - a)
LAPS-SD's run-time estimate (arXiv 2505.17074; docs/scheduling.md), linear in the acceptance rate A:
    T = L (g T_ssm + T_llm) / (g A + 1)

Step time of a batch: t_step(b, C) = t_draft(b, C) + t_verify(b, C), each fitted (least squares, non-negative)
as  alpha + beta * b + gamma * C  on measured samples, b the batch size and C the batch's total context tokens;
prefill: t_prefill(n) = alpha + beta * n for n prompt tokens. With samples of one batch size only (our CPU
measurements are batch 1), beta cannot be told from alpha: the per-sequence cost is then taken as additive,
t(b, C) = b * alpha + gamma * C, which is what a compute-bound CPU does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch


def expected_tokens(acceptance: float, draft_len: int) -> float:
    """E[tokens per verification step] = (1 - a^(g+1)) / (1 - a) (Leviathan et al., eq. 1); g + 1 at a = 1."""
    if not 0.0 <= acceptance <= 1.0:
        raise ValueError(f"acceptance must lie in [0, 1], got {acceptance!r}")
    if acceptance == 1.0:
        return float(draft_len + 1)
    return (1.0 - acceptance ** (draft_len + 1)) / (1.0 - acceptance)


def _nnls(features: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Least squares with non-negative coefficients: drop the most negative one and refit (a few features).

    Each fit is solved exactly (`exact_lstsq`) and rounded once, to 12 significant digits. LAPACK's solution
    differs in the last bits with the number of threads it gets (a loaded machine, a Ray worker), and 12 digits did
    not hide that: one draft coefficient came out 9.08333333333e-07 in one call and ...334e-07 in the next (one
    thread, then two, in one process), and a simulation must not depend on it.
    """
    rows, y = features.tolist(), target.tolist()
    active = list(range(features.shape[1]))
    while True:
        sol = exact_lstsq([[r[i] for i in active] for r in rows], y)
        if all(c >= 0 for c in sol) or len(active) == 1:
            coef = [0.0] * features.shape[1]
            for i, c in zip(active, sol):
                coef[i] = float(f"{max(float(c), 0.0):.12g}")
            return coef
        active.pop(min(range(len(sol)), key=lambda j: sol[j]))


def exact_lstsq(rows: list[list[float]], y: list[float]) -> list[Fraction]:
    """argmin_x |A x - y|^2 in rational arithmetic: the normal equations A^T A x = A^T y of the floats as given,
    solved by elimination, so the answer is one number whatever the machine. A column that depends on the ones
    before it gets coefficient 0."""
    a = [[Fraction(v) for v in r] for r in rows]
    b = [Fraction(v) for v in y]
    k = len(a[0]) if a else 0
    gram = [[sum((r[i] * r[j] for r in a), Fraction(0)) for j in range(k)] + [sum((r[i] * t for r, t in zip(a, b)),
            Fraction(0))] for i in range(k)]
    pivots = []
    for col in range(k):
        row = next((i for i in range(len(pivots), k) if gram[i][col] != 0), None)
        if row is None:
            continue
        at = len(pivots)
        gram[at], gram[row] = gram[row], gram[at]
        for i in range(k):
            if i != at and gram[i][col] != 0:
                f = gram[i][col] / gram[at][col]
                gram[i] = [u - f * w for u, w in zip(gram[i], gram[at])]
        pivots.append(col)
    x = [Fraction(0)] * k
    for at, col in enumerate(pivots):
        x[col] = gram[at][k] / gram[at][col]
    return x


def _require(rows: list[dict], keys: tuple[str, ...], name: str, what: str) -> None:
    """ValueError unless `rows` is non-empty and every row holds every key with a value >= 0 (NaN fails too)."""
    if not rows:
        raise ValueError(f"{name} must hold at least one {what}")
    for row in rows:
        for key in keys:
            if key not in row or not row[key] >= 0:
                raise ValueError(f"{name[:-1]} {row!r}: field {key!r} missing or negative")


@dataclass(frozen=True)
class SpecCostModel:
    """Seconds per speculative step and per prefill, from (alpha, beta, gamma) coefficients (module docstring)."""

    draft_len: int
    draft: tuple[float, float, float]
    verify: tuple[float, float, float]
    prefill: tuple[float, float]
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.draft_len, bool) or not isinstance(self.draft_len, int) or self.draft_len < 1:
            raise ValueError(f"draft_len must be an integer >= 1, got {self.draft_len!r}")
        for name in ("draft", "verify", "prefill"):
            if any(c < 0 for c in getattr(self, name)):
                raise ValueError(f"{name} coefficients must be non-negative, got {getattr(self, name)}")

    def draft_time(self, batch: int, context: int) -> float:
        a, b, c = self.draft
        return a + b * batch + c * context

    def verify_time(self, batch: int, context: int) -> float:
        a, b, c = self.verify
        return a + b * batch + c * context

    def step_time(self, batch: int, context: int) -> float:
        """One speculative step of `batch` requests holding `context` tokens in total: draft g tokens + verify."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return self.draft_time(batch, context) + self.verify_time(batch, context)

    def prefill_time(self, tokens: int) -> float:
        return self.prefill[0] + self.prefill[1] * tokens if tokens > 0 else 0.0

    def run_time_estimate(self, length: float, acceptance: float, context: int) -> float:
        """LAPS-SD's T = L (g T_ssm + T_llm) / (g A + 1) at batch 1 and the given context (arXiv 2505.17074)."""
        return length * self.step_time(1, context) / (self.draft_len * acceptance + 1.0)

    @classmethod
    def fit(cls, samples: list[dict], draft_len: int, device: str = "cpu") -> "SpecCostModel":
        """Fit to samples [{"batch", "context", "draft_ms", "verify_ms", "prefill_ms"}], context per sequence."""
        _require(samples, ("batch", "context", "draft_ms", "verify_ms"), "samples", "measurement")
        b = torch.tensor([float(s["batch"]) for s in samples], dtype=torch.float64)
        ctx = torch.tensor([float(s["context"]) for s in samples], dtype=torch.float64) * b  # total tokens
        one = torch.ones_like(b)
        one_batch = bool((b == b[0]).all())
        feats = torch.stack([b, ctx], 1) if one_batch else torch.stack([one, b, ctx], 1)

        def coef(key: str) -> tuple[float, float, float]:
            c = _nnls(feats, torch.tensor([s[key] / 1e3 for s in samples], dtype=torch.float64))
            return (0.0, c[0], c[1]) if one_batch else (c[0], c[1], c[2])

        smallest = min(s["batch"] for s in samples)  # a prefill is one sequence's: the smallest batch's samples
        pre = [s for s in samples if s.get("prefill_ms") is not None and s["batch"] == smallest]
        if pre:
            n = torch.tensor([float(s["context"]) for s in pre], dtype=torch.float64)
            p = _nnls(torch.stack([torch.ones_like(n), n], 1), torch.tensor([s["prefill_ms"] / 1e3 for s in pre],
                                                                           dtype=torch.float64))
        else:
            p = [0.0, 0.0]
        return cls(draft_len, coef("draft_ms"), coef("verify_ms"), (p[0], p[1]), device)

    @classmethod
    def fit_iterations(cls, iterations: list[dict], draft_len: int, device: str = "cpu") -> "SpecCostModel":
        """Fit to whole serving iterations [{"batch", "context", "prefill_tokens", "seconds"}] (context: the batch's
        total tokens; prefill_tokens: tokens prefilled in that iteration), the simulator's iteration time with the
        draft folded into the step, in two stages (non-negative least squares each): the step
        alpha + beta * batch + gamma * context on the iterations without a prefill (beta dropped when they all have
        one batch size), then the prefill alpha_p + rho * tokens on what the step leaves of the others' times.
        One joint fit cannot tell a prefill from its context (both are the prompt in a request's first iteration).
        For a serving loop's own record of what its iterations cost."""
        _require(iterations, ("batch", "context", "prefill_tokens", "seconds"), "iterations", "measured iteration")
        steps = [it for it in iterations if it["prefill_tokens"] == 0] or iterations
        one_batch = len({it["batch"] for it in steps}) == 1
        cols = [[1.0, float(it["context"])] if one_batch else [1.0, float(it["batch"]), float(it["context"])]
                for it in steps]
        c = _nnls(torch.tensor(cols, dtype=torch.float64),
                  torch.tensor([float(it["seconds"]) for it in steps], dtype=torch.float64))
        verify = (c[0], 0.0, c[1]) if one_batch else (c[0], c[1], c[2])
        model = cls(draft_len, (0.0, 0.0, 0.0), verify, (0.0, 0.0), device)
        pre = [it for it in iterations if it["prefill_tokens"] > 0]
        if not pre:
            return model
        left = [float(it["seconds"]) - model.step_time(it["batch"], it["context"]) for it in pre]
        p = _nnls(torch.tensor([[1.0, float(it["prefill_tokens"])] for it in pre], dtype=torch.float64),
                  torch.tensor(left, dtype=torch.float64).clamp_min(0.0))
        return cls(draft_len, (0.0, 0.0, 0.0), verify, (p[0], p[1]), device)

    @classmethod
    def from_file(cls, path: str | Path) -> "SpecCostModel":
        """Fit to a step-times file ({"draft_len", "samples", "device"}; fixtures/scheduling/step_times_*.json)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for key in ("draft_len", "samples"):
            if key not in data:
                raise ValueError(f"{path}: step-times file is missing {key!r}")
        return cls.fit(data["samples"], int(data["draft_len"]), str(data.get("device", "cpu")))
