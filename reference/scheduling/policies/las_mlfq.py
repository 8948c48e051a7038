"""LAS / skip-join MLFQ (FastServe, Wu et al. 2023, arXiv 2305.05920, sec. 4): least-attained-service with
preemption, quantised into levels (levels.py); a request joins the level whose quantum covers its first
iteration (prefill + one step) and is demoted as it attains service; FCFS within a level."""
from reference.scheduling.policies import POLICIES, Policy
from reference.scheduling.policies.levels import Levels


@POLICIES.register("las_mlfq")
class LASMLFQ(Policy):
    order = 2

    def __init__(self, levels: int = 8, base_quantum: float | None = None, ratio: float = 2.0,
                 starvation_s: float | None = None, refresh_every: int = 16):
        self.levels = Levels(levels, base_quantum, ratio, starvation_s)
        self.refresh_every = refresh_every if starvation_s is not None else None

    def on_arrival(self, state, now):
        first = self.cost.prefill_time(state.request.prompt_len) + self.cost.step_time(1, state.request.prompt_len)
        state.memo.update(level=self.levels.entry_level(first, self.cost), level_time=0.0, entered=now)

    def on_step(self, state, service_s, now):
        self.levels.serve(state.memo, service_s)
        before = state.memo["level"]
        self.levels.charge(state.memo, service_s, self.cost)
        if state.memo["level"] != before:
            state.memo["entered"] = now

    def key(self, state, now):
        level = self.levels.level_now(state, now)
        if level < 0:
            return self.levels.boosted_key(state)
        return (level, state.memo["entered"], state.rid)

    def params(self):
        return {"levels": self.levels.levels, "base_quantum": self.levels.base_quantum, "ratio": self.levels.ratio,
                "starvation_s": self.levels.starvation_s}
