"""Executors: where the cells of a sweep run. `local` (default) runs them in this process; `ray` sends each shard
(one method x task x length x model) to a Ray worker. A new executor is one file here plus one line in EXECUTORS.

A suite hands an executor a *worker* (a module-level function `worker(config, cells, emit)` that measures a list
of cells and calls `emit(records)` once per finished cell), its config, and its cells grouped into shards. The
executor calls `on_records(records)` in this process for every finished cell, as soon as it is known; the suite
appends them to the store there, so the store has one writer per run whatever runs the cells, and a run that is
killed keeps every cell that finished before it (docs/design.md, "Scale-out on Ray").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

Emit = Callable[[list[dict]], None]
Worker = Callable[[Any, list, Emit], None]


@dataclass(frozen=True)
class Shard:
    """One unit of scheduling: `key` names it (method, task, length, model), `cells` are what its worker measures."""

    key: tuple
    cells: list


@dataclass(frozen=True)
class ExecutorConfig:
    """--executor NAME, --ray-address, --cell-cpus, --cell-gpus (None: 1 when the suite runs on CUDA, else 0)."""

    name: str = "local"
    address: str | None = None
    cpus: float = 1.0
    gpus: float | None = None

    def validate(self) -> None:
        if self.name not in EXECUTORS:
            raise ValueError(f"executor (--executor): unknown {self.name!r}; known: {sorted(EXECUTORS)}")
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ValueError(f"cell_cpus (--cell-cpus) must be a finite number > 0, got {self.cpus}")
        if self.gpus is not None and not (math.isfinite(self.gpus) and self.gpus >= 0):
            raise ValueError(f"cell_gpus (--cell-gpus) must be a finite number >= 0, got {self.gpus}")

    def gpus_for(self, device: str) -> float:
        return self.gpus if self.gpus is not None else (1.0 if str(device).startswith("cuda") else 0.0)


LOCAL = ExecutorConfig()


def group_shards(cells: list, key: Callable[[Any], tuple]) -> list[Shard]:
    """Cells grouped by key, in first-seen order."""
    groups: dict[tuple, list] = {}
    for c in cells:
        groups.setdefault(key(c), []).append(c)
    return [Shard(k, v) for k, v in groups.items()]


def execute(worker: Worker, config: Any, shards: list[Shard], on_records: Emit, executor: ExecutorConfig = LOCAL,
            device: str = "cpu", desc: str = "cells", progress: bool = True) -> None:
    """Run every shard's cells with `worker` on `executor`; `on_records(records)` per finished cell, here.

    Locally an error stops the run (every cell finished before it is stored); on Ray a failing shard does not stop
    the others, and one RuntimeError naming every failed shard is raised at the end.
    """
    executor.validate()
    if not shards:
        return
    EXECUTORS[executor.name](worker, config, shards, on_records, executor, device, desc, progress)


# One line per executor (imported last: they use Shard and ExecutorConfig above).
from harness.executors.local import run_local  # noqa: E402
from harness.executors.ray_tasks import run_ray  # noqa: E402

EXECUTORS: dict[str, Callable] = {"local": run_local, "ray": run_ray}
