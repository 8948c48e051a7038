"""The kernels benchmark off the GPU: arguments, the grid and its cells, the memory rule, records, the table, resume,
and the whole sweep on the CPU with a fake timer (the GPU run itself is `ci/gpu.sh`)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import build_parser, main
from harness.kernels import bench as bk
from harness.gpu_timing import (RotatingInputs, achieved_bandwidth, bench_ms, copies_needed, copy_bandwidth_gbs,
                                tensor_bytes)
from harness.store import REQUIRED, ResultsStore, validate

ROOT = Path(__file__).resolve().parents[3]
PROV = {"device": "cuda: NVIDIA H100 80GB HBM3", "versions": {"torch": "x"}, "git_sha": "abc"}


def _config(args: list[str]) -> bk.KernelBenchConfig:
    return bk.config_from_args(build_parser().parse_args(["bench", *args]))


# ---------------------------------------------------------------- arguments and the grid
def test_default_grid_caps_long_contexts_for_large_batches():
    config = _config([])
    assert config.shapes == ("llama3-8b", "smollm2") and config.dtype == "bfloat16"
    assert config.impls == ("sdpa_flash", "triton_dense", "triton_fourier", "triton_fourier_spectral",
                            "triton_fourier_tiles", "triton_fourier_lowrank", "flashinfer")
    cells = bk.grid(config)
    assert ("llama3-8b", 1, 131072) in cells and ("llama3-8b", 4, 65536) in cells
    assert ("llama3-8b", 4, 131072) not in cells and ("smollm2", 16, 65536) not in cells
    assert ("llama3-8b", 8, 32768) in cells and ("llama3-8b", 8, 65536) not in cells  # the targets name batch 8 at 32k
    assert len(cells) == 2 * (6 + 5 + 4 + 4)


def test_explicit_lists_measure_the_cross_product():
    config = _config(["--shapes", "smollm2", "--contexts", "4096,131072", "--batches", "16", "--impls",
                      "sdpa_flash,triton_fourier", "--dtype", "float16", "--results", "/tmp/x"])
    assert bk.grid(config) == [("smollm2", 16, 4096), ("smollm2", 16, 131072)]
    assert config.impls == ("sdpa_flash", "triton_fourier") and config.dtype == "float16" and config.results == "/tmp/x"
    assert bk.grid(_config(["--full-grid"]))[-1] == ("smollm2", 16, 131072)
    quick = _config(["--quick"])
    assert bk.grid(quick) == [("llama3-8b", b, c) for b in (1, 4) for c in (4096, 32768)]


@pytest.mark.parametrize("args", [["--contexts", "4k"], ["--batches", ""], ["--dtype", "float64"], ["--suite", "niah"]])
def test_malformed_arguments_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bench", *args])
    assert exc.value.code == 2


@pytest.mark.parametrize("args, message", [
    (["--shapes", "gpt2"], "shapes (--shapes): unknown ['gpt2']"),
    (["--impls", "cuda_magic"], "impls (--impls): unknown ['cuda_magic']"),
    (["--contexts", "512"], "contexts (--contexts) must be integers >= 1025"),
    (["--batches", "0"], "batches (--batches) must be integers >= 1"),
])
def test_invalid_configs_exit_2_with_the_reason(args, message, capsys):
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_short_contexts_are_fine_without_the_fourier_kernel():
    assert _config(["--contexts", "512", "--impls", "sdpa_flash"]).contexts == (512,)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given on a machine without CUDA")
def test_bench_without_cuda_exits_2_with_a_clear_message(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--suite", "kernels", "--results", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs a CUDA GPU" in proc.stderr and "ci/gpu.sh" in proc.stderr
    assert not (tmp_path / "kernels_bench.jsonl").exists()


def test_plan_gives_stable_distinct_cells():
    config = _config(["--quick"])
    a = bk.plan(config, {"llama3-8b": "FLASH_ATTENTION/enable_gqa"}, device=PROV["device"])
    b = bk.plan(config, {"llama3-8b": "FLASH_ATTENTION/enable_gqa"}, device=PROV["device"])
    assert [c["cell"] for c in a] == [c["cell"] for c in b]
    assert len({c["cell"] for c in a}) == len(a) == 4 * len(bk.bench_impls()) == 4 * 7
    sdpa = [c for c in a if c["impl"] == "sdpa_flash"][0]
    assert sdpa["params"]["backend"] == "FLASH_ATTENTION/enable_gqa" and sdpa["impl_label"] == "torch-sdpa-flash"
    fourier = [c for c in a if c["impl"] == "triton_fourier"][0]
    assert fourier["task"] == "fourier_decode_attention" and fourier["params"]["num_freqs"] == 512
    assert fourier["params"]["n_init"] == 4 and fourier["params"]["n_local"] == 1020
    dense = [c for c in a if c["impl"] == "triton_dense"][0]
    assert dense["task"] == "decode_attention" and dense["impl_label"] == "triton" and "backend" not in dense["params"]
    # Another SDPA backend is another cell: a fallback never passes for a flash measurement on resume.
    other = bk.plan(config, {"llama3-8b": "EFFICIENT_ATTENTION/packed_gqa"}, device=PROV["device"])
    assert {c["cell"] for c in other if c["impl"] == "sdpa_flash"}.isdisjoint(c["cell"] for c in a)


# ---------------------------------------------------------------- sizes, the memory rule, rotation
def test_cache_and_traffic_sizes():
    # LLaMA-3-8B, B=1, 128k tokens, bf16: 2 (K, V) * 8 heads * 131072 * 128 * 2 bytes = 512 MiB.
    assert bk.kv_cache_bytes("llama3-8b", 1, 131072, "bfloat16") == 512 * 2**20
    assert bk.dense_bytes_read(1, 32, 8, 128, 131072, "bfloat16") == 512 * 2**20 + 2 * 32 * 128 * 2
    assert bk.kv_cache_bytes("smollm2", 4, 4096, "float32") == 2 * 4 * 3 * 4096 * 64 * 4


def test_out_of_memory_rule():
    assert bk.fits_in_memory(60, 100, 0.6) and not bk.fits_in_memory(61, 100, 0.6)
    # B=16 at 128k (8 GiB) fits an idle 80 GB card, not one with 10 GiB free.
    need = bk.kv_cache_bytes("llama3-8b", 16, 131072, "bfloat16")
    assert bk.fits_in_memory(need, 79 * 2**30) and not bk.fits_in_memory(need, 10 * 2**30)


def test_rotation_copies_shrink_to_fit_but_never_below_one():
    assert bk.rotation_copies(100, 10_000, 4) == 4
    assert bk.rotation_copies(100, 250, 4) == 2
    assert bk.rotation_copies(100, 50, 4) == 1
    assert copies_needed(10**6) == 64 and copies_needed(150 * 10**6) == 2 and copies_needed(10**9) == 2


def test_rotating_inputs_cycle_through_distinct_copies():
    inputs = {"q": torch.ones(4), "k": torch.zeros(2, 3), "scale": 0.5}
    rot = RotatingInputs(inputs, min_total_bytes=3 * tensor_bytes(inputs))
    assert len(rot) == 3 and rot.total_bytes == 3 * (16 + 24)
    seen = [rot.next() for _ in range(6)]
    assert seen[0] is inputs and seen[3] is inputs and seen[1] is not inputs
    assert len({s["q"].data_ptr() for s in seen[:3]}) == 3 and all(s["scale"] == 0.5 for s in seen)
    assert torch.equal(seen[1]["k"], inputs["k"])
    assert RotatingInputs(inputs, copies=1).call(lambda q, k, scale: q.sum() * scale) == 2.0
    with pytest.raises(ValueError, match="copies"):
        RotatingInputs(inputs, copies=0)
    # A view into padded rows (the Fourier cache's kept channels) is copied with its strides, padding and all.
    padded = torch.randn(2, 5, 8)[:, :, :6]
    (copy,) = RotatingInputs({"x": padded}, copies=2).sets[1].values()
    assert copy.stride() == padded.stride() and torch.equal(copy, padded) and copy.data_ptr() != padded.data_ptr()


def test_bandwidth_arithmetic_and_gpu_guards():
    assert achieved_bandwidth(3e9, 1.0) == pytest.approx(3000.0)
    with pytest.raises(ValueError):
        achieved_bandwidth(1e9, 0.0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            bench_ms(lambda: None)
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            copy_bandwidth_gbs()


def test_tolerance_catches_a_kernel_that_returns_zeros():
    # Over 128k keys the outputs are ~1e-2: zeros must fail, bf16 rounding must pass.
    ref_max = 0.012
    assert bk.allowed_error("bfloat16", ref_max) < ref_max
    assert bk.allowed_error("bfloat16", ref_max) > 2 * 2.0**-8 * ref_max


# ---------------------------------------------------------------- records and the table
def _cells():
    """The first cell of each kernel (LLaMA-3-8B, B=1, 4096 tokens)."""
    out: dict = {}
    for c in bk.plan(_config(["--quick"]), {"llama3-8b": "FLASH_ATTENTION/enable_gqa"}, device=PROV["device"]):
        out.setdefault(c["impl"], c)
    return out


def test_measurement_records_follow_the_store_schema():
    cell = _cells()["triton_dense"]
    records = bk.measurement_records(cell, latency_ms=0.25, nbytes=750_000_000, copy_gbs=3000.0, provenance=PROV,
                                     protocol={"timer": bk.TIMER}, extra={"checked": True, "correct": True})
    assert [r["metric"] for r in records] == ["latency_ms", "bytes_read", "bandwidth_gbs", "roofline_fraction"]
    assert [r["unit"] for r in records] == ["ms", "bytes", "GB/s", "fraction"]
    values = {r["metric"]: r["value"] for r in records}
    assert values["bandwidth_gbs"] == pytest.approx(3000.0) and values["roofline_fraction"] == pytest.approx(1.0)
    for r in records:
        validate(r)
        assert set(REQUIRED) <= set(r)
        assert r["suite"] == "kernels_bench" and r["task"] == "decode_attention" and r["impl"] == "triton"
        assert r["model"] == "llama3-8b" and r["cell"] == cell["cell"] and r["device"].startswith("cuda: NVIDIA")
        assert r["params"] == {"batch": 1, "context": 4096, "hq": 32, "hkv": 8, "head_dim": 128, "dtype": "bfloat16"}
        assert r["extra"]["copy_bandwidth_gbs"] == 3000.0 and r["extra"]["checked"] is True


def test_status_records_and_what_counts_as_done():
    cells = _cells()
    skipped = bk.status_record(cells["sdpa_flash"], "skipped: out of memory", PROV, {})
    missing = bk.status_record(cells["triton_fourier"], "missing: no kernel", PROV, {})
    measured = bk.measurement_records(cells["triton_dense"], 1.0, 10**9, 2000.0, PROV, {}, {"checked": True})
    assert skipped["metric"] == "status" and skipped["value"] == 0.0 and skipped["extra"]["status"].startswith("skipped")
    with pytest.raises(ValueError, match="status must start"):
        bk.status_record(cells["sdpa_flash"], "oops", PROV, {})
    # Measured and out-of-memory cells are done; a missing kernel is tried again on the next run.
    assert bk.done_cells([skipped, missing, *measured]) == {cells["sdpa_flash"]["cell"], cells["triton_dense"]["cell"]}
    copy = bk.copy_record(3000.0, 1 << 30, "run-1", PROV)
    assert copy["metric"] == "copy_bandwidth_gbs" and copy["unit"] == "GB/s" and copy["params"]["run"] == "run-1"


def test_summary_table_has_one_row_per_cell():
    cells = _cells()
    records = [*bk.measurement_records(cells["triton_dense"], 0.5, 10**9, 2500.0, PROV, {}, {"checked": True, "correct": True}),
               *bk.measurement_records(cells["sdpa_flash"], 0.4, 10**9, 2500.0, PROV, {}, {"checked": True, "correct": False}),
               bk.status_record(cells["triton_fourier"], "missing: op has no implementation 'triton'", PROV, {}),
               bk.copy_record(2500.0, 1 << 30, "r", PROV)]
    table = bk.summary_table(records).splitlines()
    assert "latency ms" in table[0] and "% of copy" in table[0] and len(table) == 2 + 3
    # sdpa first, then dense, then Fourier.
    assert "sdpa_flash (FLASH_ATTENTION/enable_gqa)" in table[2] and "WRONG RESULT" in table[2] and "0.4000" in table[2]
    assert "triton_dense" in table[3] and "2000" in table[3] and "80.0" in table[3] and "ok" in table[3]
    assert "missing: op has no implementation" in table[4]
    assert len(bk.summary_table(records, cells={cells["triton_dense"]["cell"]}).splitlines()) == 3


# ---------------------------------------------------------------- the sweep on the CPU with a fake timer
@pytest.fixture
def cpu_kernels(monkeypatch):
    """The references stand in for the Triton kernels (which need a GPU or the interpreter)."""
    import optimized.triton_decode_attention  # noqa: F401 - registered first, so the stand-ins below win
    import optimized.triton_fourier  # noqa: F401
    from optimized.torch_fourier import fourier_decode_attention_torch
    from reference.ops.decode_attention import decode_attention
    from reference.registry import IMPLS

    monkeypatch.setitem(IMPLS["decode_attention"], "triton", decode_attention)
    monkeypatch.setitem(IMPLS["fourier_decode_attention"], "triton", fourier_decode_attention_torch)
    return IMPLS


def _cpu_device(free=8 << 30, timed=None):
    def timer(fn, warmup, rep):
        fn()
        if timed is not None:
            timed.append(1)
        return 0.5

    return bk.Device("cpu", timer, lambda: free, lambda: 1000.0, copy_nbytes=1 << 20)


SWEPT = ("sdpa_flash", "triton_dense", "triton_fourier", "triton_fourier_spectral")  # FlashInfer needs a GPU


def _small(results, **kw) -> bk.KernelBenchConfig:
    return bk.KernelBenchConfig(**{**dict(shapes=("smollm2", "llama3-8b"), contexts=(48, 80), batches=(1, 2),
                                          max_context={2: 48}, dtype="float32", results=str(results), n_local=12,
                                          num_freqs=8, impls=SWEPT), **kw})


def _records(results) -> list[dict]:
    return ResultsStore(results).records("kernels_bench")


def test_sweep_on_cpu_writes_checked_records_then_resumes(cpu_kernels, tmp_path, capsys):
    timed = []
    summary = bk.run_kernels_bench(_small(tmp_path), progress=False, dev=_cpu_device(timed=timed))
    cells = 2 * 3 * 4  # shapes x (B=1 at two contexts, B=2 at one) x kernels
    assert summary["ran"] == cells and summary["skipped"] == 0 and len(timed) == cells
    records = _records(tmp_path)
    assert len(records) == 1 + 4 * cells
    measured = [r for r in records if r["metric"] == "latency_ms"]
    assert {r["task"] for r in measured} == {"sdpa_flash", "decode_attention", "fourier_decode_attention"}
    assert all(r["extra"]["checked"] and r["extra"]["correct"] for r in measured), [r["extra"] for r in measured]
    fourier = [r for r in records if r["task"] == "fourier_decode_attention" and r["metric"] == "bytes_read"]
    assert all(r["value"] < r["extra"]["dense_bytes_read"] for r in fourier if r["params"]["context"] == 80)
    assert {r["impl"] for r in fourier} == {"triton", "triton_spectral"} and all(r["params"]["period"] == "span" for r in fourier)
    assert "sdpa_flash" in summary["table"] and "ok" in summary["table"]

    again = bk.run_kernels_bench(_small(tmp_path), progress=False, dev=_cpu_device(timed=timed))
    assert again["ran"] == 0 and again["skipped"] == cells and len(timed) == cells
    assert len(_records(tmp_path)) == 2 + 4 * cells  # one more copy-bandwidth record, no cell twice
    assert f"{cells} of {cells} cells already" in capsys.readouterr().out


def test_a_cache_variant_sweep_gets_cells_of_its_own(cpu_kernels, tmp_path):
    # Smooth period and heads' kept runs aligned to 8 (d = 64 keeps 8-multiples), beside SDPA measured again.
    kw = dict(shapes=("smollm2",), contexts=(80,), batches=(1,), impls=("sdpa_flash", "triton_fourier_spectral"))
    bk.run_kernels_bench(_small(tmp_path, **kw), progress=False, dev=_cpu_device())
    variant = _small(tmp_path, **kw, period="smooth", kept_align=8, rerun=True)
    summary = bk.run_kernels_bench(variant, progress=False, dev=_cpu_device())
    assert summary["ran"] == 2  # SDPA again (--rerun) and the new spectral cell
    spectral = [r for r in _records(tmp_path) if r["impl"] == "triton_spectral" and r["metric"] == "latency_ms"]
    assert sorted((r["params"]["period"], r["params"].get("kept_align", 1)) for r in spectral) == [("smooth", 8), ("span", 1)]
    assert all(r["extra"]["checked"] and r["extra"]["correct"] for r in spectral)
    assert len({r["cell"] for r in spectral}) == 2


def test_missing_failing_and_oversized_cells_are_recorded_and_the_sweep_goes_on(cpu_kernels, monkeypatch, tmp_path):
    monkeypatch.delitem(cpu_kernels["fourier_decode_attention"], "triton")

    def broken(**kw):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(cpu_kernels["decode_attention"], "triton", broken)
    config = _small(tmp_path, shapes=("smollm2",), contexts=(48,), batches=(1,))
    bk.run_kernels_bench(config, progress=False, dev=_cpu_device())
    status = {r["task"]: r["extra"]["status"] for r in _records(tmp_path) if r["metric"] == "status"}
    assert status["fourier_decode_attention"].startswith("missing: op 'fourier_decode_attention' has no implementation")
    assert status["decode_attention"] == "failed: RuntimeError: kernel exploded"
    assert any(r["task"] == "sdpa_flash" and r["metric"] == "latency_ms" for r in _records(tmp_path))

    # FlashInfer is a GPU package the CPU machines never have: its cells say so instead of failing the sweep.
    assert importlib.util.find_spec("flashinfer") is None
    bk.run_kernels_bench(_small(tmp_path / "fi", shapes=("smollm2",), contexts=(48,), batches=(1,), impls=("flashinfer",)),
                         progress=False, dev=_cpu_device())
    (r,) = _records(tmp_path / "fi")[1:]
    assert r["metric"] == "status" and r["extra"]["status"].startswith("missing: flashinfer is not installed")

    # Too little free memory: skipped, recorded, and not tried again.
    small = _small(tmp_path / "oom", shapes=("llama3-8b",), contexts=(80,), batches=(2,), impls=("sdpa_flash",),
                   max_context={})
    bk.run_kernels_bench(small, progress=False, dev=_cpu_device(free=1000))
    (r,) = _records(tmp_path / "oom")[1:]
    assert r["metric"] == "status" and r["extra"]["status"].startswith("skipped: out of memory")
    assert bk.run_kernels_bench(small, progress=False, dev=_cpu_device(free=1000))["ran"] == 0


def test_a_wrong_kernel_is_timed_but_flagged(cpu_kernels, monkeypatch, tmp_path):
    monkeypatch.setitem(cpu_kernels["decode_attention"], "triton", lambda q, k, v, seq_lens, scale=None: torch.zeros_like(q))
    config = _small(tmp_path, shapes=("llama3-8b",), contexts=(80,), batches=(2,), impls=("triton_dense",),
                    max_context={})
    summary = bk.run_kernels_bench(config, progress=False, dev=_cpu_device())
    (latency,) = [r for r in _records(tmp_path) if r["metric"] == "latency_ms"]
    assert latency["extra"]["checked"] is True and latency["extra"]["correct"] is False
    assert latency["extra"]["checked_rows"] == [0, 1]
    assert "WRONG RESULT" in summary["table"]
    json.dumps(latency, allow_nan=False)


# ---------------------------------------------------------------- the device in the cell key
H100, H200 = "cuda: NVIDIA H100 80GB HBM3", "cuda: NVIDIA H200"


def test_a_second_kind_of_device_measures_the_cells_another_recorded(cpu_kernels, monkeypatch, tmp_path):
    """Cells an H100 recorded are measured again on an H200; each device skips its own cells on resume, and a CPU's
    thread count (volatile) does not make a new cell."""
    config = _small(tmp_path, shapes=("smollm2",), contexts=(48,), batches=(1,), impls=("sdpa_flash", "triton_dense"))
    timed = []

    def bench_on(device: str) -> dict:
        monkeypatch.setattr(bk, "device_info", lambda name="cpu": device)
        return bk.run_kernels_bench(config, progress=False, dev=_cpu_device(timed=timed))

    assert bench_on(H100)["ran"] == 2 and len(timed) == 2
    h200 = bench_on(H200)
    assert (h200["ran"], h200["skipped"], len(timed)) == (2, 0, 4)
    assert len(h200["table"].splitlines()) == 2 + 2  # the run's own cells, not the H100's too
    assert bench_on(H200)["ran"] == 0 and bench_on(H100)["skipped"] == 2 and len(timed) == 4
    latency = [r for r in _records(tmp_path) if r["metric"] == "latency_ms"]
    cells = {d: {r["cell"] for r in latency if r["device"] == d} for d in (H100, H200)}
    assert len(cells[H100]) == len(cells[H200]) == 2 and cells[H100].isdisjoint(cells[H200])
    assert sorted(json.dumps([r["task"], r["params"]], sort_keys=True) for r in latency if r["device"] == H100) == \
        sorted(json.dumps([r["task"], r["params"]], sort_keys=True) for r in latency if r["device"] == H200)
    assert bench_on("cpu: AMD EPYC, 2 threads, 2 cores")["ran"] == 2
    assert bench_on("cpu: AMD EPYC, 1 threads, 16 cores")["ran"] == 0 and len(timed) == 6


def test_committed_h100_sweep_leaves_every_cell_to_measure_on_another_gpu():
    """The issue's case: cells of the default grid the committed H100 records hold are done on that H100 only; on
    an H200 none of them is (the store's own H200 records are left out: they are another run's)."""
    records = [r for r in ResultsStore(ROOT / "results").records("kernels_bench") if r["device"] == H100]
    done = bk.done_cells(records)
    backends = {r["model"]: r["params"]["backend"] for r in records if r["task"] == "sdpa_flash"}
    config = _config([])
    h100 = bk.plan(config, backends, device=H100)
    h200 = bk.plan(config, backends, device=H200)
    on_h100 = [i for i, c in enumerate(h100) if c["cell"] in done]
    assert len(on_h100) >= 2 * 19  # at least the SDPA and dense cells of both shapes' default grid
    assert [c["params"] for c in h100] == [c["params"] for c in h200]
    assert not any(c["cell"] in done for c in h200)
    with pytest.raises(TypeError):
        bk.plan(config, backends)  # a plan without the device would match any device's records
