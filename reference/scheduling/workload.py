"""Workloads: Poisson arrivals, output lengths, and a real acceptance trace replayed by every request.

Each request takes a real trace (fixtures/scheduling/traces_*.jsonl, drawn with replacement). Its output length
(and prompt length) is either the trace's own ("traces": exact replay, as the real serving loop will decode it)
or drawn from a published length distribution (fixtures/scheduling/output_lengths.json, sources cited there). A request longer
than its trace keeps decoding with the acceptance of the trace's second half, cycled: acceptance drifts early
and settles (docs/scheduling.md), so the settled part is the one to extend. The length predictor that
`sjf_predicted` and `laps_sd` read is the true length times exp(sigma z), z ~ N(0, 1), sigma = predictor_error;
each request also carries its own draw `late_z` for the re-prediction at the perceptible moment (predictor.py).

`acceptance`: "traces" replays the measured traces (n-gram prompt-lookup drafting, see harness/scheduling/run.py), or the
name of a parametric scenario (acceptance.py) that draws each request's acceptance for `draft_len` draft tokens.
Draws beyond the arrival stream (late_z, scenario acceptance) come from per-request generators seeded by
(seed, request id), so adding them leaves every earlier workload of a seed unchanged.
"""
from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

from reference.jsonl import MalformedRowWarning, read_json_object
from reference.scheduling.acceptance import SCENARIOS, request_acceptance
from reference.scheduling.trace import Trace, emitted

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scheduling"
LENGTHS_FILE = FIXTURES / "output_lengths.json"


@dataclass(frozen=True)
class Request:
    """A request as it arrives: what a scheduler may know (arrival, prompt, predicted length) and what it may not
    (output_len, accepted: the per-step acceptance it will see), the latter read only by the SRPT oracle."""

    rid: int
    arrival: float
    prompt_len: int
    output_len: int
    accepted: tuple[int, ...]  # one entry per step, exactly enough steps to emit output_len tokens
    predicted_len: int
    trace_id: str = ""
    late_z: float = 0.0  # the late length predictor's standard-normal draw (predictor.py)


@dataclass(frozen=True)
class WorkloadSpec:
    """lengths: "traces" (each trace's own length) or a key of output_lengths.json ("sharegpt", "alpaca")."""

    name: str
    lengths: str = "traces"
    n_requests: int = 200
    rate: float = 1.0  # requests per second (Poisson)
    predictor_error: float = 0.5
    seed: int = 0
    acceptance: str = "traces"  # or a key of acceptance.SCENARIOS
    draft_len: int = 4  # draft tokens per step of a parametric scenario

    def validate(self) -> None:
        if self.n_requests < 1:
            raise ValueError(f"n_requests must be >= 1, got {self.n_requests}")
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise ValueError(f"rate must be a positive number of requests per second, got {self.rate!r}")
        if not 0 <= self.predictor_error < math.inf:
            raise ValueError(f"predictor_error must be a finite number >= 0, got {self.predictor_error}")
        if self.acceptance != "traces" and self.acceptance not in SCENARIOS:
            raise ValueError(f"acceptance must be 'traces' or one of {sorted(SCENARIOS)}, got {self.acceptance!r}")
        if self.acceptance != "traces" and self.lengths == "traces":
            raise ValueError("acceptance: a parametric scenario needs lengths from a distribution, not 'traces'")
        if isinstance(self.draft_len, bool) or not isinstance(self.draft_len, int) or self.draft_len < 1:
            raise ValueError(f"draft_len must be an integer >= 1, got {self.draft_len!r}")


