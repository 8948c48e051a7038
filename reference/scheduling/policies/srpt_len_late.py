"""SRPT on a re-predicted length, blind to acceptance: the ablation of LAPS-SD's line 13 (arXiv 2505.17074, Alg. 1).

A request's first `repredict_after` steps run before every re-predicted request, least attained service first (as
LAPS-SD's non-perceptible requests do: the re-prediction needs a prefix, so every request must get one); then its
length is predicted again (predictor.py, error `late_error`) as LAPS-SD does at its perceptible moment, and it is
ranked by predicted remaining tokens, shortest first. It never looks at the acceptance rate, so on the board
sjf_predicted -> srpt_len_late -> laps_sd separates the gain of a better length estimate from the gain of
acceptance awareness.
"""
from reference.scheduling.policies import POLICIES, Policy
from reference.scheduling.predictor import check_late_error, repredict_remaining


@POLICIES.register("srpt_len_late")
class SRPTLenLate(Policy):
    order = 3

    def __init__(self, repredict_after: int = 8, late_error: float = 0.1, overrun_floor: float = 0.5):
        if isinstance(repredict_after, bool) or not isinstance(repredict_after, int) or repredict_after < 0:
            raise ValueError(f"repredict_after must be an integer >= 0, got {repredict_after!r}")
        if overrun_floor <= 0:
            raise ValueError(f"overrun_floor must be > 0, got {overrun_floor}")
        self.repredict_after, self.late_error = repredict_after, check_late_error(late_error)
        self.overrun_floor = overrun_floor

    def on_arrival(self, state, now):
        if self.repredict_after == 0:
            state.memo["predicted_total"] = repredict_remaining(state.request, 0, self.late_error)

    def on_step(self, state, service_s, now):
        if state.steps == self.repredict_after:
            state.memo["predicted_total"] = state.generated + repredict_remaining(state.request, state.generated,
                                                                                  self.late_error)

    def key(self, state, now):
        if "predicted_total" not in state.memo:
            return (0, state.attained, state.arrival, state.rid)
        left = state.memo["predicted_total"] - state.generated
        return (1, left if left > 0 else self.overrun_floor * state.generated, state.arrival, state.rid)

    def params(self):
        return {"repredict_after": self.repredict_after, "late_error": self.late_error,
                "overrun_floor": self.overrun_floor}
