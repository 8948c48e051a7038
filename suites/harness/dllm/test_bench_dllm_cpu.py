"""The dLLM throughput bench's code path on the CPU (harness/dllm/bench.py): tiny shapes, every layer layout, the
per-step records (dense and block step times, the kernel profile), the roofline arithmetic, resume, device keys.
The GPU-only parts (copy bandwidth, GEMM probe, peak memory, CUDA graphs) are absent here and must stay absent from
the records rather than be faked."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from harness.dllm import bench as bench_dllm
from harness.dllm.bench import (DLLMBenchConfig, block_step_weight_bytes, check_layer_ops, format_summary,
                                kernel_kind, run_dllm_bench, set_layer, step_metrics)
from harness.store import cell_key
from reference.dllm.checkpoint import random_model
from reference.dllm.config import DLLMConfig

TINY = DLLMConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, mask_id=63, eos_id=0,
                  rope_theta=1e4)

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "dllm_throughput.jsonl").read_text().splitlines()]


def test_bench_on_the_cpu_records_per_step_times_per_layout_and_resumes(tmp_path):
    cfg = DLLMBenchConfig(lengths=(20,), methods=("vanilla", "sparse_dllm"), impls=("torch",), gen_len=8, block_len=4,
                          steps=8, layers=("separate", "fused-triton"), dtype="float32", results=str(tmp_path))
    summary = run_dllm_bench(cfg, progress=False, device="cpu", model_config=TINY)
    assert summary["ran"] == 4 and summary["skipped"] == 0 and summary["copy_gbs"] is None
    assert set(summary["checks"]) == {"separate", "fused-triton"} and all(c["ok"] for c in summary["checks"].values())
    recs = _records(tmp_path)
    assert {r["model"] for r in recs} == {"custom-random-float32", "custom-random-float32-fused-triton"}
    assert {r["protocol"]["layer"] for r in recs} == {"separate", "fused-triton"}
    by = {(r["model"], r["method"], r["metric"]): r for r in recs}
    for model in ("custom-random-float32", "custom-random-float32-fused-triton"):
        assert (model, "vanilla", "tokens_per_s") in by and (model, "vanilla", "block_step_ms") not in by
        assert (model, "vanilla", "peak_mem_gib") not in by  # no CUDA: nothing made up
        step = by[(model, "sparse_dllm", "block_step_ms")]
        counts = by[(model, "sparse_dllm", "tokens_per_s")]["extra"]["phase_counts"]
        sparse_s = by[(model, "sparse_dllm", "phase_sparse_s")]["value"]
        assert step["value"] == pytest.approx(1e3 * sparse_s / counts["sparse"])
        assert step["extra"]["block_steps"] == counts["sparse"] == 2 * (8 // 2 - 2)
        assert "copy_gbs" not in step["extra"] and (model, "sparse_dllm", "block_step_roofline") not in by
        assert step["extra"]["layer_ops_check"]["ok"] and step["extra"]["gemms"] is None  # no GEMM probe off CUDA
        prof = step["extra"]["step_profile"]
        assert "error" not in prof and prof["gemm_ms"] > 0 and prof["kernels"] > 0
        dense = by[(model, "vanilla", "dense_step_ms")]
        assert dense["value"] == pytest.approx(1e3 * by[(model, "vanilla", "phase_dense_s")]["value"]
                                               / dense["extra"]["forwards"])
    for r in recs:  # a performance record's key names its device
        assert r["cell"] == cell_key(r["suite"], r["task"], r["method"], r["impl"], r["model"], r["params"],
                                     device=r["device"])
    text = format_summary(summary, lambda rows, headers: f"{len(rows)} rows")
    assert text.startswith("4 rows") and "ran 4 cells" in text
    again = run_dllm_bench(cfg, progress=False, device="cpu", model_config=TINY)
    assert again["ran"] == 0 and again["skipped"] == 4


def test_roofline_is_the_weight_read_time_over_the_step_time():
    m = {"phases": {"dense": 0.6, "sparse": 0.3}, "phase_counts": {"dense": 2, "sparse": 30}, "cache_bytes": 10**9}
    out = step_metrics(m, weight_bytes=15 * 10**9, copy_gbs=3000.0)
    assert out["dense_step_ms"] == pytest.approx(300.0) and out["block_step_ms"] == pytest.approx(10.0)
    assert out["roofline_ms"] == pytest.approx(5.0) and out["block_step_roofline"] == pytest.approx(0.5)
    assert out["roofline_kv_ms"] == pytest.approx(16 / 3) and out["block_step_roofline_kv"] == pytest.approx(16 / 30)
    assert "block_step_ms" not in step_metrics({"phases": {"dense": 1.0}, "phase_counts": {"dense": 4},
                                                "cache_bytes": 0}, 1, 1.0)


def test_block_step_weight_bytes_count_each_parameter_once_in_every_layout():
    model = random_model(TINY, device="cpu", dtype=torch.float32)
    d, f, hd = TINY.d_model, TINY.ffn_dim, TINY.head_dim
    per_layer = d * (TINY.n_heads + 2 * TINY.n_kv_heads) * hd + TINY.n_heads * hd * d + 3 * d * f + 2 * d
    want = 4 * (TINY.n_layers * per_layer + d + TINY.vocab_size * d + 4 * d)
    for layer in ("separate", "fused", "fused-triton", "separate"):
        set_layer(model, layer)
        assert model.layout == layer and block_step_weight_bytes(model, 4) == want


def test_a_layout_whose_kernels_disagree_with_pytorch_is_not_measured(tmp_path, monkeypatch):
    model = random_model(TINY, device="cpu", dtype=torch.float32)
    set_layer(model, "fused-triton")
    assert check_layer_ops(model)["ok"]
    model.fuse_projections(replace(model.layers[0].ops, rope=lambda x, cos, sin: x))  # forgets to rotate
    check = check_layer_ops(model)
    assert not check["ok"] and check["rope"] > 0.1 and check["rms_norm"] < 1e-5
    # in a run: the broken layout is skipped, the others are measured
    real = bench_dllm.set_layer

    def broken(m, layer):
        real(m, layer)
        if layer == "fused":
            m.fuse_projections(replace(m.layers[0].ops, silu_mul=lambda gu: gu[..., :gu.shape[-1] // 2]))

    monkeypatch.setattr(bench_dllm, "set_layer", broken)
    cfg = DLLMBenchConfig(lengths=(20,), methods=("vanilla",), impls=("torch",), gen_len=8, block_len=4, steps=8,
                          layers=("fused", "separate"), dtype="float32", results=str(tmp_path))
    summary = run_dllm_bench(cfg, progress=False, device="cpu", model_config=TINY)
    assert not summary["checks"]["fused"]["ok"] and summary["checks"]["separate"]["ok"]
    assert summary["ran"] == 1 and {r["model"] for r in _records(tmp_path)} == {"custom-random-float32"}


@pytest.mark.parametrize("name, kind", [("nvjet_tst_128x64_64x8_1x2_h_bz_TNT", "gemm"),
                                        ("sm90_xmma_gemm_bf16bf16_bf16f32", "gemm"), ("aten::mm", "gemm"),
                                        ("_split_kernel", "attention"), ("_merge_kernel", "attention"),
                                        ("pytorch_flash::flash_fwd_kernel", "attention"),
                                        ("Memcpy DtoD (Device -> Device)", "copy"),
                                        ("_rms_norm_kernel", "other"), ("vectorized_elementwise_kernel", "other")])
def test_kernel_kinds(name, kind):
    assert kernel_kind(name) == kind


def test_bench_config_rejects_unknown_layouts():
    with pytest.raises(ValueError, match="--dllm-layers"):
        DLLMBenchConfig(layers=("fused", "nope")).validate()
    with pytest.raises(ValueError, match="--dllm-layers"):
        DLLMBenchConfig(layers=()).validate()
    assert DLLMBenchConfig().layers == ("fused-triton",) and set(bench_dllm.LAYERS) >= set(DLLMBenchConfig().layers)