def check_distribution(d) -> dict:
    """`d` if it is a usable length distribution, else ValueError naming the bad field."""
    if not isinstance(d, dict):
        raise ValueError(f"a length distribution must be a JSON object, got {type(d).__name__}")
    for key in ("mean_output", "mean_input", "sigma", "max_len"):
        v = d.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"field {key!r} must be a finite number, got {v!r:.40}")
    if not d["mean_output"] > 0 or not d["mean_input"] > 0:
        raise ValueError(f"fields 'mean_output' and 'mean_input' must be > 0, got {d['mean_output']}, {d['mean_input']}")
    if not 0 <= d["sigma"] <= 10:
        raise ValueError(f"field 'sigma' must lie in [0, 10], got {d['sigma']}")
    if not isinstance(d["max_len"], int) or not 1 <= d["max_len"] <= 2**31 - 1:
        raise ValueError(f"field 'max_len' must be an integer in [1, 2**31 - 1], got {d['max_len']}")
    return d


def length_distributions(path: Path = LENGTHS_FILE) -> dict:
    """{name: distribution} of a JSON object of length distributions (fixtures/scheduling/output_lengths.json;
    keys starting with "_" are comments). A malformed entry is reported (a warning naming the file and the key)
    and skipped; FileNotFoundError for a missing file, ValueError for a file that is not such an object or holds
    no valid entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"length distributions: {str(path)!r} is not a file")
    data = read_json_object(path, "length distributions")
    out = {}
    for name, d in data.items():
        if name.startswith("_"):
            continue
        try:
            out[name] = check_distribution(d)
        except ValueError as exc:
            warnings.warn(f"{path}: distribution {name!r}: {exc}; skipped", MalformedRowWarning, stacklevel=2)
    if not out:
        raise ValueError(f"length distributions: {str(path)!r} holds no valid distribution")
    return out


def extend_acceptance(trace: Trace, output_len: int) -> tuple[int, ...]:
    """Per-step acceptance for `output_len` tokens: the trace, then its second half cycled, cut when enough."""
    acc = list(trace.accepted)
    tail = acc[len(acc) // 2:] or acc
    i = 0
    while sum(a + 1 for a in acc) < output_len:
        acc.append(tail[i % len(tail)])
        i += 1
    return tuple(acc[:len(emitted(acc, output_len))])


def _lognormal(rng: random.Random, mean: float, sigma: float, cap: int) -> int:
    """round(exp(N(mu, sigma^2))) with mu = ln(mean) - sigma^2 / 2 (so its mean is `mean`), clipped to [1, cap]."""
    return int(min(max(round(math.exp(rng.gauss(math.log(mean) - sigma ** 2 / 2, sigma))), 1), cap))


def make_requests(spec: WorkloadSpec, traces: list[Trace]) -> list[Request]:
    """`spec.n_requests` requests with Poisson arrivals, deterministic under spec.seed."""
    spec.validate()
    if not traces:
        raise ValueError("traces must hold at least one acceptance trace")
    dists = None if spec.lengths == "traces" else length_distributions()
    if dists is not None and spec.lengths not in dists:
        raise ValueError(f"lengths must be 'traces' or one of {sorted(dists)}, got {spec.lengths!r}")
    rng = random.Random(spec.seed)
    t, out = 0.0, []
    for rid in range(spec.n_requests):
        t += rng.expovariate(spec.rate)
        trace = traces[rng.randrange(len(traces))]
        if dists is None:
            prompt, length = trace.prompt_len, trace.output_len
        else:
            d = dists[spec.lengths]
            length = _lognormal(rng, d["mean_output"], d["sigma"], d["max_len"])
            prompt = _lognormal(rng, d["mean_input"], d["sigma"], d["max_len"])
        predicted = max(1, round(length * math.exp(spec.predictor_error * rng.gauss(0.0, 1.0))))
        own = random.Random(f"{spec.seed}:{rid}")  # str seeds hash deterministically (sha512)
        late_z = own.gauss(0.0, 1.0)
        if spec.acceptance == "traces":
            acc, source = extend_acceptance(trace, length), trace.id
        else:
            acc = request_acceptance(own, SCENARIOS[spec.acceptance], length, spec.draft_len)
            source = spec.acceptance
        out.append(Request(rid, t, prompt, length, acc, predicted, source, late_z))
    return out
