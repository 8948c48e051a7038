"""Shortest job first on a predicted output length (the learning-to-rank baseline, arXiv 2408.15792): the
predictor's length (workload.py: true length x exp(sigma z)) ranks requests; a shorter predicted arrival
preempts at the next iteration. It ignores acceptance, which is the gap LAPS-SD addresses."""
from reference.scheduling.policies import POLICIES, Policy


@POLICIES.register("sjf_predicted")
class SJFPredicted(Policy):
    order = 1

    def key(self, state, now):
        return (state.request.predicted_len, state.arrival, state.rid)
