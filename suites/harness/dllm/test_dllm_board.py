"""The dLLM caches board of the leaderboard, built from planted dllm / dllm_throughput records."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.boards.leaderboard import build_leaderboard
from harness.dllm.board import dllm_board
from harness.stats import paired_delta
from harness.store import ResultsStore, make_record
from suites.harness.markdown_tables import sections

ROOT = Path(__file__).resolve().parents[3]
H100, H200 = "cuda: NVIDIA H100 80GB HBM3", "cuda: NVIDIA H200"
MODEL = "llada-8b-random-bfloat16"
TP_PROTOCOL = {"batch": 1, "gen_len": 256, "block_len": 32, "steps": 256, "weights": "random", "dtype": "bfloat16"}
ACC_PROTOCOL = {"loop": "llada", "gen_len": 16, "block_len": 8, "steps": 16}
SPARSE = {"keep_ratio": 0.5, "kernel_size": 3}


def _prov(device: str) -> dict:
    return {"device": device, "versions": {"torch": "t"}, "git_sha": "abc"}


def tp_cell(device, method, L, tok=None, mem=None, impl="torch", params=None, phases=None, tokens=256,
            status=None, time=None):
    """One throughput cell's records: tokens_per_s, peak_mem_gib and phases, or one status record."""
    params = {"prompt_len": L, **(params or {})}
    common = dict(protocol=TP_PROTOCOL, provenance=_prov(device))
    if status is not None:
        recs = [make_record("dllm_throughput", f"prompt{L}", method, impl, MODEL, params, "status", 0, "",
                            extra={"status": status}, **common)]
    else:
        extra = {"seconds": tokens / tok, "tokens": tokens, "timed_blocks": tokens // 32, "weights_gib": 15.0}
        recs = [make_record("dllm_throughput", f"prompt{L}", method, impl, MODEL, params, "tokens_per_s", tok,
                            "tokens/s", extra=extra, **common),
                make_record("dllm_throughput", f"prompt{L}", method, impl, MODEL, params, "peak_mem_gib", mem,
                            "GiB", extra=extra, **common)]
        recs += [make_record("dllm_throughput", f"prompt{L}", method, impl, MODEL, params, f"phase_{p}_s", s, "s",
                             **common) for p, s in (phases or {}).items()]
    for r in recs:
        r["time"] = time or r["time"]
    return recs


def acc_cell(task, method, length, correct, impl="torch", params=None, n=None, cache=0.0, equal=100.0,
             model="tiny-dllm@x"):
    """One accuracy cell's records (accuracy with per-example correctness, tokens_equal_vanilla, cache bytes)."""
    p = {"length": length, "n": n or len(correct), **(params or {})}
    common = dict(protocol=ACC_PROTOCOL, provenance=_prov(H100))
    acc = 100.0 * sum(correct) / len(correct)
    return [make_record("dllm", task, method, impl, model, p, "accuracy", acc, "%",
                        extra={"correct": list(correct), "ci95": [acc, acc]}, **common),
            make_record("dllm", task, method, impl, model, p, "tokens_equal_vanilla", equal, "%",
                        extra={"rows_equal": 3, "rows": len(correct)}, **common),
            make_record("dllm", task, method, impl, model, p, "cache_bytes_peak", cache, "bytes", **common)]


_sections = sections


def _rows(table: list[list[str]]) -> dict[str, dict[str, str]]:
    header = table[0]
    return {r[0]: dict(zip(header, r)) for r in table[1:]}


def _throughput(md: str, device: str) -> list[list[list[str]]]:
    return _sections(md)[f"Throughput and memory: {MODEL} on {device}"]


def test_board_exists_only_with_dllm_records():
    assert dllm_board([]) is None
    other = make_record("scheduling", "w", "fcfs", "sim", "m", {"rate": 1}, "mean_latency_s", 1.0, "s",
                        provenance=_prov("cpu"))
    assert dllm_board([other]) is None
    assert dllm_board([other, *tp_cell(H100, "vanilla", 1024, 10.0, 15.0)]).title.startswith("dLLM caches")
    board = dllm_board(acc_cell("passkey", "vanilla", 1024, [True, False]))
    assert "Accuracy: tiny-dllm@x" in board.markdown and "Throughput" not in board.markdown


def test_speedup_and_memory_ratio_are_per_device_and_length():
    recs = [*tp_cell(H100, "vanilla", 1024, 10.0, 15.0), *tp_cell(H100, "vanilla", 2048, 5.0, 16.0),
            *tp_cell(H100, "sparse_dllm", 1024, 50.0, 16.5, impl="triton", params=SPARSE),
            *tp_cell(H100, "sparse_dllm", 2048, 40.0, 17.6, impl="triton", params=SPARSE),
            # H200: vanilla only at 2048, so the 1024 speed-up has no baseline (H100's vanilla must not serve).
            *tp_cell(H200, "vanilla", 2048, 8.0, 15.0),
            *tp_cell(H200, "sparse_dllm", 1024, 80.0, 16.0, impl="triton", params={**SPARSE, "cuda_graphs": True}),
            *tp_cell(H200, "sparse_dllm", 2048, 64.0, 18.0, impl="triton", params={**SPARSE, "cuda_graphs": True})]
    md = dllm_board(recs).markdown
    tok, mem, target = _throughput(md, H100)[:3]
    assert _rows(target)["sparse_dllm (triton, keep 0.5)"]["tokens/s"] == "not measured"  # no 8192 prompt
    assert tok[0] == ["method", "prompt 1024", "prompt 2048"]
    rows = _rows(tok)
    assert rows["vanilla (torch)"]["prompt 1024"] == "10.00 (1.00x)"
    assert rows["sparse_dllm (triton, keep 0.5)"]["prompt 1024"] == "50.00 (5.00x)"
    assert rows["sparse_dllm (triton, keep 0.5)"]["prompt 2048"] == "40.00 (8.00x)"
    assert _rows(mem)["sparse_dllm (triton, keep 0.5)"]["prompt 1024"] == "16.50 (1.10x)"
    tok, mem = _throughput(md, H200)[:2]
    rows = _rows(tok)
    assert rows["sparse_dllm (triton, keep 0.5, graphs)"]["prompt 1024"] == "80.00 (—)"
    assert rows["sparse_dllm (triton, keep 0.5, graphs)"]["prompt 2048"] == "64.00 (8.00x)"
    assert rows["vanilla (torch)"]["prompt 1024"] == "—"
    assert _rows(mem)["sparse_dllm (triton, keep 0.5, graphs)"]["prompt 1024"] == "16.00 (—)"
    assert _rows(mem)["sparse_dllm (triton, keep 0.5, graphs)"]["prompt 2048"] == "18.00 (1.20x)"


def test_targets_oom_cells_and_the_newest_record():
    oom = "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    recs = [*tp_cell(H100, "vanilla", 8192, 2.0, 16.0), *tp_cell(H200, "vanilla", 8192, 2.0, 16.0),
            *tp_cell(H100, "sparse_dllm", 8192, 26.0, 17.0, impl="triton", params=SPARSE),  # 13x, 1.06x: both met
            *tp_cell(H200, "sparse_dllm", 8192, 12.0, 18.4, impl="triton", params=SPARSE),  # 6x, 1.15x: both missed
            # An OOM newer than a measurement replaces it; a measurement newer than an OOM hides it.
            *tp_cell(H100, "dllm_cache", 8192, 9.0, 20.0, time="2026-01-01T00:00:00Z"),
            *tp_cell(H100, "dllm_cache", 8192, status=oom, time="2026-02-01T00:00:00Z"),
            *tp_cell(H200, "dllm_cache", 8192, status=oom, time="2026-01-01T00:00:00Z"),
            *tp_cell(H200, "dllm_cache", 8192, 7.0, 20.0, time="2026-02-01T00:00:00Z")]
    board = dllm_board(recs)
    h100, h200 = _throughput(board.markdown, H100), _throughput(board.markdown, H200)
    assert _rows(h100[0])["dllm_cache (torch)"]["prompt 8192"] == "OOM"
    assert _rows(h100[1])["dllm_cache (torch)"]["prompt 8192"] == "OOM"
    assert f"- dllm_cache (torch) @ prompt 8192: {oom}" in board.markdown
    assert _rows(h200[0])["dllm_cache (torch)"]["prompt 8192"] == "7.00 (3.50x)"
    assert board.markdown.count(oom) == 1
    target = _rows(h100[2])["sparse_dllm (triton, keep 0.5)"]
    assert [target[k] for k in ("tokens/s", "vs vanilla", "≥ 12x", "peak memory vs vanilla", "≤ 1.1x")] == \
        ["26.00", "13.00x", "yes", "1.06x", "yes"]
    target = _rows(h200[2])["sparse_dllm (triton, keep 0.5)"]
    assert [target[k] for k in ("vs vanilla", "≥ 12x", "peak memory vs vanilla", "≤ 1.1x")] == \
        ["6.00x", "NO", "1.15x", "NO"]
    # The paper's sweep is a labelled reference table, with its own vanilla as baseline.
    paper = _rows(_sections(board.markdown)["Throughput and memory: targets and the paper's sweep"][0])
    row = paper["sparse_dllm (paper, RTX 4090 48 GB, read from figure)"]
    assert row["tokens/s @8k"] == "9 (11.25x)" and row["peak GB @8k"] == "23.3 (1.11x)"


