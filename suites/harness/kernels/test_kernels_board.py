"""The kernels boards of the leaderboard, built from planted records: conformance reports and decode latency."""
from __future__ import annotations

import pytest

from harness.boards.leaderboard import build_leaderboard
from harness.kernels import board as board_kernels
from harness.kernels.board import CONFORMANCE_COLUMNS, bench_cells, latency_cell
from harness.kernels.conformance import CaseResult, Report
from harness.kernels.conformance_report import conformance_records
from harness.kernels.plot import roofline_ms
from harness.store import ResultsStore, make_record
from suites.harness.markdown_tables import sections

PROV_GPU = {"device": "cuda: NVIDIA H100 80GB HBM3", "versions": {"torch": "t"}, "git_sha": "abc"}
PROV_CPU = {"device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "abc"}


def _report(impl: str, failing: str | None = None, examples: int = 20, dtypes=("float32", "float16")) -> Report:
    r = Report("attention", impl, "ci", dtypes=list(dtypes), examples=examples, worst_error=2e-4,
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


def test_conformance_board_newest_run_wins_pass_first_with_speed(tmp_path):
    store = ResultsStore(tmp_path / "r")
    store.append(conformance_records(_report("my.fast:attn", failing="unwritten"), "cuda", 10, run="run1", provenance=PROV_GPU))
    store.append(conformance_records(_report("my.fast:attn"), "cuda", 10, _speed(0.5, 2.0), run="run2", provenance=PROV_GPU))
    store.append(conformance_records(_report("my.slow:attn"), "cuda", 10, _speed(4.0, 2.0), run="run3", provenance=PROV_GPU))
    store.append(conformance_records(_report("my.bad:attn", failing="tolerance"), "cpu", 10, run="run4", provenance=PROV_CPU))
    paths = build_leaderboard(tmp_path / "r", tmp_path / "b")
    md = paths["kernels.md"].read_text(encoding="utf-8")
    assert "## Kernels: conformance" in md and "Kernels: decode latency" not in md
    tables = sections(md)
    [gpu], [cpu] = tables[f"On {PROV_GPU['device']}"], tables[f"On {PROV_CPU['device']}"]  # one table per device
    assert gpu[0] == [h for h, _ in CONFORMANCE_COLUMNS]
    assert [r[1] for r in gpu[1:]] == ["my.fast: attn", "my.slow: attn"]  # passing, by speedup
    fast, slow = (dict(zip(gpu[0], r)) for r in gpu[1:])
    assert fast["result"] == "PASS" and fast["worst error / allowed"] == "0.0002 / 0.001"
    assert fast["speedup vs ref."] == "4.00x" and fast["examples"] == "20" and fast["dtypes"] == "f32, f16"
    assert fast["% of copy bw"] == f"{100 * (10**9 / 0.5e-3 / 1e9) / 3000:.1f}"
    assert slow["speedup vs ref."] == "0.50x"
    bad = dict(zip(cpu[0], cpu[1]))
    assert bad["result"] == "FAIL: tolerance" and bad["worst error / allowed"] == "0.5 / 1e-05"
    assert bad["speedup vs ref."] == "—"
    assert "my.bad:attn [tolerance] float32: tolerance broke" in md
    assert "check_case('attention', get_impl('attention', 'my.bad:attn'), {'seed': 3}, torch.float32)" in md
    assert "unwritten" not in md  # run1 was replaced by the newer run2
    headline = paths["markdown"].read_text(encoding="utf-8")
    assert "Conformance: 2 of 3 kernel runs pass" in headline and "attention / my.bad:attn (ci)" in headline


def test_runs_of_one_dtype_each_show_together_and_an_older_commit_never(tmp_path):
    """A GPU visit may check one dtype per run (each run's records land when it ends): the board shows every dtype
    set run at the newest commit, the newest of each, and nothing of an older commit beside them."""
    store = ResultsStore(tmp_path / "r")
    old, new = dict(PROV_GPU, git_sha="old"), dict(PROV_GPU, git_sha="new")
    store.append(conformance_records(_report("k:attn", dtypes=("float32", "float16", "bfloat16"), examples=48),
                                     "cuda", 10, run="r1", provenance=old))
    store.append(conformance_records(_report("k:attn", failing="unwritten", dtypes=("bfloat16",)), "cuda", 10,
                                     run="r2", provenance=new))
    store.append(conformance_records(_report("k:attn", dtypes=("bfloat16",), examples=34), "cuda", 10, run="r3",
                                     provenance=new))
    store.append(conformance_records(_report("k:attn", dtypes=("float32",), examples=33), "cuda", 10, run="r4",
                                     provenance=new))
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["kernels.md"].read_text(encoding="utf-8")
    [gpu] = sections(md)[f"On {PROV_GPU['device']}"]
    rows = sorted((r["dtypes"], r["examples"], r["result"]) for r in (dict(zip(gpu[0], x)) for x in gpu[1:]))
    assert rows == [("bf16", "34", "PASS"), ("f32", "33", "PASS")]  # r2 replaced by r3; r1 is an older commit's


def test_a_new_conformance_column_is_one_entry(tmp_path, monkeypatch):
    """The board's table is CONFORMANCE_COLUMNS: appending a (header, cell) pair adds a column, nothing else."""
    monkeypatch.setattr(board_kernels, "CONFORMANCE_COLUMNS",
                        [*CONFORMANCE_COLUMNS, ("strength", lambda r: f"{r['examples'] * 2} draws")])
    ResultsStore(tmp_path / "r").append(conformance_records(_report("my.fast:attn"), "cuda", 10, _speed(0.5, 2.0),
                                                            run="run1", provenance=PROV_GPU))
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["kernels.md"].read_text(encoding="utf-8")
    [table] = sections(md)[f"On {PROV_GPU['device']}"]
    assert table[0][-1] == "strength" and table[1][-1] == "40 draws"


def test_latency_board_plot_pivot_and_status(tmp_path):
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
    md, page = paths["kernels.md"].read_text(encoding="utf-8"), paths["kernels.html"].read_text(encoding="utf-8")
    assert "## Kernels: decode latency" in md and "Kernels: conformance" not in md
    [table] = sections(md)["bfloat16 on cuda: NVIDIA H100 80GB HBM3"]
    assert table[0] == ["shape", "batch", "kernel", "4k", "32k", "128k"]
    rows = {(r[1], r[2]): r[3:] for r in table[1:]}
    assert len(rows) == 4  # 3 measured (batch, kernel) rows and the skipped kernel; the copy record is no kernel
    def roof(context, ms):  # the cache's bytes at the copy bandwidth, in % of the kernel's time
        return f"{100 * (2 * 8 * context * 128 * 2 / 3000e9) / (ms * 1e-3):.0f}%"

    assert rows[("1", "decode_attention / triton")] == [f"0.05 ({roof(4096, 0.05)})", f"0.3 ({roof(32768, 0.3)})", ""]
    assert rows[("4", "decode_attention / triton")][1] == f"0.9 ({roof(4 * 32768, 0.9)})"
    assert rows[("4", "fourier_decode_attention / triton")] == ["", "", "—"]
    assert "- fourier_decode_attention / triton (llama3-8b batch 4 @128k): skipped: cache too large" in md
    assert len(table) == 5 and "114" not in md  # a pivot, not a row per cell
    assert (tmp_path / "b" / "kernels_latency_0.png").stat().st_size > 1000
    assert 'src="kernels_latency_0.png"' in page and "roofline" in page
    headline = paths["markdown"].read_text(encoding="utf-8")
    [winners] = [t for h, ts in sections(headline).items() for t in ts if t[0][0] == "shape"]
    assert winners[1][:5] == ["llama3-8b", "1", "32k", "decode_attention / triton", "0.3"]
    assert winners[2][3] == "decode_attention / triton" and winners[1][6] == "sdpa_flash / torch-sdpa-flash (2.00x)"


def test_the_roofline_is_the_cache_bytes_at_the_copy_bandwidth():
    [cell] = bench_cells(bench_cell("decode_attention", "triton", "llama3-8b", 2, 8192, 0.2))
    assert roofline_ms(cell) == pytest.approx(1e3 * 2 * 2 * 8 * 8192 * 128 * 2 / 3000e9)
    assert latency_cell(cell) == f"0.2 ({100 * roofline_ms(cell) / 0.2:.0f}%)"
    cell["extra"]["correct"] = False
    assert latency_cell(cell).endswith(" WRONG")


def test_a_newer_measurement_replaces_an_older_failure(tmp_path):
    store = ResultsStore(tmp_path / "r")
    store.append(bench_cell("decode_attention", "triton", "smollm2", 1, 4096, 0, status="failed: RuntimeError"))
    recs = bench_cell("decode_attention", "triton", "smollm2", 1, 4096, 0.07)
    for r in recs:
        r["time"] = "9999-01-01T00:00:00Z"  # later than the failure
    store.append(recs)
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["kernels.md"].read_text(encoding="utf-8")
    [table] = sections(md)["bfloat16 on cuda: NVIDIA H100 80GB HBM3"]
    assert len(table) == 2 and table[1][3].startswith("0.07 (") and "RuntimeError" not in md
