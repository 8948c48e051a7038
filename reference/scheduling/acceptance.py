"""Parametric acceptance scenarios: per-request acceptance rates from Beta distributions, accepted tokens per step
as in speculative sampling, and a drift over the first steps.

Our measured traces come from n-gram prompt-lookup drafting, which proposes nothing on about half the steps;
LAPS-SD's paper drafts with a small model (arXiv 2505.17074). These scenarios stand in for a draft model:

- request i's settled acceptance rate alpha_i ~ a mixture of Beta(a, b) (one component per kind of prompt);
- at step t its rate is alpha_i(t) = alpha_i + (alpha0_i - alpha_i) exp(-t / drift_steps), alpha0_i ~ Beta(start):
  the rate moves during the first steps and settles, the regime LAPS-SD's perceptibility test is built for;
- a step drafts g tokens, each accepted with probability alpha_i(t) until the first rejection (Leviathan et al.
  2023, arXiv 2211.17192, sec. 3.1, i.i.d. approximation): P(k accepted) = alpha^k (1 - alpha) for k < g and
  alpha^g for k = g, so E[k + 1] = (1 - alpha^(g+1)) / (1 - alpha) (cost_model.expected_tokens).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from reference.scheduling.trace import emitted


@dataclass(frozen=True)
class AcceptanceScenario:
    name: str
    mixture: tuple[tuple[float, float, float], ...]  # (weight, a, b) of each Beta component of alpha_i
    start: tuple[float, float] = (2.0, 2.0)  # Beta(a, b) of alpha0_i, the rate at the first step
    drift_steps: float = 4.0  # e-folding steps of the drift from alpha0_i to alpha_i; 0: no drift
    doc: str = ""

    def validate(self) -> None:
        if not self.mixture or any(not (w > 0 and a > 0 and b > 0) for w, a, b in self.mixture):
            raise ValueError(f"scenario {self.name!r}: mixture needs components (weight, a, b), all > 0")
        if not (self.start[0] > 0 and self.start[1] > 0):
            raise ValueError(f"scenario {self.name!r}: start must be Beta parameters > 0, got {self.start}")
        if not 0 <= self.drift_steps < math.inf:
            raise ValueError(f"scenario {self.name!r}: drift_steps must be finite and >= 0, got {self.drift_steps}")


SCENARIOS = {
    "draft-model": AcceptanceScenario(
        "draft-model", ((1.0, 4.0, 2.0),),
        doc="small-draft-model-like: alpha_i ~ Beta(4, 2) (mean 0.67, sd 0.18), drifting from Beta(2, 2) over ~4 steps"),
    "mixed-tasks": AcceptanceScenario(
        "mixed-tasks", ((0.5, 9.0, 1.5), (0.5, 2.0, 3.0)),
        doc="two kinds of prompts: half code-like alpha_i ~ Beta(9, 1.5) (mean 0.86), half chat-like Beta(2, 3) "
            "(mean 0.4), drifting from Beta(2, 2) over ~4 steps"),
}


def accepted_tokens(rng: random.Random, alpha: float, draft_len: int) -> int:
    """Draft tokens accepted in one step: successes before the first rejection, at most draft_len."""
    k = 0
    while k < draft_len and rng.random() < alpha:
        k += 1
    return k


def request_acceptance(rng: random.Random, scenario: AcceptanceScenario, output_len: int,
                       draft_len: int) -> tuple[int, ...]:
    """One request's per-step accepted tokens, exactly enough steps to emit `output_len` tokens."""
    weights = [w for w, _, _ in scenario.mixture]
    _, a, b = rng.choices(scenario.mixture, weights)[0]
    alpha, alpha0 = rng.betavariate(a, b), rng.betavariate(*scenario.start)
    acc, made, t = [], 0, 0
    while made < output_len:
        drift = math.exp(-t / scenario.drift_steps) if scenario.drift_steps > 0 else 0.0
        k = accepted_tokens(rng, alpha + (alpha0 - alpha) * drift, draft_len)
        acc.append(k)
        made += k + 1
        t += 1
    assert len(emitted(acc, output_len)) == len(acc)
    return tuple(acc)
