"""LAPS-SD: Least-Attained/Perceived-Service for Speculative Decoding (Li, Chen, Li, arXiv 2505.17074, Alg. 1;
specs/laps-sd.md).

Every arrival enters the top queue; the highest non-empty queue is served first. While a request's acceptance
rate is still moving it is *non-perceptible*: ranked by attained service and demoted through the queues like
LAS (levels.py). Once its rate is stable it becomes *perceptible*: its remaining run time is estimated with the
paper's formula T = L (g T_ssm + T_llm) / (g A + 1) (cost_model.run_time_estimate), L its predicted remaining
length and A its observed acceptance rate, and it is ranked by that estimate and no longer demoted. Within a
queue one key serves both kinds: least attained service (non-perceptible) or least perceived remaining service
(perceptible), in seconds.

The paper leaves these open (specs/laps-sd.md, "Not found"); our choices, all parameters:
- stability: after `min_steps` steps, |mean acceptance of the last `window` steps - of the `window` before| <= `tol`;
- queues: `levels` levels, quantum `base_quantum * ratio^i` (default one batch-1 step at 512 tokens, ratio 2);
- a request that outlives its predicted length is given `overrun_floor * generated` tokens still to go (the
  predictor was short; residual life grows with age under heavy-tailed lengths);
- `starvation_s` (off by default): a request waiting that long since its last service is boosted above every
  queue until it has been served as long (levels.py).
"""
from reference.scheduling.policies import Policy, register
from reference.scheduling.policies.levels import Levels


@register
class LAPSSD(Policy):
    name = "laps_sd"

    def __init__(self, levels: int = 4, base_quantum: float | None = None, ratio: float = 2.0, min_steps: int = 8,
                 window: int = 4, tol: float = 0.1, overrun_floor: float = 0.5, starvation_s: float | None = None,
                 refresh_every: int = 16):
        if min_steps < 1 or window < 1:
            raise ValueError(f"min_steps and window must be >= 1, got {min_steps}, {window}")
        if not 0 <= tol <= 1:
            raise ValueError(f"tol must lie in [0, 1] (an acceptance-rate difference), got {tol}")
        if overrun_floor <= 0:
            raise ValueError(f"overrun_floor must be > 0, got {overrun_floor}")
        self.levels = Levels(levels, base_quantum, ratio, starvation_s)
        self.min_steps, self.window, self.tol, self.overrun_floor = max(min_steps, 2 * window), window, tol, overrun_floor
        self.refresh_every = refresh_every if starvation_s is not None else None

    def on_arrival(self, state, now):
        state.memo.update(level=0, level_time=0.0, perceptible=False)

    def stable(self, state) -> bool:
        h, w = state.history, self.window
        if len(h) < self.min_steps:
            return False
        g = self.cost.draft_len
        return abs(sum(h[-w:]) - sum(h[-2 * w:-w])) / (w * g) <= self.tol

    def on_step(self, state, service_s, now):
        self.levels.serve(state.memo, service_s)
        if state.memo["perceptible"]:
            return
        if self.stable(state):
            state.memo.update(perceptible=True, perceptible_at=state.steps)
        else:
            self.levels.charge(state.memo, service_s, self.cost)

    def remaining_estimate(self, state) -> float:
        left = state.request.predicted_len - state.generated
        if left <= 0:
            left = self.overrun_floor * state.generated
        return self.cost.run_time_estimate(left, state.acceptance_rate(self.cost.draft_len), state.context)

    def key(self, state, now):
        level = self.levels.level_now(state, now)
        if level < 0:
            return self.levels.boosted_key(state)
        service = self.remaining_estimate(state) if state.memo["perceptible"] else state.attained
        return (level, service, state.arrival, state.rid)

    def params(self):
        return {"levels": self.levels.levels, "base_quantum": self.levels.base_quantum, "ratio": self.levels.ratio,
                "min_steps": self.min_steps, "window": self.window, "tol": self.tol,
                "overrun_floor": self.overrun_floor, "starvation_s": self.levels.starvation_s}
