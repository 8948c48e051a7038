"""The device in the cell key of every performance record (harness.store.KEYED_BY_DEVICE): two kinds of device make
two cells, one device (whatever its thread count) one; accuracy cells keep device-free keys; the committed store
follows the rule; resume and the boards keep both devices' records. The kernels sweep's resume across devices is in
test_bench_cli.py."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from harness.boards.leaderboard import build_leaderboard, kernels_latency_board
from harness.dllm import bench as bench_dllm
from harness.dllm.board import dllm_board
from harness.kernels import bench as bench_kernels
from harness.provenance import device_info, device_kind
from harness.scheduling import run as run_scheduling
from harness.scheduling import serve_real
from harness.scheduling.board import schedulers_board
from harness.scheduling.pareto_rows import sched_panels
from harness.store import (KEYED_BY_DEVICE, ResultsStore, cell_key, key_device, keyed_by_device, make_record,
                           newest_records)
from suites.harness.markdown_tables import sections

ROOT = Path(__file__).resolve().parents[3]
H100, H200 = "cuda: NVIDIA H100 80GB HBM3", "cuda: NVIDIA H200"
PERF = [("kernels_bench", "decode_attention"), ("kernels_bench", "copy"), ("dllm_throughput", "prompt4096"),
        ("scheduling", "real-cpu"), ("scheduling", "decision-overhead")]
ACCURACY = [("niah", "passkey"), ("ruler", "niah_single_1"), ("dllm", "gsm8k"), ("conformance", "decode_attention"),
            ("scheduling", "paper-like"), ("scheduling", "sharegpt")]
PARAMS = {"batch": 1, "context": 4096, "dtype": "bfloat16"}


def _prov(device: str) -> dict:
    return {"device": device, "versions": {"torch": "t"}, "git_sha": "abc"}


def _legacy(suite, task, method, impl, model, params) -> str:
    """The key before the device rule: sha1 of [suite, task, method, impl, model, params]."""
    text = json.dumps([suite, task, method, impl, model, params], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()


# ---------------------------------------------------------------- the identity and the key
def test_device_kind_drops_only_what_varies_between_runs_on_one_machine():
    assert device_kind("cpu: AMD EPYC, 2 threads, 2 cores") == device_kind("cpu: AMD EPYC, 1 threads, 16 cores") \
        == "cpu: AMD EPYC"
    assert device_kind(H100) == H100 and device_kind(H200) == H200 and device_kind(H100) != device_kind(H200)
    xeon = "cpu: Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert device_kind(f"{xeon}, 8 threads, 8 cores") == xeon
    for d in (H100, "cpu: AMD EPYC, 2 threads, 2 cores"):
        assert device_kind(device_kind(d)) == device_kind(d)  # a kind is its own kind
    threads = torch.get_num_threads()
    try:  # this machine, at two thread counts: two device strings, one kind
        torch.set_num_threads(1)
        one = device_info("cpu")
        torch.set_num_threads(2)
        two = device_info("cpu")
    finally:
        torch.set_num_threads(threads)
    assert one != two and device_kind(one) == device_kind(two) and "threads" not in device_kind(one)
    for bad in ("", "  ", None):
        with pytest.raises(ValueError, match="device"):
            device_kind(bad)


@pytest.mark.parametrize("suite, task", PERF)
def test_a_performance_cell_is_one_key_per_kind_of_device(suite, task):
    key = lambda device: cell_key(suite, task, "m", "triton", "llama3-8b", PARAMS, device)  # noqa: E731
    assert keyed_by_device(suite, task)
    assert key(H100) != key(H200) and key(H100) == key(H100) == key(device_kind(H100))
    assert key("cpu: AMD EPYC, 1 threads, 2 cores") == key("cpu: AMD EPYC, 2 threads, 16 cores") != key(H100)
    assert key(H100) != _legacy(suite, task, "m", "triton", "llama3-8b", PARAMS)
    with pytest.raises(ValueError, match="names its device"):
        cell_key(suite, task, "m", "triton", "llama3-8b", PARAMS)


@pytest.mark.parametrize("suite, task", ACCURACY)
def test_an_accuracy_cell_keeps_its_device_free_key(suite, task):
    legacy = _legacy(suite, task, "m", "reference", "smollm2", PARAMS)
    assert not keyed_by_device(suite, task)
    assert cell_key(suite, task, "m", "reference", "smollm2", PARAMS) == legacy
    assert cell_key(suite, task, "m", "reference", "smollm2", PARAMS, H100) == legacy == \
        cell_key(suite, task, "m", "reference", "smollm2", PARAMS, "cpu: AMD EPYC, 2 threads, 2 cores")


def test_the_suites_performance_records_are_the_ones_keyed():
    assert keyed_by_device(bench_kernels.SUITE, "sdpa_flash") and keyed_by_device(bench_dllm.SUITE, "prompt1024")
    assert keyed_by_device(serve_real.SUITE, serve_real.TASK)  # the real loop's timings and their simulated twin
    assert keyed_by_device(run_scheduling.SUITE, run_scheduling.overhead_cells(run_scheduling.SchedConfig())[0]["task"])
    assert not any(keyed_by_device(run_scheduling.SUITE, w) for w in run_scheduling.WORKLOADS)  # simulated: cost files
    assert set(KEYED_BY_DEVICE) == {bench_kernels.SUITE, bench_dllm.SUITE, run_scheduling.SUITE}


def test_records_of_two_devices_are_two_cells_and_both_stay_newest(tmp_path):
    store = ResultsStore(tmp_path)
    args = ("kernels_bench", "decode_attention", "full", "triton", "llama3-8b", PARAMS, "latency_ms")
    h100 = make_record(*args, 0.30, "ms", provenance=_prov(H100))
    h200 = make_record(*args, 0.20, "ms", provenance=_prov(H200))
    h200_again = make_record(*args, 0.21, "ms", provenance=_prov(H200))
    h200_again["time"] = "9999-01-01T00:00:00Z"
    assert h100["cell"] == cell_key(*args[:6], H100) and h200["cell"] == cell_key(*args[:6], H200) != h100["cell"]
    assert h200_again["cell"] == h200["cell"] and key_device(h200) == H200
    store.append([h100, h200, h200_again])
    assert store.done_cells("kernels_bench") == {h100["cell"], h200["cell"]}
    newest = {r["device"]: r["value"] for r in newest_records(store.records(), "kernels_bench")}
    assert newest == {H100: 0.30, H200: 0.21}  # per device the newest; the other device's record is not hidden

    # Accuracy: one cell whatever the device, the newest record wins across devices.
    acc = ("niah", "passkey", "full", "reference", "smollm2", {"length": 512}, "exact_match")
    a = make_record(*acc, 1.0, "fraction", provenance=_prov("cpu: AMD EPYC, 2 threads, 2 cores"))
    b = make_record(*acc, 0.0, "fraction", provenance=_prov(H100))
    b["time"] = "9999-01-01T00:00:00Z"
    assert a["cell"] == b["cell"] and key_device(a) is None
    assert [r["value"] for r in newest_records([a, b], "niah")] == [0.0]


# ---------------------------------------------------------------- the committed store
def test_every_committed_record_follows_the_key_rule():
    records = ResultsStore(ROOT / "results").records()
    wrong = [(r["suite"], r["task"], r["metric"]) for r in records if r["cell"] != cell_key(
        r["suite"], r["task"], r["method"], r["impl"], r["model"], r["params"], r["device"])]
    assert records and not wrong, wrong[:5]
    assert sum(keyed_by_device(r["suite"], r["task"]) for r in records) > 0


def test_committed_dllm_throughput_of_both_gpus_stays_on_the_board():
    """Some dLLM throughput cells were measured on an H100 and on an H200: two cells now, both kept as newest."""
    recs = ResultsStore(ROOT / "results").records("dllm_throughput")

    def measured(records) -> dict:  # {device-free cell: devices with a tokens/s record}
        out: dict = {}
        for r in records:
            if r["metric"] == "tokens_per_s":
                legacy = _legacy(r["suite"], r["task"], r["method"], r["impl"], r["model"], r["params"])
                out.setdefault(legacy, set()).add(r["device"])
        return out

    stored, newest = measured(recs), measured(newest_records(recs, "dllm_throughput"))
    assert newest == stored
    assert any(devices == {H100, H200} for devices in newest.values())


# ---------------------------------------------------------------- the scheduling suite's resume
def test_scheduling_times_the_overhead_again_on_another_device_but_not_the_simulation(tmp_path, monkeypatch):
    config = run_scheduling.SchedConfig(policies=("fcfs",), workloads=("paper-like",), loads=(0.5,), n_requests=20,
                                        seeds=(0,), sweep=False, overhead_queued=20, results=str(tmp_path))

    def run_on(device: str) -> dict:
        monkeypatch.setattr(run_scheduling, "device_info", lambda name="cpu": device)
        return run_scheduling.run_scheduling(config, progress=False)

    first = run_on("cpu: AMD EPYC, 1 threads, 2 cores")
    assert (first["ran"], first["overhead_ran"]) == (1, 1)
    same = run_on("cpu: AMD EPYC, 2 threads, 2 cores")  # same kind: both skipped
    assert (same["ran"], same["skipped"], same["overhead_ran"]) == (0, 1, 0)
    other = run_on("cpu: Intel Xeon, 1 threads, 2 cores")  # the overhead is timed again; the simulation is not
    assert (other["ran"], other["overhead_ran"]) == (0, 1)
    overhead = [r for r in ResultsStore(tmp_path).records("scheduling") if r["task"] == "decision-overhead"]
    assert sorted(key_device(r) for r in overhead) == ["cpu: AMD EPYC", "cpu: Intel Xeon"]
    assert len({r["cell"] for r in overhead}) == 2


# ---------------------------------------------------------------- the boards show both devices
def _bench(device: str, ms: float) -> list[dict]:
    params = {"batch": 1, "context": 4096, "hq": 32, "hkv": 8, "head_dim": 128, "dtype": "bfloat16"}
    extra = {"checked": True, "correct": True, "copy_bandwidth_gbs": 3000.0}
    return [make_record("kernels_bench", "decode_attention", "full", "triton", "llama3-8b", params, m, float(v), u,
                        extra=extra, provenance=_prov(device))
            for m, v, u in (("latency_ms", ms, "ms"), ("bytes_read", 1e8, "bytes"),
                            ("bandwidth_gbs", 1e8 / ms / 1e6, "GB/s"), ("roofline_fraction", 0.5, "fraction"))]


def test_kernel_latency_board_shows_one_cell_of_two_devices(tmp_path):
    ResultsStore(tmp_path / "r").append(_bench(H100, 0.75) + _bench(H200, 0.5))
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["kernels.md"].read_text(encoding="utf-8")
    got = sections(md)
    for device, ms in ((H100, "0.75"), (H200, "0.5")):
        [table] = got[f"bfloat16 on {device}"]
        assert [row[3].split()[0] for row in table[1:]] == [ms]
    assert "8 records, 2 cells" in md
    board = kernels_latency_board(_bench(H100, 0.75) + _bench(H200, 0.5))
    assert len(board.records) == 8 and len(board.figures) == 2


def _sched(task, impl, device, value, method="fcfs", params=None, metric="mean_latency_s"):
    params = params or {"rate": 0.2, "n_requests": 10, "max_batch": 1, "draft_len": 4, "seed": 0, "cost_device": "cpu"}
    return make_record("scheduling", task, method, impl, "smollm2", params, metric, value,
                       "us" if metric == "decision_overhead_us" else "s", seed=params.get("seed", 0),
                       protocol={"trace": "v1"}, provenance=_prov(device))


def test_scheduling_boards_keep_two_devices_timings_apart():
    amd, intel = "cpu: AMD EPYC, 1 threads, 2 cores", "cpu: Intel Xeon, 2 threads, 2 cores"
    recs = []
    for device, real, sim in ((amd, 4.0, 3.8), (intel, 6.0, 6.6)):
        for impl, mean in (("real", real), ("sim", sim)):
            recs += [_sched("real-cpu", impl, device, mean), _sched("real-cpu", impl, device, 2 * mean,
                                                                    metric="p99_latency_s")]
        recs.append(_sched("decision-overhead", "sim", device, 7.0 if device == amd else 9.0,
                           params={"queued": 1000, "max_batch": 8, "iterations": 2000}, metric="decision_overhead_us"))
    # A simulated workload is device-independent: the newest of its cell counts, whichever machine ran it.
    recs += [_sched("paper-like", "sim", amd, 1.0), _sched("paper-like", "sim", amd, 2.0, metric="p99_latency_s"),
             _sched("paper-like", "sim", intel, 3.0), _sched("paper-like", "sim", intel, 4.0, metric="p99_latency_s")]
    for r in recs[-2:]:
        r["time"] = "9999-01-01T00:00:00Z"
    got = sections(schedulers_board(recs).markdown)

    [overhead] = got["Scheduling decision overhead"]
    assert sorted((row[-1], row[3]) for row in overhead[1:]) == [(amd, "7.00"), (intel, "9.00")]
    [vs] = got["Simulator vs real serving loop"]
    pairs = sorted((row[5], row[6], row[7], row[9]) for row in vs[1:])
    assert [p[:3] for p in pairs] == [("3.8", "4", "-5.0"), ("6.6", "6", "+10.0")]
    assert "device cpu: AMD EPYC" in pairs[0][3] and "device cpu: Intel Xeon" in pairs[1][3]
    real_cpu = sorted(h for h in got if h.startswith("real-cpu (sim)"))  # headings name what tells them apart
    assert real_cpu == ["real-cpu (sim): device cpu: AMD EPYC", "real-cpu (sim): device cpu: Intel Xeon"]
    [paper] = [h for h in got if h.startswith("paper-like")]
    assert paper == "paper-like (sim)" and got[paper][0][1][2:5] == ["3", "—", "4"]

    panels, _ = sched_panels(recs)
    reals = sorted(p["title"] for p in panels if p["short"].startswith("real-cpu (real)"))
    assert len(reals) == 2 and "cpu: AMD EPYC" in reals[0] and "cpu: Intel Xeon" in reals[1]


def test_dllm_throughput_board_has_a_section_per_device():
    params = {"prompt_len": 1024}
    recs = [make_record("dllm_throughput", "prompt1024", "vanilla", "torch", "llada-8b-random-bfloat16", params,
                        "tokens_per_s", tok, "tokens/s", protocol={"batch": 1}, provenance=_prov(device))
            for device, tok in ((H100, 10.0), (H200, 14.0))]
    assert recs[0]["cell"] != recs[1]["cell"]
    md = dllm_board(recs).markdown
    for device, tok in ((H100, "10"), (H200, "14")):
        [table, *_] = sections(md)[f"Throughput and memory: llada-8b-random-bfloat16 on {device}"]
        assert table[1][1].startswith(tok)
