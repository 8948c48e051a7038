"""The Ray executor: each shard (method x task x length x model) is one Ray task with its CPU/GPU request.

Workers return their records; this process appends them to the store as each task finishes (`ray.wait`), so the
store needs no shared filesystem on a cluster and never sees two writers from one run. Ray is started locally
(`ray.init()`) unless `--ray-address` or $RAY_ADDRESS names a cluster, or the caller already initialized it. The
workers must be able to import this package (it is installed, or the local Ray gets this checkout on PYTHONPATH).
A task that dies is retried by Ray (max_retries); a task that raises is reported, the others go on.
"""
from __future__ import annotations

import os
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[2]
# Environment the workers need to measure the same thing as this process.
FORWARDED_ENV = ("LONGCTX_GIT_SHA", "TRITON_INTERPRET", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "LONGCTX_CHECK_FINITE", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS")
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def _shard_task(worker, config, cells) -> list[list[dict]]:
    out: list[list[dict]] = []
    worker(config, cells, out.append)
    return out


def _init(address: str | None):
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--executor ray needs Ray: pip install 'longctx-bench[ray]' (or pip install ray)") from exc
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    address = address or os.environ.get("RAY_ADDRESS")
    # A Ray started here holds records only: a small object store fits CI machines with a tiny /dev/shm.
    local = {} if address else {"object_store_memory": LOCAL_OBJECT_STORE_BYTES, "include_dashboard": False}
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False, **local)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RuntimeError(f"--ray-address {address!r}: cannot connect to Ray ({exc})") from exc
    return ray


def run_ray(worker, config, shards, on_records, executor, device, desc, progress) -> None:
    ray = _init(executor.address)
    gpus = executor.gpus_for(device)
    available = ray.cluster_resources()
    if gpus > available.get("GPU", 0.0) or executor.cpus > available.get("CPU", 0.0):
        raise RuntimeError(f"--cell-cpus {executor.cpus} / --cell-gpus {gpus}: the Ray cluster has "
                           f"{available.get('CPU', 0.0):g} CPUs and {available.get('GPU', 0.0):g} GPUs; no task could run")
    task = ray.remote(num_cpus=executor.cpus, num_gpus=gpus, max_retries=2)(_shard_task)
    pending = {task.remote(worker, config, s.cells): s for s in shards}
    failed: list[str] = []
    with tqdm(total=sum(len(s.cells) for s in shards), desc=f"{desc} (ray)", unit="cell", disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ready[0])
            try:
                per_cell = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a worker may raise anything; the other shards go on
                cause = getattr(exc, "cause", None) or exc
                failed.append(f"{shard.key}: {type(cause).__name__}: {cause}")
                bar.update(len(shard.cells))
                continue
            for records in per_cell:
                on_records(records)
            bar.update(len(shard.cells))
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(shards)} shards failed (the others are stored):\n  "
                           + "\n  ".join(failed))
