"""The kernel benchmark's implementations, read from the registry: each `--impls` name with what it runs.

Every op whose spec has a `bench` (reference/bench_spec.py: its inputs per cell and bytes-read model) is
benchmarked with every implementation registered for it (`@register_impl`, unless `bench=False`) and every baseline
(`register_baseline`), each with the hooks registered beside it. So a new kernel file, in optimized/ or a plugin,
appears in the benchmark's grid with no edit here or in harness/kernels/bench.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from reference.bench_spec import ImplBench, OpBench
from reference.registry import all_ops, baselines, bench_hooks


@dataclass(frozen=True)
class BenchImpl:
    """One benchmarked kernel: its `--impls` name, the op and registered name, its hooks and the op's bench spec."""

    name: str
    op: str
    impl: str
    baseline: bool
    hooks: ImplBench
    op_bench: OpBench

    @property
    def task(self) -> str:
        """The records' `task` (the op, unless the hooks keep an older name)."""
        return self.hooks.task or self.op

    @property
    def label(self) -> str:
        """The records' `impl`."""
        return self.hooks.label or self.impl

    @property
    def method(self) -> str:
        """The records' `method`: the KV cache the op reads."""
        return self.op_bench.method


def bench_impls() -> dict[str, BenchImpl]:
    """Every benchmarked implementation and baseline by `--impls` name, ordered by their `order` (then as registered).

    Raises ValueError when two of them claim one `--impls` name (give one a `name` in its ImplBench)."""
    found: list[BenchImpl] = []
    for op, spec in all_ops().items():
        if spec.bench is None:
            continue
        for impl, hooks in bench_hooks(op).items():
            found.append(BenchImpl(hooks.name or impl, op, impl, False, hooks, spec.bench))
        for impl, hooks in baselines(op).items():
            found.append(BenchImpl(hooks.name or impl, op, impl, True, hooks, spec.bench))
    out: dict[str, BenchImpl] = {}
    for entry in sorted(found, key=lambda e: e.hooks.order):  # stable: registration order among equal orders
        if entry.name in out:
            other = out[entry.name]
            raise ValueError(f"two benchmarked kernels are named {entry.name!r}: {other.op}/{other.impl} and "
                             f"{entry.op}/{entry.impl}; give one a name (register_impl(..., bench=ImplBench(name=...)))")
        out[entry.name] = entry
    return out


def impl_names() -> tuple[str, ...]:
    """The `--impls` names in order: the benchmark's default."""
    return tuple(bench_impls())
