"""The cross-family Pareto page: exact and CI-aware fronts, fronts only over axes of one model, markers named by
the legend, and the "Records used" line that ends every board."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.boards.leaderboard import FAMILIES, build_leaderboard
from harness.boards.page import plt
from harness.boards.pareto import band, ci_dominates, ci_front, dominates, paired_front, pareto_front
from harness.boards.pareto_board import pareto_board, plotted_pairs
from harness.boards.pareto_plot import front_panel, styles
from harness.boards.pareto_rows import ALL, PAIRS, mark_fronts, panel_combos
from harness.dllm.pareto_rows import dllm_panels
from harness.kv.pareto_rows import KV_LATENCY, kv_panels
from harness.store import ResultsStore, make_record, newest_records
from suites.harness.dllm.test_dllm_board import H100, H200, SPARSE, acc_cell, tp_cell
from suites.harness.kernels.test_kernels_board import bench_cell
from suites.harness.markdown_tables import sections

CPU = {"device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "kv-sha"}
SCHED = {"device": "cpu: sched-box", "versions": {"torch": "t"}, "git_sha": "sched-sha"}


# ---------------------------------------------------------------- the exact front
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


# ---------------------------------------------------------------- the CI-aware front
@settings(max_examples=200)
@given(_clouds())
def test_with_zero_width_intervals_the_ci_front_is_the_exact_front(cloud):
    points, senses = cloud
    intervals = [[(v, v) for v in p] for p in points]
    assert ci_front(points, intervals, senses) == pareto_front(points, senses)


@settings(max_examples=200)
@given(_clouds(), st.lists(st.floats(0, 50), min_size=24, max_size=24))
def test_ci_front_is_never_empty_and_holds_only_undominated_points(cloud, widths):
    points, senses = cloud
    intervals = [[(v - w, v + w) for v in p] for p, w in zip(points, widths)]
    front = ci_front(points, intervals, senses)
    assert bool(front) == bool(points)
    for i in front:
        assert not any(ci_dominates(intervals[j], intervals[i], senses) for j in range(len(points)))


def test_a_point_within_the_interval_is_not_on_the_front_because_of_a_tenth_of_a_percent():
    """The LongBench case: 0.8% accuracy with 0.1% fewer bytes than a method at 21.9% sat on the exact front."""
    points = [(21.9, 50.1), (0.8, 49.8), (24.6, 100.0)]  # (accuracy %, KV % of full)
    intervals = [[(10.0, 34.0), band(50.1, 0.01)], [(0.0, 2.4), band(49.8, 0.01)], [(6.5, 47.2), band(100.0, 0.01)]]
    assert pareto_front(points, ("max", "min")) == [0, 1, 2]  # exact: 0.1% fewer bytes puts it on the front
    assert ci_front(points, intervals, ("max", "min")) == [0]  # full's accuracy is within snapkv's interval
    # Two methods whose accuracies overlap and whose bytes differ by 0.1%: neither beats the other.
    close = [(50.0, 50.0), (52.0, 50.05)]
    assert ci_front(close, [[(40.0, 60.0), band(50.0, 0.01)], [(42.0, 62.0), band(50.05, 0.01)]],
                    ("max", "min")) == [0, 1]
    with pytest.raises(ValueError, match="hold"):
        ci_front([(1.0,)], [[(2.0, 3.0)]], ("max",))


def test_paired_front_compares_seed_by_seed():
    # b is 1 s slower than a on every seed although the seeds' spread is far wider: a paired difference resolves it.
    a = [{0: 10.0, 1: 30.0, 2: 50.0}, {0: 20.0, 1: 60.0, 2: 90.0}]
    b = [{k: v + 1.0 for k, v in a[0].items()}, {k: v + 1.0 for k, v in a[1].items()}]
    noisy = [{0: 9.0, 1: 31.0, 2: 49.0}, {0: 19.0, 1: 62.0, 2: 88.0}]  # a's neighbour, sometimes better, sometimes not
    assert paired_front([a, b], ("min", "min")) == [0]
    assert paired_front([a, b, noisy], ("min", "min")) == [0, 2]
    assert paired_front([a, [{5: 1.0}, {5: 1.0}]], ("min", "min")) == [0, 1]  # no common seed: not comparable


def test_rows_missing_an_objective_are_not_ranked_on_it():
    rows = [{"acc": 90.0, "bytes": 50.0, "lat": 2.0}, {"acc": 80.0, "bytes": 50.0, "lat": 1.0},
            {"acc": 95.0, "bytes": 50.0, "lat": None}]
    mark_fronts(rows)
    assert [r["fronts"][PAIRS[0]] for r in rows] == [False, False, True]  # accuracy x bytes: all have both
    assert [r["fronts"][ALL] for r in rows] == [True, True, None]
    assert [r["fronts"][("lat", "bytes")] for r in rows] == [False, True, None]
    for r in rows:  # with intervals that overlap on accuracy, the row at 95% no longer beats the one at 90%
        r["ci"] = {"acc": (r["acc"] - 10, r["acc"] + 10)}
    mark_fronts(rows)
    assert [r["fronts"][PAIRS[0]] for r in rows] == [True, True, True]


def test_fronts_only_over_axes_of_one_model():
    assert panel_combos({"acc": "tiny", "bytes": "tiny", "lat": "llada-8b"}) == [("bytes", "acc")]
    assert panel_combos({"acc": "m", "bytes": "m", "lat": "m"}) == [*PAIRS, ALL]
    assert panel_combos({"bytes": "llada", "lat": "llada"}) == [("lat", "bytes")]


# ---------------------------------------------------------------- the plot: each marker named by the legend
def test_each_point_is_drawn_in_its_own_style_under_its_own_label():
    points = [{"x": 50.0, "y": 86.3, "label": "fast_dllm_prefix (torch)"},
              {"x": 50.0, "y": 86.3, "label": "fast_dllm_dual (torch)"},  # the very same spot
              {"x": 10.0, "y": 80.0, "label": "sparse_dllm (triton, keep 0.5)", "yci": (78.0, 83.0)},
              {"x": 0.0, "y": 82.9, "label": "vanilla (torch)"}]
    style = styles(p["label"] for p in points)
    assert len(set(style.values())) == len(points)
    fig, ax = plt.subplots()
    front_panel(ax, points, {3}, ("min", "max"), style, xlabel="x", ylabel="y", title="t")
    drawn = {}
    for container in ax.containers:  # one errorbar container per point, labelled with its row
        line = container.lines[0]
        drawn[container.get_label()] = (list(line.get_xdata()), list(line.get_ydata()), line.get_marker(),
                                        line.get_color())
    plt.close(fig)
    assert set(drawn) == {p["label"] for p in points}
    for p in points:
        xs, ys, marker, color = drawn[p["label"]]
        assert (xs, ys) == ([p["x"]], [p["y"]]) and (color, marker) == style[p["label"]], p["label"]


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


def sched_cell(task, method, rate, mean, p99, seed=0):
    params = {"rate": rate, "n_requests": 50, "max_batch": 4, "draft_len": 4, "seed": seed, "cost_device": "cpu"}
    return [make_record("scheduling", task, method, "sim", "trace", params, m, v, "s", seed=seed,
                        protocol={"trace": "v1"}, provenance=SCHED, extra={"load": rate / 4})
            for m, v in (("mean_latency_s", mean), ("p99_latency_s", p99))]


def records_of_every_family() -> list[dict]:
    recs = []
    for n in (1024, 2048, 4096):  # NIAH: full and snapkv with latency, h2o on two cells only, streaming_llm without
        recs += kv_cell("niah", "full", n, 1.0, 100, 100, latency=(4.0, 0.0))
        recs += kv_cell("niah", "snapkv", n, 1.0 if n == 1024 else 0.0, 50, 100, latency=(2.0, 30.0))
        recs += kv_cell("niah", "h2o", n, 1.0 if n != 2048 else 0.5, 50, 100,
                        latency=(3.0, 20.0) if n != 4096 else None)
        recs += kv_cell("niah", "streaming_llm", n, 0.0, 25, 100)
        recs += kv_cell("ruler", "full", n, 0.8, 100, 100, metric="score")
        recs += kv_cell("ruler", "snapkv", n, 0.4, 50, 100, metric="score")
    for task in ("passkey", "copy"):
        recs += acc_cell(task, "vanilla", 1024, [True, True, False, True], cache=0.0)
        recs += acc_cell(task, "sparse_dllm", 1024, [True, False, False, True], params=SPARSE, cache=2**20)
        recs += acc_cell(task, "fast_dllm_prefix", 1024, [True, True, True, True], params={"mode": "prefix"},
                         cache=2**21)
    # Throughput: H200 at 4096 has the most variants (3), so speed comes from there and not from H100.
    recs += tp_cell(H100, "vanilla", 1024, 10.0, 15.0) + tp_cell(H100, "sparse_dllm", 1024, 80.0, 16.0, params=SPARSE)
    recs += tp_cell(H200, "vanilla", 4096, 2.0, 15.0) + tp_cell(H200, "sparse_dllm", 4096, 20.0, 16.0, params=SPARSE)
    recs += tp_cell(H200, "fast_dllm_prefix", 4096, 8.0, 17.0, params={"mode": "prefix"})
    recs += tp_cell(H200, "fast_dllm_prefix", 4096, 10.0, 17.0, params={"mode": "prefix", "cuda_graphs": True})
    for seed in (0, 1):  # scheduling: two seeds averaged, two loads
        recs += sched_cell("chat", "fcfs", 1.0, 4.0, 9.0, seed) + sched_cell("chat", "laps_sd", 1.0, 3.0 + seed, 12.0, seed)
        recs += sched_cell("chat", "las_mlfq", 1.0, 5.0, 13.0, seed) + sched_cell("chat", "srpt_oracle", 1.0, 1.0, 5.0, seed)
        recs += sched_cell("chat", "fcfs", 2.0, 8.0, 20.0, seed) + sched_cell("chat", "laps_sd", 2.0, 6.0, 30.0, seed)
    recs += bench_cell("decode_attention", "triton", "llama3-8b", 1, 4096, 0.05)
    return recs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    ResultsStore(root / "results").append(records_of_every_family())
    paths = build_leaderboard(root / "results", root / "board")
    return root, paths, paths["pareto.md"].read_text(encoding="utf-8")


def _table(md: str, heading_start: str, n: int = 1) -> dict[str, dict[str, str]]:
    [(_, tables)] = [(h, t) for h, t in sections(md).items() if h.startswith(heading_start)]
    header, *rows = tables[n]
    return {r[0] if header[0] != "load" else f"{r[0]} {r[1]}": dict(zip(header, r)) for r in rows}


def test_pareto_has_its_own_page_linked_from_the_headline(built):
    root, paths, md = built
    assert FAMILIES[-1].slug == "pareto" and md.startswith("# Pareto fronts")
    page = paths["pareto.html"].read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "index.html" in page and "Records used:" in page
    assert "[pareto.md](pareto.md)" in paths["markdown"].read_text(encoding="utf-8")
    assert "href='pareto.html'" in paths["html"].read_text(encoding="utf-8")
    for name in ("pareto_kv.png", "pareto_dllm.png", "pareto_scheduling.png"):
        assert (root / "board" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md and f'src="{name}"' in page


def test_kv_rows_with_and_without_latency(built):
    _, _, md = built
    rows = _table(md, "NIAH: tiny, question-agnostic")
    assert rows["snapkv"]["accuracy % [95% CI]"].startswith("33.3 [") and rows["snapkv"]["KV % of full"] == "50.0"
    assert rows["snapkv"]["decode ms/token [95% CI]"] == "2 [2, 2]" and rows["snapkv"]["compress ms"] == "30"
    assert rows["h2o"]["cells (timed)"] == "3 (2)" and rows["h2o"]["decode ms/token [95% CI]"] == "3 [3, 3]"
    assert rows["streaming_llm"]["decode ms/token [95% CI]"] == "not measured"
    assert rows["streaming_llm"]["compress ms"] == "not measured"
    # Three cells per method: intervals are wide. accuracy x bytes: h2o (83% [50, 100], half the bytes) ties with
    # full (100%) on accuracy and holds half its bytes, so full is off the front; snapkv (33% [0, 100]) ties with
    # streaming_llm (0%) on accuracy but holds twice its bytes; h2o is significantly more accurate than
    # streaming_llm, which holds the fewest bytes: both on the front. With latency, snapkv (2 ms on every cell) is
    # significantly faster than h2o (3 ms) at the same bytes and an accuracy tie: it wins the other fronts.
    assert {m: r["on the front of"] for m, r in rows.items()} == {
        "full": "—", "h2o": "A×B", "snapkv": "A×L, B×L, all 3", "streaming_llm": "A×B"}
    sources = _table(md, "NIAH: tiny, question-agnostic", 0)
    assert sources["latency"]["metric"].startswith("decode_ms_per_token") and sources["latency"]["unit"] == "ms"
    assert sources["accuracy"]["device"] == "cpu: test"
    ruler = _table(md, "RULER: tiny")
    assert ruler["snapkv"]["decode ms/token [95% CI]"] == "not measured" and ruler["snapkv"]["on the front of"] == "A×B"
    [glance] = sections(md)["Fronts at a glance"]
    by_panel = {r[1]: dict(zip(glance[0], r)) for r in glance[1:]}
    assert by_panel["RULER: tiny, question-agnostic"]["ranked on"] == "accuracy ↑, bytes ↓"
    assert by_panel["RULER: tiny, question-agnostic"]["on the front"] == "full, snapkv"
    # the glance shows the widest front most rows are ranked on: accuracy x bytes (streaming_llm has no latency)
    assert by_panel["NIAH: tiny, question-agnostic"]["ranked on"] == "accuracy ↑, bytes ↓"
    assert by_panel["NIAH: tiny, question-agnostic"]["on the front"] == "h2o, streaming_llm"


def test_dllm_panels_never_mix_the_two_models(built):
    _, _, md = built
    acc = _table(md, "dLLM decoding, accuracy × cache")
    assert acc["sparse_dllm (torch, keep 0.5)"]["accuracy % [95% CI]"].startswith("50.0 [")
    assert acc["sparse_dllm (torch, keep 0.5)"]["cache MiB (peak, mean)"] == "1.0"
    assert acc["vanilla (torch)"]["on the front of"] == "A×B"  # no cache at all
    assert "ms/token" not in _table(md, "dLLM decoding, accuracy × cache", 0)["accuracy"]
    speed = _table(md, "dLLM decoding, speed × memory")
    assert speed["vanilla (torch)"]["ms/token"] == "500.0"  # H200 @ 4096: 1000 / 2 tokens/s, not H100's 100
    assert speed["sparse_dllm (torch, keep 0.5)"]["ms/token"] == "50.0"
    assert speed["fast_dllm_prefix (torch)"]["tokens/s"] == "10.00"  # the faster (CUDA graphs) setting counts
    assert speed["fast_dllm_prefix (torch)"]["throughput cell"] == "fast_dllm_prefix (torch, graphs)"
    assert speed["vanilla (torch)"]["on the front of"] == "B×L"  # the least memory
    sources = _table(md, "dLLM decoding, speed × memory", 0)
    assert sources["latency"]["device"] == H200 and "4096" in sources["latency"]["aggregation"]
    panels, _ = dllm_panels(records_of_every_family())
    assert len(panels) == 2
    for p in panels:  # every ranked pair and every plotted pair is of one model
        assert len(set(p["models"].values())) == 1
        assert all(len({p["models"][k] for k in combo}) == 1 for combo in p["combos"])
        assert set(plotted_pairs(p)) <= set(p["combos"])
    assert ("lat", "acc") not in panels[0]["combos"] + panels[1]["combos"]


def test_scheduling_rows_are_ranked_per_load(built):
    _, _, md = built
    rows = _table(md, "Scheduling: chat (sim)")
    assert rows["0.25 laps_sd"]["mean latency s [95% CI]"].startswith("3.5 [")  # mean over seeds 0 and 1
    # Paired over seeds. Load 0.25: laps_sd's mean is lower than fcfs's on one seed of two (not significant) and
    # its p99 3 s higher on both: fcfs dominates it; las_mlfq is worse than fcfs on both objectives on both seeds.
    # Load 0.5: laps_sd is 2 s faster on mean and 10 s slower on p99 on both seeds: neither dominates.
    assert {k: r["front mean×p99 (this load)"] for k, r in rows.items()} == {
        "0.25 fcfs": "yes", "0.25 las_mlfq": "no", "0.25 laps_sd": "no", "0.25 srpt_oracle": "oracle, not ranked",
        "0.5 fcfs": "yes", "0.5 laps_sd": "yes"}


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
    root, paths, _ = built
    records = ResultsStore(root / "results").records()
    boards = {}
    for slug in ("pareto", "kv", "kernels", "dllm", "scheduling"):
        text = paths[f"{slug}.md"].read_text(encoding="utf-8")
        boards.update({s.split("\n", 1)[0]: s for s in text.split("\n## ")[1:]})
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
                                          r["method"] != "fast_dllm_prefix"], "dllm_throughput",
                                         {"tokens_per_s", "peak_mem_gib"}),
            "scheduling": _expected(records, "scheduling")},
        "KV-cache methods": {"niah": _expected(records, "niah", kv - set(KV_LATENCY), newest=False)},
        "RULER": {"ruler": _expected(records, "ruler", kv - set(KV_LATENCY))},
        "Kernels: decode latency": {"kernels_bench": _expected(records, "kernels_bench")},
        "dLLM caches": {"dllm": _expected(records, "dllm", {"accuracy", "tokens_equal_vanilla", "cache_bytes_peak"}),
                        "dllm_throughput": _expected(records, "dllm_throughput")},
        "Schedulers": {"scheduling": _expected(records, "scheduling")},
    }
    assert expected["Pareto fronts"]["dllm_throughput"]["records"] == 6
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
    board = pareto_board(kv_cell("niah", "full", 1024, 1.0, 10, 10) + kv_cell("niah", "snapkv", 1024, 0.0, 5, 10)
                         + kv_cell("niah", "h2o", 1024, 0.0, 4, 10))
    assert list(board.figures) == ["pareto_kv.png"]
    assert {r["suite"] for r in board.records} == {"niah"} and len(board.records) == 9
    (panel,), _ = kv_panels(board.records)
    assert plotted_pairs(panel) == [("bytes", "acc")] and "lat" not in panel["axes"]
