"""Scheduling policies, one file each, registered by name: fcfs, sjf_predicted, las_mlfq, srpt_len_late, laps_sd,
srpt_oracle.

A policy ranks requests by `key(state, now)` (smaller runs first); each iteration the simulator runs the
`max_batch` best-ranked ready requests (continuous batching, preemptive: a better-ranked arrival displaces a
running request at the next iteration). A key may change only when its request runs, so the simulator keeps a
heap and re-keys only the requests that ran, unless the policy sets `refresh_every` (keys that age with time:
every so many iterations all waiting requests are re-keyed). Adding a policy: one file with a `Policy`
subclass decorated by `@POLICIES.register(name)`; every module of this package is imported the first time the
registry is read (reference/registry.py), and so are plugins (LONGCTX_PLUGINS).
"""
from __future__ import annotations

from reference.registry import Registry
from reference.scheduling.cost_model import SpecCostModel


class Policy:
    """Base class: subclasses set `name` and implement `key`; `clairvoyant` policies may read the future."""

    name = ""  # set by @POLICIES.register(name)
    order = float("inf")  # where listings and boards put it
    clairvoyant = False
    refresh_every: int | None = None

    def bind(self, cost: SpecCostModel) -> None:
        """Called once before a simulation with the cost model the server runs on."""
        self.cost = cost

    def on_arrival(self, state, now: float) -> None:
        """A request joined the queue (set its `state.memo`)."""

    def on_step(self, state, service_s: float, now: float) -> None:
        """The request ran one step that cost `service_s` seconds of service (batch-1 step time)."""

    def key(self, state, now: float) -> tuple:
        raise NotImplementedError

    def params(self) -> dict:
        """The policy's settings, for records."""
        return {}


POLICIES = Registry("policy", packages=(__name__,))


def make_policy(name: str, **params) -> Policy:
    """A fresh policy by name; ValueError names the unknown policy or parameter."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; registered: {sorted(POLICIES)}")
    try:
        return POLICIES.get(name)(**params)
    except TypeError as exc:
        raise ValueError(f"policy {name!r}: bad parameters {params}: {exc}") from None


def policy_names() -> list[str]:
    """Registered policies, in their `order`."""
    return POLICIES.names()
