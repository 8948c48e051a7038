"""The cross-family Pareto board, its front computation, and the "Records used" line that ends every board."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.board_pareto import pareto_board
from harness.leaderboard import BOARDS, build_leaderboard
from harness.pareto import dominates, pareto_front
from harness.pareto_rows import ALL, KV_LATENCY, PAIRS, mark_fronts
from harness.store import ResultsStore, make_record, newest_records
from suites.harness.markdown_tables import sections
from suites.harness.test_dllm_board import H100, H200, SPARSE, acc_cell, tp_cell
from suites.harness.test_kernels_board import bench_cell

CPU = {"device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "kv-sha"}
SCHED = {"device": "cpu: sched-box", "versions": {"torch": "t"}, "git_sha": "sched-sha"}


# ---------------------------------------------------------------- the front itself
@st.composite
def _clouds(draw):
    """Points with few distinct values per objective (so ties and duplicates are common) and their senses."""
    k = draw(st.integers(1, 3))
    values = st.one_of(st.integers(0, 4).map(float), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
    points = draw(st.lists(st.tuples(*[values] * k), max_size=24))
    return points, draw(st.tuples(*[st.sampled_from(("max", "min"))] * k))


@settings(max_examples=300)  # a pure function: many examples cost well under a second
@given(_clouds(), st.randoms())
def test_front_is_exactly_the_undominated_points_in_any_order(cloud, rnd):
    points, senses = cloud
    front = pareto_front(points, senses)
    assert front == sorted(set(front))
    on = set(front)
    for i in front:  # no front point is dominated by any point
        assert not any(dominates(q, points[i], senses) for q in points), (points, senses, i)
    for i in set(range(len(points))) - on:  # every other point is dominated by a front point
        assert any(dominates(points[j], points[i], senses) for j in front), (points, senses, i)
    for i in front:  # copies of a front point are on the front too (equal points do not dominate each other)
        assert all(j in on for j, p in enumerate(points) if p == points[i])
    order = list(range(len(points)))
    rnd.shuffle(order)
    shuffled = pareto_front([points[i] for i in order], senses)
    assert sorted(order[j] for j in shuffled) == front


def test_front_by_hand_ties_and_errors():
    pts = [(1.0, 5.0), (2.0, 5.0), (2.0, 5.0), (3.0, 6.0), (0.5, 0.5)]  # (accuracy up, bytes down)
    assert pareto_front(pts, ("max", "min")) == [1, 2, 3, 4]  # (1, 5) is beaten by the tie at (2, 5)
    assert pareto_front(pts, ("min", "min")) == [4]
    assert pareto_front([], ("max",)) == []
    with pytest.raises(ValueError, match="senses"):
        pareto_front(pts, ("up", "min"))
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(float("nan"), 1.0)], ("max", "min"))
    with pytest.raises(ValueError, match="objectives"):
        pareto_front([(1.0,)], ("max", "min"))


def test_rows_missing_an_objective_are_not_ranked_on_it():
    rows = [{"acc": 90.0, "bytes": 50.0, "lat": 2.0}, {"acc": 80.0, "bytes": 50.0, "lat": 1.0},
            {"acc": 95.0, "bytes": 50.0, "lat": None}]
    mark_fronts(rows)
    assert [r["fronts"][PAIRS[0]] for r in rows] == [False, False, True]  # accuracy x bytes: all have both
    assert [r["fronts"][ALL] for r in rows] == [True, True, None]
    assert [r["fronts"][("lat", "bytes")] for r in rows] == [False, True, None]


# ---------------------------------------------------------------- synthetic records of every family
def kv_cell(suite, method, length, score, kv, full, latency=None, qa=False, ratio=0.5, metric="exact_match"):
    """One KV cell: its accuracy metric, kv_bytes, kv_bytes_full, and (new runners) decode/compress latency."""
    params = {"compression_ratio": ratio, "question_aware": qa, "length": length, "seed": 0, "trial": 0}
    if suite == "niah":
        params["depth"] = 0.5
    proto = {"prompt_template": f"{suite}-v1", "query_aware": qa}
    metrics = [(metric, score, "fraction"), ("kv_bytes", kv, "bytes"), ("kv_bytes_full", full, "bytes")]
    if latency is not None:
        metrics += [("decode_ms_per_token", latency[0], "ms"), ("compress_ms", latency[1], "ms")]
    return [make_record(suite, "passkey" if suite == "niah" else "niah_single_1", method, "reference", "tiny", params,
                        m, float(v), u, protocol=proto, provenance=CPU) for m, v, u in metrics]


def _sched(task, method, rate, mean, p99, seed=0):
    params = {"rate": rate, "n_requests": 50, "max_batch": 4, "draft_len": 4, "seed": seed, "cost_device": "cpu"}
    return [make_record("scheduling", task, method, "sim", "trace", params, m, v, "s", seed=seed,
                        protocol={"trace": "v1"}, provenance=SCHED)
            for m, v in (("mean_latency_s", mean), ("p99_latency_s", p99))]


def _records() -> list[dict]:
    recs = []
    for n in (1024, 2048):  # NIAH: full and snapkv with latency, h2o on one cell only, streaming_llm without
        recs += kv_cell("niah", "full", n, 1.0, 100, 100, latency=(4.0, 0.0))
        recs += kv_cell("niah", "snapkv", n, 1.0 if n == 1024 else 0.0, 50, 100, latency=(2.0, 30.0))
        recs += kv_cell("niah", "h2o", n, 1.0 if n == 1024 else 0.5, 50, 100,
                        latency=(3.0, 20.0) if n == 1024 else None)
        recs += kv_cell("niah", "streaming_llm", n, 0.0, 25, 100)
        recs += kv_cell("ruler", "full", n, 0.8, 100, 100, metric="score")
        recs += kv_cell("ruler", "snapkv", n, 0.4, 50, 100, metric="score")
    for task in ("passkey", "copy"):
        recs += acc_cell(task, "vanilla", 1024, [True, True, False, True], cache=0.0)
        recs += acc_cell(task, "sparse_dllm", 1024, [True, False, False, True], params=SPARSE, cache=2**20)
        recs += acc_cell(task, "fast_dllm_prefix", 1024, [True, True, True, True], params={"mode": "prefix"},
                         cache=2**21)
    # Throughput: H200 at 4096 has the most variants (3), so latency comes from there and not from H100.
    recs += tp_cell(H100, "vanilla", 1024, 10.0, 15.0) + tp_cell(H100, "sparse_dllm", 1024, 80.0, 16.0, params=SPARSE)
    recs += tp_cell(H200, "vanilla", 4096, 2.0, 15.0) + tp_cell(H200, "sparse_dllm", 4096, 20.0, 16.0, params=SPARSE)
    recs += tp_cell(H200, "fast_dllm_prefix", 4096, 8.0, 17.0, params={"mode": "prefix"})
    recs += tp_cell(H200, "fast_dllm_prefix", 4096, 10.0, 17.0, params={"mode": "prefix", "cuda_graphs": True})
    for seed in (0, 1):  # scheduling: two seeds averaged, two loads
        recs += _sched("chat", "fcfs", 1.0, 4.0, 9.0, seed) + _sched("chat", "laps_sd", 1.0, 3.0 + seed, 12.0, seed)
        recs += _sched("chat", "las_mlfq", 1.0, 5.0, 13.0, seed) + _sched("chat", "srpt_oracle", 1.0, 1.0, 5.0, seed)
        recs += _sched("chat", "fcfs", 2.0, 8.0, 20.0, seed) + _sched("chat", "laps_sd", 2.0, 6.0, 30.0, seed)
    recs += bench_cell("decode_attention", "triton", "llama3-8b", 1, 4096, 0.05)
    return recs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    ResultsStore(root / "results").append(_records())
    paths = build_leaderboard(root / "results", root / "board")
    return root, paths, paths["markdown"].read_text(encoding="utf-8")


def _table(md: str, heading_start: str, n: int = 1) -> dict[str, dict[str, str]]:
    [(_, tables)] = [(h, t) for h, t in sections(md).items() if h.startswith(heading_start)]
    header, *rows = tables[n]
    return {r[0] if header[0] != "rate req/s" else f"{r[0]} {r[1]}": dict(zip(header, r)) for r in rows}


def test_pareto_is_the_first_board_with_its_own_page(built):
    root, paths, md = built
    assert BOARDS[0] is pareto_board
    assert re.findall(r"^## (.+)$", md, re.M)[0].startswith("Pareto fronts")
    page = paths["pareto.html"].read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "Pareto fronts" in page and "index.html" in page
    assert "[pareto.html](pareto.html)" in md and "Records used:" in page
    for name in ("pareto_kv.png", "pareto_dllm.png", "pareto_scheduling.png"):
        assert (root / "board" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md


def test_kv_rows_with_and_without_latency(built):
    _, _, md = built
    rows = _table(md, "NIAH: tiny, question-agnostic")
    assert rows["snapkv"]["accuracy %"] == "50.0" and rows["snapkv"]["KV % of full"] == "50.0"
    assert rows["snapkv"]["decode ms/token"] == "2" and rows["snapkv"]["compress ms"] == "30"
    assert rows["h2o"]["decode ms/token"] == "3 (1 of 2 cells)"
    assert rows["streaming_llm"]["decode ms/token"] == "not measured"
    assert rows["streaming_llm"]["compress ms"] == "not measured"
    # accuracy x bytes: full (100%, 100% of bytes), h2o (75, 50) and streaming_llm (0, 25) are undominated; snapkv
    # (50, 50) is beaten by h2o. With latency (4, 3, 2 ms) snapkv, the fastest, joins the front of all three.
    assert {m: r["front acc×bytes"] for m, r in rows.items()} == {
        "full": "yes", "h2o": "yes", "snapkv": "no", "streaming_llm": "yes"}
    assert {m: r["front all three"] for m, r in rows.items()} == {
        "full": "yes", "h2o": "yes", "snapkv": "yes", "streaming_llm": "n/a"}
    sources = _table(md, "NIAH: tiny, question-agnostic", 0)
    assert sources["latency"]["metric"].startswith("decode_ms_per_token") and sources["latency"]["unit"] == "ms"
    assert sources["accuracy"]["device"] == "cpu: test"
    ruler = _table(md, "RULER: tiny")
    assert ruler["snapkv"]["decode ms/token"] == "not measured" and ruler["snapkv"]["front acc×bytes"] == "yes"
    [glance] = sections(md)["Fronts at a glance"]
    by_panel = {r[1]: dict(zip(glance[0], r)) for r in glance[1:]}
    assert by_panel["RULER: tiny, question-agnostic"]["objectives"].endswith("(latency not measured)")
    assert by_panel["RULER: tiny, question-agnostic"]["on the front"] == "full, snapkv"
    assert by_panel["NIAH: tiny, question-agnostic"]["on the front"] == "full, h2o, snapkv"
    assert "streaming_llm" in by_panel["NIAH: tiny, question-agnostic"]["objectives"]  # named as not ranked


def test_dllm_rows_join_accuracy_with_the_most_measured_throughput(built):
    _, _, md = built
    rows = _table(md, "dLLM decoding")
    assert rows["vanilla (torch)"]["ms/token"] == "500.0"  # H200 @ 4096: 1000 / 2 tokens/s, not H100's 100
    assert rows["sparse_dllm (torch, keep 0.5)"]["ms/token"] == "50.0"
    assert rows["fast_dllm_prefix (torch)"]["tokens/s"] == "10.00"  # the faster (CUDA graphs) setting counts
    assert rows["fast_dllm_prefix (torch)"]["throughput cell"] == "fast_dllm_prefix (torch, graphs)"
    assert rows["sparse_dllm (torch, keep 0.5)"]["accuracy %"] == "50.0"
    assert rows["sparse_dllm (torch, keep 0.5)"]["cache MiB (peak, mean)"] == "1.0"
    assert rows["vanilla (torch)"]["front all three"] == "yes"  # no cache at all
    assert rows["fast_dllm_prefix (torch)"]["front acc×bytes"] == "yes"  # the most accurate
    sources = _table(md, "dLLM decoding", 0)
    assert sources["latency"]["device"] == H200 and "4096" in sources["latency"]["aggregation"]
    assert f"Latency: {H200}, 4096-token prompt" in md


def test_scheduling_rows_are_lossless_and_ranked_per_load(built):
    _, _, md = built
    rows = _table(md, "Scheduling: chat (sim)")
    assert rows["1 laps_sd"]["mean latency s"] == "3.5"  # mean over seeds 0 and 1
    assert rows["1 laps_sd"]["accuracy"] == "unchanged (lossless)"
    assert rows["1 laps_sd"]["KV bytes"] == "— (no KV axis)"
    assert {k: r["front mean×p99 (this rate)"] for k, r in rows.items()} == {
        "1 fcfs": "yes", "1 las_mlfq": "no", "1 laps_sd": "yes", "1 srpt_oracle": "oracle, not ranked",
        "2 fcfs": "yes", "2 laps_sd": "yes"}


def _expected(records: list[dict], suite: str, metrics=None, newest=True) -> dict:
    recs = newest_records(records, suite) if newest else [r for r in records if r["suite"] == suite]
    recs = [r for r in recs if metrics is None or r["metric"] in metrics]
    return {"records": len(recs), "cells": len({(r["cell"], r["device"]) for r in recs}),
            "metrics": ", ".join(sorted({r["metric"] for r in recs})), "shas": {r["git_sha"] for r in recs},
            "devices": {r["device"] for r in recs}}


LINK = re.compile(r"\[(?P<file>[\w.]+)\]\((?P<href>[^)]+)\) — suite (?P<suite>\w+), metrics (?P<metrics>[^—]+)"
                  r" — (?P<records>\d+) records, (?P<cells>\d+) cells? — git (?P<shas>[^—]+)"
                  r" — devices: (?P<devices>.+)$")


def _links(section: str) -> dict[str, re.Match]:
    tail = section[section.rindex("Records used:"):]
    return {m["suite"]: m for m in (LINK.search(line) for line in tail.splitlines()) if m}


def test_every_board_ends_with_the_records_it_used(built):
    root, _, md = built
    records = ResultsStore(root / "results").records()
    boards = {s.split("\n", 1)[0]: s for s in md.split("\n## ")[1:]}
    assert len(boards) == 6  # pareto, NIAH, RULER, kernel latency, dLLM, schedulers
    for title, section in boards.items():
        assert section.rstrip().splitlines()[-1].startswith(("Records used:", "- [")), title
    kv = {"exact_match", "score", "kv_bytes", "kv_bytes_full", "decode_ms_per_token", "compress_ms"}
    tp_h200 = [r for r in records if r["suite"] == "dllm_throughput" and r["device"] == H200]
    expected = {
        "Pareto fronts": {
            "niah": _expected(records, "niah", kv), "ruler": _expected(records, "ruler", kv),
            "dllm": _expected(records, "dllm", {"accuracy", "cache_bytes_peak"}),
            "dllm_throughput": _expected([r for r in tp_h200 if r["params"].get("cuda_graphs") or
                                          r["method"] != "fast_dllm_prefix"], "dllm_throughput", {"tokens_per_s"}),
            "scheduling": _expected(records, "scheduling")},
        "KV-cache methods": {"niah": _expected(records, "niah", kv - set(KV_LATENCY), newest=False)},
        "RULER": {"ruler": _expected(records, "ruler", kv - set(KV_LATENCY))},
        "Kernels: decode latency": {"kernels_bench": _expected(records, "kernels_bench")},
        "dLLM caches": {"dllm": _expected(records, "dllm", {"accuracy", "tokens_equal_vanilla", "cache_bytes_peak"}),
                        "dllm_throughput": _expected(records, "dllm_throughput")},
        "Schedulers": {"scheduling": _expected(records, "scheduling")},
    }
    assert expected["Pareto fronts"]["dllm_throughput"]["records"] == 3
    for start, suites in expected.items():
        [section] = [s for t, s in boards.items() if t.startswith(start)]
        links = _links(section)
        assert set(links) == set(suites), start
        for suite, want in suites.items():
            m = links[suite]
            assert m["file"] == f"{suite}.jsonl" and (root / "board" / m["href"]).resolve() == \
                (root / "results" / f"{suite}.jsonl").resolve(), (start, m["href"])
            assert not Path(m["href"]).is_absolute()
            got = {"records": int(m["records"]), "cells": int(m["cells"]), "metrics": m["metrics"].strip(),
                   "shas": set(m["shas"].strip().split(", ")), "devices": set(m["devices"].strip().split("; "))}
            assert got == want, (start, suite)


def test_board_is_none_without_records_and_kv_alone_works():
    assert pareto_board([]) is None
    board = pareto_board(kv_cell("niah", "full", 1024, 1.0, 10, 10) + kv_cell("niah", "snapkv", 1024, 0.0, 5, 10))
    assert board.page == "pareto.html" and list(board.figures) == ["pareto_kv.png"]
    assert {r["suite"] for r in board.records} == {"niah"} and len(board.records) == 6