def test_phase_table():
    recs = [*tp_cell(H100, "vanilla", 4096, 4.0, 15.0, tokens=32, phases={"dense": 8.0}),
            *tp_cell(H100, "sparse_dllm", 4096, 30.0, 16.0, params=SPARSE,
                 phases={"dense": 2.0, "score": 0.1, "sparse": 6.0})]
    [phase] = [t for t in _throughput(dllm_board(recs).markdown, H100) if t[0][0] == "prompt"]
    assert phase[0] == ["prompt", "method", "dense s (ms/token)", "score s (ms/token)", "sparse s (ms/token)",
                        "timed tokens", "wall s"]
    rows = {r[1]: r for r in phase[1:]}
    assert rows["vanilla (torch)"][2:] == ["8.000 (250)", "—", "—", "32", "8.000"]
    assert rows["sparse_dllm (torch, keep 0.5)"][2:5] == ["2.000 (7.81)", "0.100 (0.391)", "6.000 (23.4)"]


def test_accuracy_table_and_paired_delta():
    rng = np.random.default_rng(0)
    base = {(t, L): rng.random(16) < 0.8 for t in ("passkey", "kv") for L in (1024, 2048)}
    recs = []
    for (t, L), c in base.items():
        recs += acc_cell(t, "vanilla", L, c.tolist())
        worse = c.copy()
        worse[:4] = False  # loses examples vanilla got right
        recs += acc_cell(t, "sparse_dllm", L, worse.tolist(), impl="triton", params=SPARSE, cache=2**20 * L / 1024)
        recs += acc_cell(t, "fast_dllm_prefix", L, np.ones(16, bool).tolist(), params={"mode": "prefix"})
    recs += acc_cell("kv", "sparse_dllm", 4096, [True] * 8, impl="triton", params=SPARSE, cache=4 * 2**20)  # no vanilla
    md = dllm_board(recs).markdown
    acc, agree = _sections(md)["Accuracy: tiny-dllm@x"]
    assert acc[0] == ["method", "mean", "Δ vs vanilla, pp [95% CI]", "paired examples", "passkey@1024 (n=16)",
                      "passkey@2048 (n=16)", "kv@1024 (n=16)", "kv@2048 (n=16)", "kv@4096 (n=8)"]
    assert [r[0] for r in acc[1:]] == ["vanilla (torch)", "sparse_dllm (triton, keep 0.5)", "fast_dllm_prefix (torch)"]
    rows = _rows(acc)
    for t, L in base:
        assert rows["vanilla (torch)"][f"{t}@{L} (n=16)"] == f"{100 * np.mean(base[(t, L)]):.1f}"
    assert rows["vanilla (torch)"]["kv@4096 (n=8)"] == "—"
    assert rows["vanilla (torch)"]["mean"] == f"{np.mean([100 * np.mean(c) for c in base.values()]):.1f} (4 of 5)"
    assert rows["vanilla (torch)"]["Δ vs vanilla, pp [95% CI]"] == "—"
    cols = list(base)  # the paired delta pools the examples of matched cells, kv@4096 (no vanilla) left out
    a = np.concatenate([np.r_[np.zeros(4), base[k][4:]] for k in cols])
    b = np.concatenate([base[k] for k in cols]).astype(float)
    mean, lo, hi = paired_delta(a, b)
    sparse = rows["sparse_dllm (triton, keep 0.5)"]
    assert sparse["Δ vs vanilla, pp [95% CI]"] == f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    assert mean < 0 and sparse["Δ vs vanilla, pp [95% CI]"].startswith("-") and sparse["paired examples"] == "64"
    assert sparse["mean"] == f"{np.mean([100 * a[16 * i:16 * i + 16].mean() for i in range(4)] + [100.0]):.1f}"
    fast = rows["fast_dllm_prefix (torch)"]
    assert fast["Δ vs vanilla, pp [95% CI]"].startswith("+") and fast["mean"] == "100.0 (4 of 5)"
    agree = _rows(agree)
    assert agree["sparse_dllm (triton, keep 0.5)"]["passkey@2048"] == "100.0 (3/16)"
    assert agree["sparse_dllm (triton, keep 0.5)"]["cache MiB @2048"] == "2.0"
    assert agree["sparse_dllm (triton, keep 0.5)"]["cache MiB @4096"] == "4.0"
    assert "Settings: sparse_dllm: kernel_size 3; fast_dllm_prefix: mode prefix." in md


