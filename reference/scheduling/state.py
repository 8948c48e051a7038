"""What the simulator knows of a request while it is served; what policies read to rank it."""
from __future__ import annotations

from dataclasses import dataclass, field

from reference.scheduling.workload import Request


@dataclass
class RequestState:
    """A request plus its progress. Non-clairvoyant policies read only arrival, prompt_len, predicted_len,
    generated, steps, attained, history and last_service; `request.output_len`/`request.accepted` are the
    future, which only the SRPT oracle may read. `memo` is a policy's own per-request state (e.g. a queue level).
    """

    request: Request
    generated: int = 0  # output tokens emitted so far
    steps: int = 0  # verification steps received
    attained: float = 0.0  # service received, seconds: sum of the batch-1 step time of each step it ran
    history: list[int] = field(default_factory=list)  # accepted draft tokens of each step so far
    accepted_total: int = 0  # sum(history), kept so ranking needs no pass over the history
    last_service: float = 0.0  # end of its latest step (its arrival before the first)
    first_token: float | None = None
    finish: float | None = None
    resident: bool = False  # its KV is in device memory
    swapped: bool = False  # its KV waits in host memory (swap preemption)
    preemptions: int = 0
    memo: dict = field(default_factory=dict)

    @property
    def rid(self) -> int:
        return self.request.rid

    @property
    def arrival(self) -> float:
        return self.request.arrival

    @property
    def context(self) -> int:
        """Tokens its KV holds (prompt + output so far)."""
        return self.request.prompt_len + self.generated

    def advance(self, accepted: int, service_s: float, now: float) -> None:
        """Record one verification step that accepted `accepted` draft tokens and ended at `now`."""
        self.generated = min(self.generated + accepted + 1, self.request.output_len)
        self.history.append(accepted)
        self.accepted_total += accepted
        self.steps += 1
        self.attained += service_s
        self.last_service = now
        if self.first_token is None:
            self.first_token = now

    @property
    def done(self) -> bool:
        return self.generated >= self.request.output_len

    def acceptance_rate(self, draft_len: int, last: int | None = None) -> float:
        """Observed mean accepted / draft_len, over the last `last` steps (all when None); 0 before any step."""
        if last is None:
            return self.accepted_total / (draft_len * self.steps) if self.steps else 0.0
        h = self.history[-last:]
        return sum(h) / (draft_len * len(h)) if h else 0.0
