"""The kernels boards of the leaderboard, built from planted records: conformance reports and decode latency."""
from __future__ import annotations

import base64
import re

from harness.conformance import CaseResult, Report
from harness.conformance_report import conformance_records
from harness.leaderboard import build_leaderboard
from harness.store import ResultsStore, make_record

PROV_GPU = {"device": "cuda: NVIDIA H100 80GB HBM3", "versions": {"torch": "t"}, "git_sha": "abc"}
PROV_CPU = {"device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "abc"}


def _report(impl: str, failing: str | None = None, examples: int = 20) -> Report:
    r = Report("attention", impl, "ci", dtypes=["float32", "float16"], examples=examples, worst_error=2e-4,
               allowed_error=1e-3, worst_ratio=0.2)
    if failing:
        r.failures.append(CaseResult(False, property=failing, detail=f"{failing} broke\nmore", worst_error=0.5,
                                     allowed_error=1e-5, case={"seed": 3}, dtype="float32", op="attention"))
    return r


def _speed(impl_ms: float, ref_ms: float) -> dict:
    nbytes = 10**9
    gbs = nbytes / (impl_ms * 1e-3) / 1e9
    return {"case": {"seed": 1}, "dtype": "bfloat16", "impl_ms": impl_ms, "reference_ms": ref_ms,
            "speedup": ref_ms / impl_ms, "bytes": nbytes, "bandwidth_gbs": gbs, "copy_bandwidth_gbs": 3000.0,
            "roofline_fraction": gbs / 3000.0}


def bench_cell(task, impl, shape, batch, context, ms, status=None):
    """One kernels_bench cell's records (latency, bytes read, bandwidth, roofline fraction), or one status record."""
    params = {"batch": batch, "context": context, "hq": 32, "hkv": 8, "head_dim": 128, "dtype": "bfloat16"}
    if status:
        return [make_record("kernels_bench", task, "full", impl, shape, params, "status", 0.0, "none",
                            extra={"status": status}, provenance=PROV_GPU)]
    nbytes = 2 * batch * 8 * context * 128 * 2
    gbs = nbytes / (ms * 1e-3) / 1e9
    extra = {"checked": True, "correct": True, "copy_bandwidth_gbs": 3000.0}
    return [make_record("kernels_bench", task, "full", impl, shape, params, m, float(v), u, extra=extra, provenance=PROV_GPU)
            for m, v, u in (("latency_ms", ms, "ms"), ("bytes_read", nbytes, "bytes"), ("bandwidth_gbs", gbs, "GB/s"),
                            ("roofline_fraction", gbs / 3000.0, "fraction"))]


def _rows(md: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith(f"| {first_cell}")]


def test_conformance_board_newest_run_wins_pass_first_with_speed(tmp_path):
    store = ResultsStore(tmp_path / "r")
    store.append(conformance_records(_report("my.fast:attn", failing="unwritten"), "cuda", 10, run="run1", provenance=PROV_GPU))
    store.append(conformance_records(_report("my.fast:attn"), "cuda", 10, _speed(0.5, 2.0), run="run2", provenance=PROV_GPU))
    store.append(conformance_records(_report("my.slow:attn"), "cuda", 10, _speed(4.0, 2.0), run="run3", provenance=PROV_GPU))
    store.append(conformance_records(_report("my.bad:attn", failing="tolerance"), "cpu", 10, run="run4", provenance=PROV_CPU))
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["markdown"].read_text(encoding="utf-8")
    assert "## Kernels: conformance" in md and "Kernels: decode latency" not in md
    rows = _rows(md, "attention")
    assert [r[1] for r in rows] == ["my.fast:attn", "my.slow:attn", "my.bad:attn"]  # passing, by speedup; then failing
    fast, slow, bad = rows
    assert fast[6] == "PASS" and fast[7] == "—" and fast[8] == "0.0002 / 0.001" and fast[9] == "4.00x"
    assert fast[10] == f"{100 * (10**9 / 0.5e-3 / 1e9) / 3000:.1f}" and fast[3] == PROV_GPU["device"]
    assert slow[9] == "0.50x" and fast[5] == "20" and fast[4] == "float32, float16"
    assert bad[6] == "FAIL" and bad[7] == "tolerance" and bad[8] == "0.5 / 1e-05" and bad[9] == "—"
    assert "my.bad:attn [tolerance] float32: tolerance broke" in md
    assert "check_case('attention', get_impl('attention', 'my.bad:attn'), {'seed': 3}, torch.float32)" in md
    assert "unwritten" not in md  # run1 was replaced by the newer run2


def test_latency_board_table_plot_and_status(tmp_path):
    store = ResultsStore(tmp_path / "r")
    recs = []
    for context, ms in ((4096, 0.05), (32768, 0.3)):
        recs += bench_cell("decode_attention", "triton", "llama3-8b", 1, context, ms)
        recs += bench_cell("sdpa_flash", "torch-sdpa-flash", "llama3-8b", 1, context, 2 * ms)
        recs += bench_cell("decode_attention", "triton", "llama3-8b", 4, context, 3 * ms)
    recs += bench_cell("fourier_decode_attention", "triton", "llama3-8b", 4, 131072, 0,
                       status="skipped: cache too large")
    recs.append(make_record("kernels_bench", "copy", "none", "torch-copy", "-", {"nbytes": 1, "run": "x"},
                            "copy_bandwidth_gbs", 3000.0, "GB/s", provenance=PROV_GPU))
    store.append(recs)
    paths = build_leaderboard(tmp_path / "r", tmp_path / "b")
    md, page = paths["markdown"].read_text(encoding="utf-8"), paths["html"].read_text(encoding="utf-8")
    assert "## Kernels: decode latency" in md and "Kernels: conformance" not in md
    assert "### bfloat16 on cuda: NVIDIA H100 80GB HBM3" in md
    rows = _rows(md, "llama3-8b")
    assert len(rows) == 7  # 6 measured cells and the skipped one; the copy record is no kernel
    row = next(r for r in rows if r[1] == "decode_attention / triton" and r[2] == "1" and r[3] == "32768")
    gbs = 2 * 8 * 32768 * 128 * 2 / 0.3e-3 / 1e9
    assert row[4] == "0.3000" and row[5] == f"{gbs:.0f}" and row[6] == f"{100 * gbs / 3000:.1f}" and row[7] == "ok"
    skipped = next(r for r in rows if r[1].startswith("fourier_decode_attention"))
    assert skipped[4] == "—" and skipped[7] == "skipped: cache too large"
    assert (tmp_path / "b" / "kernels_latency_0.png").stat().st_size > 1000
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0])[:4] == b"\x89PNG"


def test_a_newer_measurement_replaces_an_older_failure(tmp_path):
    store = ResultsStore(tmp_path / "r")
    store.append(bench_cell("decode_attention", "triton", "smollm2", 1, 4096, 0, status="failed: RuntimeError"))
    recs = bench_cell("decode_attention", "triton", "smollm2", 1, 4096, 0.07)
    for r in recs:
        r["time"] = "9999-01-01T00:00:00Z"  # later than the failure
    store.append(recs)
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["markdown"].read_text(encoding="utf-8")
    rows = _rows(md, "smollm2")
    assert len(rows) == 1 and rows[0][4] == "0.0700" and "failed" not in md
