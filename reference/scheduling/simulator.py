"""Discrete-event simulator of a speculative-decoding server with continuous batching.

Each iteration the policy's best-ranked ready requests form a batch: at most `max_batch` requests and at most
`token_budget` tokens, a decoding request costing draft_len + 1 tokens and one without KV in memory also its
prefill (prompt + output so far; one such request is admitted alone even past the budget, since we do not
model chunked prefill). Requests outside the batch keep their KV while it fits in `kv_capacity` tokens; when the
batch needs room, the worst-ranked resident requests are preempted: `recompute` drops their KV (their next
iteration prefills again), `swap` moves it to host memory (swap-out now, swap-in when resumed, each
`swap_s_per_token` per token). An iteration lasts

    t = step_time(batch, total context) + prefill_time(prefilled tokens) + swap time

(cost_model.py), after which every member emits the tokens of its next trace step (accepted + 1, the last cut at
its output length). A request's first token comes at the end of its first iteration; it finishes with its last.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

from reference.scheduling.cost_model import SpecCostModel
from reference.scheduling.policies import Policy
from reference.scheduling.state import RequestState
from reference.scheduling.workload import Request


@dataclass(frozen=True)
class ServerConfig:
    max_batch: int = 8
    token_budget: int = 4096
    kv_capacity: int | None = None  # tokens of KV that fit in device memory; None: unbounded
    preemption: str = "recompute"  # or "swap"
    swap_s_per_token: float = 1e-6

    def validate(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.token_budget < 1:
            raise ValueError(f"token_budget must be >= 1, got {self.token_budget}")
        if self.kv_capacity is not None and self.kv_capacity < 1:
            raise ValueError(f"kv_capacity must be None or >= 1 tokens, got {self.kv_capacity}")
        if self.preemption not in ("recompute", "swap"):
            raise ValueError(f"preemption must be 'recompute' or 'swap', got {self.preemption!r}")
        if self.swap_s_per_token < 0:
            raise ValueError(f"swap_s_per_token must be >= 0, got {self.swap_s_per_token}")


@dataclass
class Iteration:
    start: float
    end: float
    batch: tuple[int, ...]
    prefilled: int  # tokens prefilled in this iteration


@dataclass
class SimResult:
    states: list[RequestState]
    iterations: list[Iteration] = field(default_factory=list)
    decision_s: float = 0.0  # time spent ranking and picking, over all iterations
    n_iterations: int = 0

    @property
    def latencies(self) -> list[float]:
        return [s.finish - s.arrival for s in self.states]

    @property
    def ttfts(self) -> list[float]:
        return [s.first_token - s.arrival for s in self.states]


class ReadyQueue:
    """The ready requests in a heap ordered by the policy's key; stale keys never exist (pop, run, push)."""

    def __init__(self, policy: Policy):
        self.policy, self.heap, self.seq = policy, [], 0

    def push(self, state: RequestState, now: float) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.policy.key(state, now), self.seq, state))

    def pop(self) -> RequestState:
        return heapq.heappop(self.heap)[2]

    def rekey(self, now: float) -> None:
        states = [e[2] for e in self.heap]
        self.heap = []
        for s in states:
            self.push(s, now)

    def __len__(self) -> int:
        return len(self.heap)


def pick_batch(queue: ReadyQueue, config: ServerConfig, draft_len: int, now: float) -> list[RequestState]:
    """The best-ranked requests that fit the batch and token budget; the others go back to the queue."""
    batch, skipped, tokens = [], [], 0
    scan = config.max_batch + 16  # bounded: a deep queue of oversized prefills must not cost O(n) per iteration
    while queue and len(batch) < config.max_batch and scan > 0:
        scan -= 1
        s = queue.pop()
        need = draft_len + 1 + (0 if s.resident or s.swapped else s.context)
        if tokens + need <= config.token_budget or not batch:
            batch.append(s)
            tokens += need
        else:
            skipped.append(s)
    for s in skipped:
        queue.push(s, now)
    return batch