def test_accuracy_without_vanilla_has_no_delta():
    recs = acc_cell("copy", "sparse_dllm", 1024, [True, False, True], params=SPARSE)
    rows = _rows(_sections(dllm_board(recs).markdown)["Accuracy: tiny-dllm@x"][0])
    assert rows["sparse_dllm (torch, keep 0.5)"]["Δ vs vanilla, pp [95% CI]"] == "—"
    assert rows["sparse_dllm (torch, keep 0.5)"]["copy@1024 (n=3)"] == "66.7"


def test_committed_results_build(tmp_path):
    """The committed dllm records build into a leaderboard; every speed-up is against the same section's vanilla."""
    results = tmp_path / "results"
    results.mkdir()
    for name in ("dllm.jsonl", "dllm_throughput.jsonl"):
        shutil.copy(ROOT / "results" / name, results / name)
    paths = build_leaderboard(results, tmp_path / "board")
    md = paths["dllm.md"].read_text(encoding="utf-8")
    assert "## dLLM caches" in md and "<h2>dLLM caches" in paths["dllm.html"].read_text(encoding="utf-8")
    headline = paths["markdown"].read_text(encoding="utf-8")
    assert "## dLLM caches" in headline and "](headline_dllm_throughput.png)" in headline
    figures = re.findall(r"\]\((dllm_throughput_\d+\.png)\)", md)
    assert figures and all((tmp_path / "board" / name).read_bytes()[:4] == b"\x89PNG" for name in figures)
    sections = {h: t for h, t in _sections(md).items() if h.startswith("Throughput and memory: llada")}
    # one section per (model, device): the layer layout is part of the model name (fused-triton, separate, ...)
    assert len(sections) == len({(r["model"], r["device"]) for r in ResultsStore(results).records("dllm_throughput")})
    for tables in sections.values():
        for table in tables[:2]:  # tokens/s, peak memory
            rows = _rows(table)
            for L in table[0][1:]:
                base = rows["vanilla (torch)"][L]
                if base == "—" or base == "OOM":
                    continue
                assert base.endswith("(1.00x)")
                for cell in (r[L] for r in rows.values()):
                    if cell not in ("—", "OOM") and not cell.startswith("failed"):
                        value, ratio = cell.split(" (")
                        v, b, r = float(value), float(base.split()[0]), float(ratio.rstrip("x)"))
                        assert abs(r - v / b) <= 0.005 + v / b * (0.005 / v + 0.005 / b) + 1e-9  # 2-decimal rounding


@pytest.mark.parametrize("missing", ["vanilla", "none"])
def test_figure_per_device(missing):
    recs = [r for L in (1024, 2048) for r in tp_cell(H100, "sparse_dllm", L, 30.0, 16.0, params=SPARSE)]
    if missing == "none":
        recs += [r for L in (1024, 2048) for r in tp_cell(H100, "vanilla", L, 10.0, 15.0)]
    board = dllm_board(recs)
    assert list(board.figures) == ["dllm_throughput_0.png"]
    assert board.figures["dllm_throughput_0.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert "](dllm_throughput_0.png)" in board.markdown
