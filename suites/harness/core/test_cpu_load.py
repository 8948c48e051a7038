"""CPU timings carry their thread count and the machine's load (harness/cpu_load.py); a timing taken on an
oversubscribed CPU stays off the latency fronts (harness/boards/pareto_rows.py)."""
from __future__ import annotations

import pytest
import torch

from harness import cpu_load
from harness.boards.pareto_rows import timing_reliable
from harness.kv.pareto_rows import kv_panels
from suites.harness.boards.test_pareto_board import kv_cell


def _sampled(monkeypatch, readings: list[int], cores: int = 2) -> dict:
    """A sampler whose /proc/stat readings are `readings` (the sampler itself included), on `cores` cores."""
    feed = iter(readings + [readings[-1]] * 1000)
    monkeypatch.setattr(cpu_load, "runnable_tasks", lambda: next(feed))
    monkeypatch.setattr(cpu_load, "available_cores", lambda: cores)
    with cpu_load.LoadSampler(interval=0.001) as load:
        while len(load.samples) < len(readings) - 1:
            pass
    return load.summary()


def test_load_above_the_cores_is_unreliable(monkeypatch):
    calm = _sampled(monkeypatch, [1, 2, 3, 3])  # 0..2 others runnable beside the sampler on 2 cores
    assert calm["reliable"] is True and calm["load_max"] == 2 and calm["cores"] == 2
    busy = _sampled(monkeypatch, [1, 4, 5, 5])
    assert busy["reliable"] is False and busy["load_mean"] > 2
    assert busy["threads"] == torch.get_num_threads()


def test_no_proc_stat_means_unknown(monkeypatch):
    monkeypatch.setattr(cpu_load, "runnable_tasks", lambda: None)
    with cpu_load.LoadSampler() as load:
        pass
    assert load.summary()["reliable"] is None and load.summary()["samples"] == 0


def test_set_threads_follows_the_environment_and_refuses_nonsense(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert cpu_load.default_threads() == 1 and cpu_load.set_threads(None) == 1 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(cpu_load, "available_cores", lambda: 4)
        monkeypatch.setattr(cpu_load.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
        assert cpu_load.default_threads() == 3  # one core busy elsewhere
        monkeypatch.setattr(cpu_load.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
        assert cpu_load.default_threads() == 1
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="--threads"):
                cpu_load.set_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_unreliable_timings_stay_off_the_latency_front():
    fast_but_busy = kv_cell("niah", "streaming_llm", 1024, 1.0, 50.0, 100.0, latency=(1.0, 1.0))
    for r in fast_but_busy:
        if r["metric"] in ("decode_ms_per_token", "compress_ms"):
            r["extra"]["load"] = {"reliable": False, "load_mean": 3.5, "cores": 2}
    honest = kv_cell("niah", "full", 1024, 1.0, 100.0, 100.0, latency=(5.0, 2.0))
    assert not timing_reliable(fast_but_busy[3]) and timing_reliable(honest[3])
    (panel,), _ = kv_panels(fast_but_busy + honest)
    rows = {r["label"]: r for r in panel["rows"]}
    assert rows["streaming_llm"]["lat"] is None and rows["full"]["lat"] == 5.0
    assert rows["streaming_llm"]["cols"][5] == "not measured" and "1 timings taken while the CPU was oversubscribed" \
        in panel["caption"]
