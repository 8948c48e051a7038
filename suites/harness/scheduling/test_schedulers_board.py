"""The schedulers board of the leaderboard, built from planted scheduling records (random values, fixed seed)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from harness.boards.leaderboard import build_leaderboard
from harness.boards.page import PAGE_PX, png_size
from harness.scheduling.board import BASELINES, schedulers_board
from harness.store import ResultsStore, make_record
from reference.scheduling.policies import policy_names
from suites.harness.markdown_tables import sections

POLICIES = tuple(policy_names())

PROV = {"device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "abc"}
METRICS = (("mean_latency_s", "s"), ("p50_latency_s", "s"), ("p99_latency_s", "s"), ("mean_ttft_s", "s"),
           ("p99_ttft_s", "s"), ("mean_norm_latency_s", "s/token"), ("throughput_tok_s", "tok/s"))
WORKLOADS = ("chat-lognormal", "paper-like")
RATES = (0.5, 2.0, 6.0)


def _params(rate, seed=0, cost_device="cpu", **kw):
    return {"rate": rate, "n_requests": 200, "max_batch": 8, "draft_len": 4, "seed": seed, "cost_device": cost_device, **kw}


def _cell(rng, task, method, params, impl="sim", mean=None, protocol=None, time=None):
    """The seven metric records of one (policy, workload, rate, impl) cell; returns (records, {metric: value})."""
    lat = rng.lognormal(0.0, 1.0, size=64)
    ttft = lat * rng.uniform(0.05, 0.3, size=64)
    values = {"mean_latency_s": float(lat.mean()) if mean is None else mean,
              "p50_latency_s": float(np.median(lat)), "p99_latency_s": float(np.quantile(lat, 0.99)),
              "mean_ttft_s": float(ttft.mean()), "p99_ttft_s": float(np.quantile(ttft, 0.99)),
              "mean_norm_latency_s": float(rng.uniform(0.01, 0.2)), "throughput_tok_s": float(rng.uniform(50, 900))}
    recs = []
    for metric, unit in METRICS:
        extra = {"latencies": lat.tolist(), "ttfts": ttft.tolist()} if metric == "mean_latency_s" else None
        recs.append(make_record("scheduling", task, method, impl, "smollm2", params, metric, values[metric], unit,
                                seed=params["seed"], protocol=protocol or {"trace": "v1"}, extra=extra, provenance=PROV))
        if time:
            recs[-1]["time"] = time
    return recs, values


def _grid(rng, **kw):
    """Every policy x workload x rate, simulated; returns (records, {(task, rate, policy): values})."""
    recs, values = [], {}
    for task in WORKLOADS:
        for rate in RATES:
            for method in POLICIES:
                r, v = _cell(rng, task, method, _params(rate, **kw))
                recs += r
                values[(task, rate, method)] = v
    return recs, values


_sections = sections


def _workload(sections, task):
    [(heading, tables)] = [(h, t) for h, t in sections.items() if h.startswith(f"{task} (sim)")]
    return heading, tables


def test_board_exists_only_with_scheduling_records():
    rng = np.random.default_rng(1)
    assert schedulers_board([]) is None
    other = make_record("kernels_bench", "decode_attention", "full", "triton", "llama3-8b", {"batch": 1},
                        "latency_ms", 0.1, "ms", provenance=PROV)
    assert schedulers_board([other]) is None
    recs, _ = _cell(rng, "chat-lognormal", "fcfs", _params(1.0))
    board = schedulers_board([other, *recs])
    assert board is not None and board.title.startswith("Schedulers")


def test_tables_hold_every_policy_and_rate_and_the_laps_reduction():
    rng = np.random.default_rng(2)
    recs, values = _grid(rng)
    sections = _sections(schedulers_board(recs).markdown)
    for task in WORKLOADS:
        heading, (table, vs, paired) = _workload(sections, task)
        assert heading == f"{task} (sim)"  # short: the setting is printed under it
        md = schedulers_board(recs).markdown
        setting = md[md.index(f"### {heading}"):].splitlines()[2]
        assert setting.startswith("Trace smollm2;") and "cost_device cpu" in setting and "draft_len 4" in setting
        header, rows = table[0], table[1:]
        assert header[:3] == ["load", "policy", "mean s"] and header[-1] == "mean s 95% CI"
        assert all(r[-1] == "—" for r in rows)  # one seed: no interval
        assert [(r[0], r[1]) for r in paired[1:]] == [(f"{rate:g} req/s", m) for rate in RATES
                                                      for m in ("srpt_len_late", "laps_sd", "srpt_oracle")]
        assert {(r[0], r[1]) for r in rows} == {(f"{rate:g} req/s", m) for rate in RATES for m in POLICIES}
        for r in rows:
            v = values[(task, float(r[0].split()[0]), r[1])]
            assert r[2:8] == [f"{v[m]:.4g}" for m, _ in METRICS[:6]] and r[8] == f"{v['throughput_tok_s']:.1f}"
        assert [r[0] for r in vs[1:]] == [f"{rate:g} req/s" for rate in RATES]
        for r in vs[1:]:
            rate = float(r[0].split()[0])
            mean = {m: values[(task, rate, m)]["mean_latency_s"] for m in POLICIES}
            best = min(BASELINES, key=mean.get)
            assert r[1] == best and r[2] == f"{mean[best]:.4g}" and r[3] == f"{mean['laps_sd']:.4g}"
            assert r[4] == f"{100 * (mean[best] - mean['laps_sd']) / mean[best]:+.1f}"
            assert r[6] == f"{100 * (mean['laps_sd'] - mean['srpt_oracle']) / mean['srpt_oracle']:+.1f}"


def test_seeds_are_averaged_and_the_newest_record_wins():
    rng = np.random.default_rng(3)
    old, _ = _cell(rng, "chat-lognormal", "laps_sd", _params(1.0), mean=111.0, time="2026-01-01T00:00:00Z")
    new, _ = _cell(rng, "chat-lognormal", "laps_sd", _params(1.0), mean=2.5, time="2026-06-01T00:00:00Z")
    seed1, _ = _cell(rng, "chat-lognormal", "laps_sd", _params(1.0, seed=1), mean=3.5)
    fcfs, _ = _cell(rng, "chat-lognormal", "fcfs", _params(1.0), mean=5.0)
    for order in ([*old, *new], [*new, *old]):  # newest by time, whichever was stored last
        _, (table, vs, paired) = _workload(_sections(schedulers_board([*order, *seed1, *fcfs]).markdown),
                                           "chat-lognormal")
        laps = next(r for r in table[1:] if r[1] == "laps_sd")
        assert laps[2] == f"{(2.5 + 3.5) / 2:.4g}" and laps[9] == "2"
        half = 12.706 * np.std([2.5, 3.5], ddof=1) / np.sqrt(2)  # Student t, 1 degree of freedom
        assert laps[10] == f"[{3 - half:.4g}, {3 + half:.4g}]"
        assert paired[0][2] == "vs fcfs %" and paired[1][1:3] == ["laps_sd", "-50.0 [-50.0, -50.0]"]
        assert paired[1][-1] == "1"  # only seed 0 has both
        assert vs[1][1] == "fcfs" and vs[1][4] == f"{100 * (5.0 - 3.0) / 5.0:+.1f}" and vs[1][6] == "—"


def test_paired_ratios_pair_seeds_and_carry_a_t_interval():
    """laps_sd = fcfs x (1 + d_k) on seed k: the paired column is mean(100 d) +- t(0.975, 4) sd / sqrt(5), whatever
    the seeds' spread of absolute latencies (which the unpaired CI carries)."""
    rng = np.random.default_rng(7)
    d = rng.uniform(-0.5, -0.1, size=5)
    recs = []
    for k in range(5):
        base = float(rng.uniform(1, 50))
        recs += _cell(rng, "paper-like", "fcfs", _params(1.0, seed=k), mean=base)[0]
        recs += _cell(rng, "paper-like", "laps_sd", _params(1.0, seed=k), mean=base * (1 + d[k]))[0]
        recs += _cell(rng, "paper-like", "laps_sd(late_error=None)", _params(1.0, seed=k), mean=base)[0]
    _, (_, _, paired) = _workload(_sections(schedulers_board(recs).markdown), "paper-like")
    rows = {r[1]: r for r in paired[1:]}
    m, half = 100 * d.mean(), 2.776 * 100 * d.std(ddof=1) / np.sqrt(5)
    assert rows["laps_sd"][2] == f"{m:+.1f} [{m - half:+.1f}, {m + half:+.1f}]" and rows["laps_sd"][-1] == "5"
    assert rows["laps_sd(late_error=None)"][2] == "+0.0 [+0.0, +0.0]"
    assert rows["laps_sd"][3] == "—"  # no sjf_predicted records


