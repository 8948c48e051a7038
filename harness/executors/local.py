"""The local executor: every cell in this process, in plan order, one worker call for all of them.

One call (not one per shard) lets a suite share work across shards, e.g. NIAH prefills each prompt once for every
method; the records are the same as when each shard runs alone.
"""
from __future__ import annotations

from tqdm.auto import tqdm


def run_local(worker, config, shards, on_records, executor, device, desc, progress) -> None:
    cells = [c for s in shards for c in s.cells]
    with tqdm(total=len(cells), desc=desc, unit="cell", disable=not progress) as bar:
        def emit(records: list[dict]) -> None:
            on_records(records)
            bar.update(1)

        worker(config, cells, emit)
