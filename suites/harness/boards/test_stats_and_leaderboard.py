"""Bootstrap intervals, paired deltas, and the leaderboard built from planted records."""
from __future__ import annotations

import re

import numpy as np
import pytest

from harness.boards.leaderboard import build_leaderboard
from harness.stats import bootstrap_ci, paired_delta
from harness.store import ResultsStore, cell_key


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.random(20), rng.random(2000)
    lo, hi = bootstrap_ci(small)
    assert lo <= small.mean() <= hi
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 3
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_paired_delta_on_a_hand_example():
    mean, lo, hi = paired_delta([1, 1, 0, 1], [1, 0, 0, 0])
    assert mean == pytest.approx(0.5)
    assert lo <= 0.5 <= hi
    assert paired_delta([1, 1], [1, 1])[:3] == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="paired"):
        paired_delta([1, 0], [1])


def _niah(method, length, depth, trial, score, kv, kv_full, protocol=None, ratio=0.5):
    params = {"compression_ratio": ratio, "question_aware": False, "length": length, "depth": depth, "trial": trial, "seed": 0}
    cell = cell_key("niah", "passkey", method, "reference", "tiny", params)
    base = {"suite": "niah", "task": "passkey", "method": method, "impl": "reference", "model": "tiny", "params": params,
            "cell": cell, "device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "abc", "seed": 0, "time": "now",
            "protocol": protocol or {"prompt_template": "niah-completion-v1", "dtype": "float32"}}
    return [{**base, "metric": "exact_match", "value": score, "unit": "fraction"},
            {**base, "metric": "kv_bytes", "value": kv, "unit": "bytes"},
            {**base, "metric": "kv_bytes_full", "value": kv_full, "unit": "bytes"}]


def test_leaderboard_tables_heatmaps_and_order(tmp_path):
    store = ResultsStore(tmp_path / "results")
    recs = []
    for length in (1024, 2048):
        for depth in (0.0, 0.5, 1.0):
            recs += _niah("full", length, depth, 0, 1.0, 2**20, 2**20)
            recs += _niah("snapkv", length, depth, 0, float(depth != 0.5), 2**19, 2**20)
            recs += _niah("knorm", length, depth, 0, 0.0, 2**19, 2**20)
    store.append(recs)
    paths = build_leaderboard(tmp_path / "results", tmp_path / "board")
    md, page = paths["kv.md"].read_text(encoding="utf-8"), paths["kv.html"].read_text(encoding="utf-8")
    md = md[md.index("## KV-cache methods"):]  # the NIAH board
    rows = [line for line in md.splitlines() if line.startswith("|") and "rank" not in line and "---" not in line]
    assert [r.split("|")[2].strip() for r in rows] == ["full", "snapkv", "knorm"]  # ranked by accuracy
    assert "66.7" in rows[1] and "50.0" in rows[1]  # snapkv accuracy and KV % of full
    assert "-33.3" in rows[1]  # paired delta vs full
    assert "niah_0_heatmaps.png" in md and (tmp_path / "board" / "niah_0_heatmaps.png").stat().st_size > 1000
    assert re.findall(r'<img [^>]*src="([^"]+)"', page) == ["niah_0_heatmaps.png"]  # beside the page, not inlined
    assert "niah.jsonl" in page
    headline = paths["markdown"].read_text(encoding="utf-8")
    assert "](headline_kv_heatmaps.png)" in headline and "[kv.md](kv.md)" in headline
    assert (tmp_path / "board" / "headline_kv_heatmaps.png").read_bytes()[:4] == b"\x89PNG"


def test_protocol_mismatch_is_not_ranked_together(tmp_path):
    store = ResultsStore(tmp_path / "r")
    store.append(_niah("full", 1024, 0.0, 0, 1.0, 10, 10) + _niah("snapkv", 1024, 0.0, 0, 1.0, 5, 10, protocol={"prompt_template": "chat"}))
    md = build_leaderboard(tmp_path / "r", tmp_path / "b")["kv.md"].read_text(encoding="utf-8")
    assert md.count("different protocols") == 2
    assert len(re.findall(r"\| +rank", md)) == 2


def test_empty_store_and_missing_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    paths = build_leaderboard(tmp_path / "empty", tmp_path / "b")
    assert "No NIAH records yet" in paths["kv.md"].read_text(encoding="utf-8")
    assert "[kv.md](kv.md)" in paths["markdown"].read_text(encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="results"):
        build_leaderboard(tmp_path / "missing", tmp_path / "b")