def test_cost_devices_and_protocols_are_never_mixed():
    rng = np.random.default_rng(4)
    recs = _cell(rng, "paper-like", "fcfs", _params(1.0))[0]
    recs += _cell(rng, "paper-like", "fcfs", _params(1.0, cost_device="cuda: H100"))[0]
    recs += _cell(rng, "paper-like", "laps_sd", _params(1.0), protocol={"trace": "v2"})[0]
    board = schedulers_board(recs)
    headings = [h for h in board.markdown.splitlines() if h.startswith("### paper-like")]
    assert sorted(headings) == ["### paper-like (sim): cost_device cpu, protocol 1 of 2",
                                "### paper-like (sim): cost_device cpu, protocol 2 of 2",
                                "### paper-like (sim): cost_device cuda: H100"]
    assert board.markdown.count("different protocols") == 2


def test_decision_overhead_table():
    rng = np.random.default_rng(5)
    us = {m: float(rng.uniform(1, 120)) for m in POLICIES}
    recs = [make_record("scheduling", "decision-overhead", m, "sim", "smollm2", {"queued": 1000, "seed": 0},
                        "decision_overhead_us", v, "us", provenance=PROV) for m, v in us.items()]
    sections = _sections(schedulers_board(recs).markdown)
    [table] = sections["Scheduling decision overhead"]
    assert [r[1] for r in table[1:]] == list(POLICIES)
    for r in table[1:]:
        assert r[0] == "1000" and r[3] == f"{us[r[1]]:.2f}" and r[4] == ("yes" if us[r[1]] <= 50 else "NO")
    assert not any(h.startswith("decision-overhead") for h in sections)  # no workload table for the microbenchmark


