"""LAPS-SD: Least-Attained/Perceived-Service for Speculative Decoding (Li, Chen, Li, arXiv 2505.17074, Alg. 1;
docs/scheduling.md).

Every arrival enters the top queue; the highest non-empty queue is served first (Alg. 1: arrivals join the
highest-priority queue, the scheduler serves the highest non-empty one). While a request's acceptance rate still
moves it is *non-perceptible*: ranked by attained service and demoted through the queues like LAS (levels.py).
Once its rate is stable it becomes *perceptible* and, as Alg. 1 line 13 does, its output length and acceptance
rate are predicted again: the remaining length by the late predictor (predictor.py: error `late_error`, shrinking
with the generated fraction), the acceptance rate A as the mean of its last `accept_window` steps. Its remaining
run time is the paper's estimate T = L (g T_ssm + T_llm) / (g A + 1) (cost_model.run_time_estimate), L the
re-predicted remaining length, and it is ranked by T (least perceived service first).

Where perceptible requests live (`perceptible_queue`; Alg. 1 orders each queue semi-clairvoyantly but does not say
whether perceptible requests keep moving between queues):
- "bottom" (default): every perceptible request moves to one queue below all levels, ordered by T, so that all
  perceptible requests are compared with each other (SRPT among them) and new, still-unknown requests keep
  preempting them (LAS among those). A request frozen in the level it had reached when it became perceptible,
  as an earlier version did, inverts priorities: one frozen a level lower waits behind every longer request frozen
  above it.
- "demote": perceptible requests stay in the levels and keep being charged attained service and demoted like the
  others (the reading closest to Alg. 1's queue loop); within a level, perceptible ones are ordered by T and
  non-perceptible ones by attained service, one key in seconds.

The paper leaves these open; our choices, all parameters:
- stability: after `min_steps` steps, |mean acceptance of the last `window` steps - of the `window` before| <= `tol`;
- queues: `levels` levels, quantum `base_quantum * ratio^i` (default one batch-1 step at 512 tokens, ratio 2);
- a request that outlives its predicted length is given `overrun_floor * generated` tokens still to go;
- `late_error=None` turns line 13 off: the arrival-time prediction minus the tokens generated, as before;
- `starvation_s` (off by default): a request waiting that long since its last service is boosted above every
  queue until it has been served as long (levels.py).
"""
from reference.scheduling.policies import POLICIES, Policy
from reference.scheduling.policies.levels import Levels
from reference.scheduling.predictor import check_late_error, repredict_remaining

PLACEMENTS = ("bottom", "demote")


@POLICIES.register("laps_sd")
class LAPSSD(Policy):
    order = 4

    def __init__(self, levels: int = 4, base_quantum: float | None = None, ratio: float = 2.0, min_steps: int = 8,
                 window: int = 4, tol: float = 0.1, overrun_floor: float = 0.5, starvation_s: float | None = None,
                 refresh_every: int = 16, perceptible_queue: str = "bottom", late_error: float | None = 0.1,
                 accept_window: int = 8):
        if min_steps < 1 or window < 1 or accept_window < 1:
            raise ValueError(f"min_steps, window and accept_window must be >= 1, got {min_steps}, {window}, "
                             f"{accept_window}")
        if not 0 <= tol <= 1:
            raise ValueError(f"tol must lie in [0, 1] (an acceptance-rate difference), got {tol}")
        if overrun_floor <= 0:
            raise ValueError(f"overrun_floor must be > 0, got {overrun_floor}")
        if perceptible_queue not in PLACEMENTS:
            raise ValueError(f"perceptible_queue must be one of {PLACEMENTS}, got {perceptible_queue!r}")
        self.levels = Levels(levels, base_quantum, ratio, starvation_s)
        self.min_steps, self.window, self.tol, self.overrun_floor = max(min_steps, 2 * window), window, tol, overrun_floor
        self.perceptible_queue, self.accept_window = perceptible_queue, accept_window
        self.late_error = None if late_error is None else check_late_error(late_error)
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
        memo = state.memo
        if not memo["perceptible"] and self.stable(state):
            memo.update(perceptible=True, perceptible_at=state.steps)
            if self.late_error is not None:  # Alg. 1 line 13: predict the length again, from what exists
                memo["predicted_total"] = state.generated + repredict_remaining(state.request, state.generated,
                                                                                self.late_error)
        if not memo["perceptible"] or self.perceptible_queue == "demote":
            self.levels.charge(memo, service_s, self.cost)

    def remaining_length(self, state) -> float:
        """Predicted tokens still to go: the line-13 re-prediction (or the arrival prediction) minus those made."""
        total = state.memo.get("predicted_total", state.request.predicted_len)
        left = total - state.generated
        return left if left > 0 else self.overrun_floor * state.generated

    def remaining_estimate(self, state) -> float:
        """T = L (g T_ssm + T_llm) / (g A + 1), A over the last `accept_window` steps (Alg. 1 line 13)."""
        a = state.acceptance_rate(self.cost.draft_len, self.accept_window)
        return self.cost.run_time_estimate(self.remaining_length(state), a, state.context)

    def key(self, state, now):
        level = self.levels.level_now(state, now)
        if level < 0:
            return self.levels.boosted_key(state)
        if not state.memo["perceptible"]:
            return (level, state.attained, state.arrival, state.rid)
        if self.perceptible_queue == "bottom":
            level = self.levels.levels
        return (level, self.remaining_estimate(state), state.arrival, state.rid)

    def params(self):
        return {"levels": self.levels.levels, "base_quantum": self.levels.base_quantum, "ratio": self.levels.ratio,
                "min_steps": self.min_steps, "window": self.window, "tol": self.tol,
                "overrun_floor": self.overrun_floor, "starvation_s": self.levels.starvation_s,
                "perceptible_queue": self.perceptible_queue, "late_error": self.late_error,
                "accept_window": self.accept_window}