def simulate(requests: list[Request], policy: Policy, cost: SpecCostModel, config: ServerConfig = ServerConfig(),
             record_iterations: bool = False) -> SimResult:
    """Serve `requests` under `policy` until all finish; deterministic for given inputs."""
    config.validate()
    if not requests:
        raise ValueError("requests must not be empty")
    g = cost.draft_len
    for r in requests:
        if r.output_len < 1 or len(r.accepted) == 0 or any(not 0 <= a <= g for a in r.accepted):
            raise ValueError(f"request {r.rid}: output_len must be >= 1 and accepted values in [0, draft_len={g}]")
        if config.kv_capacity is not None and r.prompt_len + r.output_len + g + 1 > config.kv_capacity:
            raise ValueError(f"request {r.rid} needs {r.prompt_len + r.output_len + g + 1} KV tokens, more than "
                             f"kv_capacity={config.kv_capacity}")
    policy.bind(cost)
    pending = sorted((RequestState(r, last_service=r.arrival) for r in requests), key=lambda s: (s.arrival, s.rid))
    result = SimResult(states=sorted(pending, key=lambda s: s.rid))
    queue, resident = ReadyQueue(policy), {}  # resident: rid -> state holding device KV
    now, nxt, left, it = 0.0, 0, len(pending), 0
    while left:
        if not queue and nxt < len(pending) and pending[nxt].arrival > now:
            now = pending[nxt].arrival  # idle until the next arrival
        t0 = time.perf_counter()
        while nxt < len(pending) and pending[nxt].arrival <= now:
            policy.on_arrival(pending[nxt], now)
            queue.push(pending[nxt], now)
            nxt += 1
        if policy.refresh_every and it % policy.refresh_every == 0:
            queue.rekey(now)
        batch = pick_batch(queue, config, g, now)
        result.decision_s += time.perf_counter() - t0
        extra, prefilled = 0.0, 0
        if config.kv_capacity is not None:
            extra += _make_room(batch, resident, queue, policy, config, g, now)
        for s in batch:
            if s.swapped:
                extra += s.context * config.swap_s_per_token
                s.swapped = False
            elif not s.resident:
                prefilled += s.context
            s.resident = True
            resident[s.rid] = s
        start = now
        now += cost.step_time(len(batch), sum(s.context for s in batch)) + cost.prefill_time(prefilled) + extra
        t0 = time.perf_counter()
        for s in batch:
            service = cost.step_time(1, s.context)
            s.advance(s.request.accepted[s.steps], service, now)
            if s.done:
                s.finish, s.resident = now, False
                resident.pop(s.rid, None)
                left -= 1
            else:
                policy.on_step(s, service, now)
                queue.push(s, now)
        result.decision_s += time.perf_counter() - t0
        if record_iterations:
            result.iterations.append(Iteration(start, now, tuple(s.rid for s in batch), prefilled))
        it += 1
    result.n_iterations = it
    return result


def _make_room(batch, resident, queue, policy, config, g, now) -> float:
    """Preempt the worst-ranked resident requests outside the batch until the batch's KV fits; return swap-out s."""
    in_batch = {s.rid for s in batch}
    need = sum(s.context + g + 1 for s in batch)
    held = sum(s.context for rid, s in resident.items() if rid not in in_batch)
    if need + held <= config.kv_capacity:
        return 0.0
    victims = sorted((s for rid, s in resident.items() if rid not in in_batch), key=lambda s: policy.key(s, now),
                     reverse=True)
    seconds = 0.0
    for s in victims:
        if need + held <= config.kv_capacity:
            break
        held -= s.context
        del resident[s.rid]
        s.resident = False
        s.preemptions += 1
        if config.preemption == "swap":
            s.swapped = True
            seconds += s.context * config.swap_s_per_token
    while need + held > config.kv_capacity and len(batch) > 1:  # the batch alone is too big: shed its worst
        worst = max(batch, key=lambda s: policy.key(s, now))
        batch.remove(worst)
        need -= worst.context + g + 1
        if worst.resident:
            held += worst.context
        queue.push(worst, now)
    return seconds
