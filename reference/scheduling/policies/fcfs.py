"""First come, first served (vLLM's default): earliest arrival first; with continuous batching it never
preempts a running request for a later one."""
from reference.scheduling.policies import POLICIES, Policy


@POLICIES.register("fcfs")
class FCFS(Policy):
    order = 0

    def key(self, state, now):
        return (state.arrival, state.rid)