def test_sim_vs_real_relative_difference():
    rng = np.random.default_rng(6)
    recs, want = [], {}
    for method in ("fcfs", "laps_sd"):
        sim, real = float(rng.uniform(1, 10)), float(rng.uniform(1, 10))
        recs += _cell(rng, "chat-lognormal", method, _params(2.0), mean=sim)[0]
        recs += _cell(rng, "chat-lognormal", method, _params(2.0), impl="real", mean=real)[0]
        want[method] = (sim, real, (sim - real) / real)
    recs += _cell(rng, "chat-lognormal", "las_mlfq", _params(2.0))[0]  # simulated only: not in the table
    recs += _cell(rng, "chat-lognormal", "sjf_predicted", _params(4.0), impl="real", mean=1.0)[0]  # served only
    [table] = _sections(schedulers_board(recs).markdown)["Simulator vs real serving loop"]
    rows = {r[1]: r for r in table[1:]}
    assert set(rows) == {"fcfs", "laps_sd", "sjf_predicted"}
    for method, (sim, real, rel) in want.items():
        r = rows[method]
        assert r[5:9] == [f"{sim:.4g}", f"{real:.4g}", f"{100 * rel:+.1f}", "yes" if abs(rel) <= 0.15 else "NO"]
    assert rows["sjf_predicted"][5] == "—" and rows["sjf_predicted"][7] == "—"
    # The real records stay out of the simulated workload tables.
    _, (table, *_) = _workload(_sections(schedulers_board(recs).markdown), "chat-lognormal")
    assert {r[1] for r in table[1:]} == {"fcfs", "laps_sd", "las_mlfq"}


