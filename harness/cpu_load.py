"""CPU timings that mean what they say: how many threads a run uses, and whether the machine was oversubscribed.

A wall-clock time measured while more tasks want to run than the machine has cores says more about the other tasks
than about the method (one NIAH cell decoded at 74.7 ms/token with one thread and 290.9 ms/token with the default
thread count on the same loaded 2-core machine). So every CPU timing record carries the thread count, the cores
available, and the mean number of runnable tasks during the cell (`procs_running` of /proc/stat, sampled); a cell
whose mean exceeds the cores is marked unreliable, and boards keep such records off latency fronts.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def available_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings counted once)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            siblings = str(cpu)
        cores.add(siblings)
    return max(1, len(cores))


def default_threads() -> int:
    """$OMP_NUM_THREADS when set (a test suite or a job scheduler decided), else the physical cores this process may
    use less those other work keeps busy (the 1-minute load average, rounded): on a 2-core machine where another
    process holds one core, one thread, since a second would make every parallel step wait for the busy core."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env)
    cores = available_cores()
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, cores - busy)


def set_threads(threads: int | None) -> int:
    """torch's intra-op threads: `threads`, or `default_threads()` when None; exported as OMP_NUM_THREADS too, so
    subprocesses and Ray workers use the same. Returns the number set."""
    import torch

    n = default_threads() if threads is None else threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads (--threads) must be a positive int, got {threads!r}")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    return n


def runnable_tasks() -> int | None:
    """The machine's runnable tasks now (`procs_running` of /proc/stat), None where there is no /proc/stat."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class LoadSampler:
    """Context manager: samples the runnable tasks every `interval` s on a daemon thread while the block runs.

    `summary()` -> {"threads", "cores", "load_mean", "load_max", "samples", "reliable"}; off Linux (no /proc/stat)
    the load fields are None and `reliable` is None (unknown). The sampler itself is counted out of the load.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            n = runnable_tasks()
            if n is not None:
                self.samples.append(max(0, n - 1))  # this sampler was running while it read
            self._stop.wait(self.interval)

    def __enter__(self) -> "LoadSampler":
        if runnable_tasks() is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict:
        import torch

        cores, threads = available_cores(), torch.get_num_threads()
        if not self.samples:
            return {"threads": threads, "cores": cores, "load_mean": None, "load_max": None, "samples": 0,
                    "reliable": None}
        mean = sum(self.samples) / len(self.samples)
        return {"threads": threads, "cores": cores, "load_mean": round(mean, 3), "load_max": max(self.samples),
                "samples": len(self.samples), "reliable": mean <= cores}

