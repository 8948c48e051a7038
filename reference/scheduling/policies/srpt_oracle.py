"""SRPT oracle: shortest true remaining processing time first. Clairvoyant: it reads the request's future
(remaining steps of its acceptance sequence), so it is no real policy but a lower bound on mean latency
(SRPT is optimal for mean response time on one server, Schrage 1968)."""
from reference.scheduling.policies import POLICIES, Policy


@POLICIES.register("srpt_oracle")
class SRPTOracle(Policy):
    order = 5
    clairvoyant = True

    def key(self, state, now):
        remaining_steps = len(state.request.accepted) - state.steps
        return (remaining_steps * self.cost.step_time(1, state.context), state.arrival, state.rid)