def test_figures_are_png_and_the_family_page_shows_them(tmp_path):
    rng = np.random.default_rng(7)
    recs, _ = _grid(rng)
    board = schedulers_board(recs)
    assert sorted(board.figures) == ["sched_0_cdf.png", "sched_0_load.png", "sched_1_cdf.png", "sched_1_load.png"]
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000 for png in board.figures.values())
    ResultsStore(tmp_path / "r").append(recs)
    paths = build_leaderboard(tmp_path / "r", tmp_path / "b")
    md, page = paths["scheduling.md"].read_text(encoding="utf-8"), paths["scheduling.html"].read_text(encoding="utf-8")
    assert "## Schedulers: speculative-decoding serving (LAPS-SD)" in md
    assert "](sched_0_load.png)" in md and "<h2>Schedulers: speculative-decoding serving (LAPS-SD)</h2>" in page
    assert sorted(re.findall(r'<img [^>]*src="([^"]+)"', page)) == sorted(board.figures)
    assert all((tmp_path / "b" / name).read_bytes() == png for name, png in board.figures.items())
    headline = paths["markdown"].read_text(encoding="utf-8")
    assert "](headline_scheduling_load.png)" in headline and "[scheduling.md](scheduling.md)" in headline


@pytest.mark.parametrize("rates", [(1.0,), (0.5, 8.0)])
def test_cdf_is_drawn_at_the_highest_rate(rates):
    rng = np.random.default_rng(8)
    recs = [r for rate in rates for m in POLICIES for r in _cell(rng, "paper-like", m, _params(rate))[0]]
    board = schedulers_board(recs)
    assert "](sched_0_cdf.png)" in board.markdown
    assert f"Latency and TTFT CDFs at {max(rates):g} req/s" in board.html


def test_loads_label_the_tables_and_a_single_load_draws_no_vs_load_plot():
    """Records of `--loads` carry their fraction of capacity (extra.load): tables and axes show it, not the rate; a
    workload measured at one load gets no "vs load" plot (a single point), only its CDF."""
    rng = np.random.default_rng(9)
    recs = []
    for seed in (0, 1):
        for load, rate in ((0.5, 0.0883), (0.9, 0.159)):
            for m in ("fcfs", "laps_sd"):
                for r in _cell(rng, "draft-heavy", m, _params(rate, seed=seed))[0]:
                    r["extra"] = {**(r.get("extra") or {}), "load": load}
                    recs.append(r)
    recs += [r for m in ("fcfs", "laps_sd") for r in _cell(rng, "single", m, _params(0.3))[0]]
    board = schedulers_board(recs)
    tables = _sections(board.markdown)
    _, (table, *_) = _workload(tables, "draft-heavy")
    assert [r[0] for r in table[1:]] == ["0.5", "0.5", "0.9", "0.9"]
    assert "Loads 0.5, 0.9 of capacity = 0.0883, 0.159 requests/s." in board.markdown
    names = sorted(board.figures)
    [heavy] = [h for h in tables if h.startswith("draft-heavy")]
    [single] = [h for h in tables if h.startswith("single")]
    n_heavy = sorted(tables).index(heavy)  # figures are numbered in heading order
    assert f"sched_{n_heavy}_load.png" in names and f"sched_{1 - n_heavy}_load.png" not in names
    assert f"sched_{1 - n_heavy}_cdf.png" in names and single == "single (sim)"
    for png in board.figures.values():
        assert png_size(png)[0] <= PAGE_PX
