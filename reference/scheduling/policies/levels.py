"""Multi-level feedback queues shared by las_mlfq and laps_sd: level i holds a request for a quantum of
q_i = base_quantum * ratio^i seconds of service, then demotes it (FastServe, arXiv 2305.05920, uses ratio 2).
With `starvation_s` set, a request that has waited that long since its last service is boosted above every
level until it has received `starvation_s` seconds of service (FastServe's starvation prevention promotes such a
request; boosting it for as long as it waited, first-starved first, guarantees it a share of the server); then keys
age with time and the simulator re-keys every `refresh_every` iterations."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Levels:
    levels: int = 8
    base_quantum: float | None = None  # seconds; None: one batch-1 step at a 512-token context
    ratio: float = 2.0
    starvation_s: float | None = None

    def __post_init__(self):
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if self.base_quantum is not None and not self.base_quantum > 0:
            raise ValueError(f"base_quantum must be > 0 seconds, got {self.base_quantum}")
        if not self.ratio >= 1:
            raise ValueError(f"ratio must be >= 1, got {self.ratio}")
        if self.starvation_s is not None and not self.starvation_s > 0:
            raise ValueError(f"starvation_s must be None or > 0 seconds, got {self.starvation_s}")

    def quantum(self, level: int, cost) -> float:
        base = self.base_quantum if self.base_quantum is not None else cost.step_time(1, 512)
        return base * self.ratio ** level

    def entry_level(self, first_iteration_s: float, cost) -> int:
        """Skip-join: the highest level whose quantum covers the request's first iteration."""
        for level in range(self.levels):
            if self.quantum(level, cost) >= first_iteration_s:
                return level
        return self.levels - 1

    def charge(self, memo: dict, service_s: float, cost) -> None:
        """Add service to the request's time at its level; demote while it exceeds that level's quantum."""
        memo["level_time"] = memo.get("level_time", 0.0) + service_s
        while memo["level"] < self.levels - 1 and memo["level_time"] >= self.quantum(memo["level"], cost):
            memo["level_time"] -= self.quantum(memo["level"], cost)
            memo["level"] += 1

    def serve(self, memo: dict, service_s: float) -> None:
        """Spend a boost (starvation prevention) by the service just received."""
        if memo.get("boost_left", 0.0) > 0:
            memo["boost_left"] = max(0.0, memo["boost_left"] - service_s)

    def level_now(self, state, now: float) -> int:
        """The request's level, or -1 while it is boosted (it starved)."""
        if self.starvation_s is not None:
            if state.memo.get("boost_left", 0.0) > 0:
                return -1
            if now - state.last_service >= self.starvation_s:
                state.memo.update(boost_left=self.starvation_s, boost_since=now)
                return -1
        return state.memo["level"]

    def boosted_key(self, state) -> tuple:
        """Boosted requests go first in the order they starved, so a boost runs to its end uninterrupted."""
        return (-1, state.memo["boost_since"], state.rid)
