"""The kernels boards: conformance reports of submitted kernels (suite "conformance", the newest run per op, impl,
profile and device) and decode latency per kernel x shape x batch x context (suite "kernels_bench": the
latency-vs-context plot with the copy-bandwidth roofline, one compact table of shape x batch x kernel rows and
context columns, the FlashFourierAttention targets).

The conformance table is built from CONFORMANCE_COLUMNS, one (header, cell function) per column: a new column is
one entry there (a table grown past the page is split into column groups by `add_table`).
"""
from __future__ import annotations

import html
import json
from collections import defaultdict

from harness.boards.page import Board, add_figure, add_heading, add_table, add_text, add_warning
from harness.kernels import fourier_targets
from harness.kernels.plot import kernel_label, latency_figure, roofline_ms


def _latest_by_run(records: list[dict]) -> list[list[dict]]:
    """Conformance records grouped by run (extra.run). Of each (op, impl, profile, device): the runs at the commit of
    its newest run, the newest per dtype set (a visit that checks one dtype per run shows each of them; an older
    commit's runs are never shown beside a newer one's)."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        run = (r.get("extra") or {}).get("run")
        if run:
            runs[run].append(r)
    by_key: dict[tuple, list[list[dict]]] = defaultdict(list)
    for recs in runs.values():
        r = recs[0]
        by_key[(r["task"], r["impl"], r["params"].get("profile"), r["device"])].append(recs)
    kept = []
    for group in by_key.values():
        group.sort(key=lambda recs: max(x["time"] for x in recs))
        sha = group[-1][0].get("git_sha")
        newest: dict[tuple, list[dict]] = {}
        for recs in group:
            if recs[0].get("git_sha") == sha:
                dtypes = next((tuple(x["params"]["dtypes"]) for x in recs if x["params"].get("dtypes")), ())
                newest[dtypes] = recs
        kept += newest.values()
    return kept


def _conformance_row(recs: list[dict]) -> dict | None:
    """One run's records -> the board's row, or None when the run has no overall verdict (not a full report)."""
    by = {(r["params"].get("property"), r["metric"]): r for r in recs}
    verdict = by.get(("all", "passed"))
    if verdict is None:
        return None
    failed = verdict.get("extra", {}).get("failed_properties", [])
    first = next((by[(p, "passed")] for p in failed if (p, "passed") in by), None)
    worst, allowed = by.get(("all", "worst_error")), by.get(("all", "allowed_error"))
    if first is not None and first["params"]["property"] == "tolerance":
        we, ae = first["extra"].get("worst_error"), first["extra"].get("allowed_error")
        err = f"{we:.3g} / {ae:.3g}" if isinstance(we, (int, float)) and isinstance(ae, (int, float)) else f"{we} / {ae}"
    elif first is None and worst is not None and allowed is not None:
        err = f"{worst['value']:.3g} / {allowed['value']:.3g}"
    else:
        err = "—"
    speedup, roof = by.get(("speed", "speedup")), by.get(("speed", "roofline_fraction"))
    p = verdict["params"]
    examples = by.get(("all", "examples"))
    return {
        "op": verdict["task"], "impl": verdict["impl"], "profile": p.get("profile", "?"), "device": verdict["device"],
        "dtypes": list(p.get("dtypes", [])), "examples": int(examples["value"]) if examples else 0,
        "passed": verdict["value"] == 1, "failed": ", ".join(failed) or "—", "error": err,
        "speedup": f"{speedup['value']:.2f}x" if speedup else "—", "roofline": f"{100 * roof['value']:.1f}" if roof else "—",
        "speed_value": speedup["value"] if speedup else float("-inf"),
        "failure": first, "protocol": json.dumps(verdict.get("protocol", {}), sort_keys=True), "time": verdict["time"],
        "commit": (verdict.get("git_sha") or "?")[:7],
    }


def mutation_runs(records: list[dict]) -> dict[tuple[str, str], dict]:
    """The newest `python -m harness mutate` run per (op, impl): {(op, name): {metric: value, ..., "record": the
    score record}}, under both names of the implementation (as given, and module:qualname)."""
    runs: dict[str, dict] = defaultdict(dict)
    for r in records:
        if r["suite"] == "mutation" and (r.get("extra") or {}).get("run"):
            runs[r["extra"]["run"]][r["metric"]] = r
    newest: dict[tuple[str, str], dict] = {}
    for metrics in runs.values():
        score = metrics.get("score")
        if score is None:
            continue
        row = {m: rec["value"] for m, rec in metrics.items()}
        row["record"] = score
        for name in {score["impl"], score["extra"].get("function") or score["impl"]}:
            key = (score["task"], name)
            if key not in newest or score["time"] >= newest[key]["record"]["time"]:
                newest[key] = row
    return newest


def strength(row: dict | None) -> str:
    """'96.7% (29/30)': detected / non-equivalent mutants, or '—' with no mutation run."""
    if row is None:
        return "—"
    detected = sum(int(row.get(m, 0)) for m in ("killed", "crashed", "timeout"))
    judged = int(row.get("mutants", 0)) - int(row.get("equivalent", 0))
    return f"{100 * row['score']:.1f}% ({detected}/{judged})"


def _strength_table(mutations: dict[tuple[str, str], dict]) -> tuple[list[str], list[list]]:
    headers = ["op", "impl", "profile", "mutants", "killed", "survived", "equivalent", "crashed", "timeout",
               "conformance strength"]
    seen, table = set(), []
    for (op, _), row in sorted(mutations.items()):
        rec = row["record"]
        if id(rec) in seen:
            continue
        seen.add(id(rec))
        table.append([op, rec["impl"], rec["params"].get("profile", "?"), *(int(row.get(m, 0)) for m in (
            "mutants", "killed", "survived", "equivalent", "crashed", "timeout")), strength(row)])
    return headers, table


DTYPE_SHORT = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}


def impl_text(impl: str) -> str:
    """A registered name as is; a `pkg.module:function` path with a space after the colon, where it may wrap."""
    return impl.replace(":", ": ", 1)


def _result(r: dict) -> str:
    return "PASS" if r["passed"] else f"FAIL: {r['failed']}"


# (header, row -> cell): one entry per column of the conformance table, in order.
CONFORMANCE_COLUMNS = [
    ("op", lambda r: r["op"]),
    ("impl", lambda r: impl_text(r["impl"])),
    ("profile", lambda r: r["profile"]),
    ("dtypes", lambda r: ", ".join(DTYPE_SHORT.get(d, d) for d in r["dtypes"])),
    ("examples", lambda r: r["examples"]),
    ("result", _result),
    ("worst error / allowed", lambda r: r["error"]),
    ("speedup vs ref.", lambda r: r["speedup"]),
    ("% of copy bw", lambda r: r["roofline"]),
    ("conformance strength", lambda r: r.get("strength", "—")),
    ("commit", lambda r: r["commit"]),
]


def conformance_rows(records: list[dict]) -> list[dict]:
    """The newest full report of each (op, impl, profile, device), as rows (`_conformance_row`)."""
    return [row for recs in _latest_by_run([r for r in records if r["suite"] == "conformance"])
            if (row := _conformance_row(recs)) is not None]


def kernels_conformance_board(records: list[dict]) -> Board | None:
    """Submitted kernels' conformance reports (suite "conformance"): the newest run per op, impl, profile, device,
    one table per device, each with its conformance strength (suite "mutation": the share of its non-equivalent
    mutants conformance rejects); the mutation runs in a table of their own."""
    runs = [(recs, row) for recs in _latest_by_run([r for r in records if r["suite"] == "conformance"])
            if (row := _conformance_row(recs)) is not None]
    mutations = mutation_runs(records)
    if not runs and not mutations:
        return None
    rows = [row for _, row in runs]
    for row in rows:
        row["strength"] = strength(mutations.get((row["op"], row["impl"])))
    board = Board("Kernels: conformance", records=[r for recs, _ in runs for r in recs]
                  + [row["record"] for row in {id(v["record"]): v for v in mutations.values()}.values()])
    intro = ("Each row is the newest `python -m harness conform` (or `pytest suites/conformance --impl`) run of a "
             "kernel: PASS when every drawn input met the conformance rule in every listed dtype (FAIL names the "
             "first failed property). Error column: the worst max|impl - oracle| against the allowed 2 x baseline "
             "error + atol + one unit of the output's largest element (runs before 2026-12-08: + atol alone; the "
             "failing case's when it failed on tolerance). Speed (GPU runs only): the reference's "
             "median time over the kernel's on one input of the op's gpu profile, and the kernel's bytes / time as a "
             "% of the device's copy bandwidth. Conformance strength: of the single-point mutants of the kernel's "
             "source that are not equivalent to it, the share conformance rejects (`python -m harness mutate`).")
    md, hp = [], []
    add_text(md, hp, intro)
    headers = [h for h, _ in CONFORMANCE_COLUMNS]
    protocols = sorted({r["protocol"] for r in rows})
    for device in sorted({r["device"] for r in rows}):
        add_heading(md, hp, f"On {device}")
        for proto in protocols:
            group = sorted((r for r in rows if r["protocol"] == proto and r["device"] == device),
                           key=lambda r: (r["op"], not r["passed"], -r["speed_value"], r["impl"]))
            if not group:
                continue
            if len(protocols) > 1:
                add_warning(md, hp, "Runs under different conformance protocols are listed apart. This table's "
                                    f"protocol: `{proto}`")
            add_table(md, hp, headers, [[cell(r) for _, cell in CONFORMANCE_COLUMNS] for r in group], key=2)
    failures = sorted((r for r in rows if r["failure"] is not None), key=lambda r: (r["op"], r["impl"]))
    if failures:
        md.append("Failing inputs (replay with `harness.kernels.conformance.check_case`):\n")
        hp.append("<p>Failing inputs (replay with <code>harness.kernels.conformance.check_case</code>):</p><ul>")
        for r in failures:
            x = r["failure"]["extra"]
            msg = (x.get("message") or "").splitlines()[0][:240] if x.get("message") else ""
            line = f"{r['impl']} [{r['failure']['params']['property']}] {x.get('failing_dtype')}: {msg}"
            md.append(f"- {line}\n  `{x.get('replay')}`")
            hp.append(f"<li>{html.escape(line)}<br><code>{html.escape(str(x.get('replay')))}</code></li>")
        md.append("")
        hp.append("</ul>")
    if mutations:
        add_heading(md, hp, "Conformance strength (mutation testing)")
        add_text(md, hp, "The newest `python -m harness mutate` run of each kernel: sampled single-point mutants of its "
                 "source, each checked by conformance; equivalent survivors (by the committed reasons file) are left "
                 "out of the score, crashes and timeouts count as rejections.")
        add_table(md, hp, *_strength_table(mutations))
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board


LATENCY_METRICS = ("latency_ms", "bytes_read", "bandwidth_gbs", "roofline_fraction", "status")


def bench_cells(records: list[dict]) -> list[dict]:
    """kernels_bench records merged per (cell, device), the newest attempt winning: {record, metrics, extra, used}."""
    cells: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: r["time"]):
        if r["suite"] != "kernels_bench" or r["task"] == "copy" or r["metric"] not in LATENCY_METRICS:
            continue
        c = cells.setdefault((r["cell"], r["device"]), {"record": r, "metrics": {}, "extra": {}, "used": {}})
        if (r["metric"] == "status") != ("status" in c["metrics"]):
            c["metrics"], c["extra"], c["used"] = {}, {}, {}  # a measurement after a failed attempt, or vice versa
        c["metrics"][r["metric"]] = r["value"]
        c["used"][r["metric"]] = r
        c["extra"].update(r.get("extra") or {})
        c["record"] = r
    return list(cells.values())


def context_text(context: int) -> str:
    """4096 -> "4k"; a context that is no multiple of 1024 as is."""
    return f"{context // 1024}k" if context % 1024 == 0 else str(context)


def latency_cell(c: dict) -> str:
    """A measured cell as "latency ms (% of the copy roofline)", flagged when its check failed or did not run."""
    m, x = c["metrics"], c["extra"]
    if "latency_ms" not in m:
        return "—"
    frac = m.get("roofline_fraction")
    if frac is None and (roof := roofline_ms(c)) is not None:
        frac = roof / m["latency_ms"]
    flag = "" if x.get("correct") else " WRONG" if x.get("checked") else " unchecked"
    return f"{m['latency_ms']:.4g}" + (f" ({100 * frac:.0f}%)" if frac is not None else "") + flag


def pivot(group: list[dict]) -> tuple[list[str], list[list], list[str]]:
    """One row per (shape, batch, kernel), one column per context: latency ms (% of the copy roofline); and a
    note per cell not measured (its status)."""
    contexts = sorted({c["record"]["params"]["context"] for c in group})
    by_row: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for c in group:
        r = c["record"]
        by_row[(r["model"], r["params"]["batch"], kernel_label(r))][r["params"]["context"]] = c
    rows, missing = [], defaultdict(list)
    for (shape, batch, kernel), by_ctx in sorted(by_row.items()):
        rows.append([shape, batch, kernel, *(latency_cell(by_ctx[n]) if n in by_ctx else "" for n in contexts)])
        for n, c in sorted(by_ctx.items()):
            if "latency_ms" not in c["metrics"]:
                status = str(c["extra"].get("status", "not measured"))[:160]
                missing[(kernel, status)].append(f"{shape} batch {batch} @{context_text(n)}")
    notes = [f"{kernel} ({'; '.join(where)}): {status}" for (kernel, status), where in missing.items()]
    return ["shape", "batch", "kernel", *(context_text(n) for n in contexts)], rows, notes


def _targets(md: list[str], hp: list[str], records: list[dict]) -> None:
    targets = fourier_targets.target_rows(records)
    if not targets:
        return
    add_heading(md, hp, "FlashFourierAttention targets")
    add_text(md, hp, "FlashFourierAttention in coefficient space (the spectral, token-major and low-rank kernels) vs "
                     "SDPA-flash on the full cache (LLaMA-3-8B decode shapes; of the runs that measured both at the "
                     "newest such run's commit, the median one by speedup, all of their speedups in the runs column; "
                     "phases from CUDA-graph timings of the first k phases).")
    for device, dtype in sorted({(t[0], t[1]) for t in targets}):  # device and dtype as the table's caption
        add_text(md, hp, f"{dtype} on {device}:")
        add_table(md, hp, fourier_targets.HEADERS[2:], [t[2:] for t in targets if (t[0], t[1]) == (device, dtype)])


def kernels_latency_board(records: list[dict]) -> Board | None:
    """Decode-attention latency per kernel x shape x batch x context from `python -m harness bench` records."""
    cells = bench_cells(records)
    if not cells:
        return None
    board = Board("Kernels: decode latency", records=[r for c in cells for r in c["used"].values()])
    md, hp = [], []
    add_text(md, hp, "One decode step (one query token per sequence) over a KV cache of `context` tokens: the median "
                     "latency against the copy-bandwidth roofline, the time the bytes the kernel must read take at the "
                     "device-to-device copy bandwidth measured in the same run (no memory-bound kernel can be "
                     "faster; the Fourier kernels read a smaller, compressed cache, with a roofline of their own).")
    _targets(md, hp, records)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["record"]["params"].get("dtype", "?"), c["record"]["device"])].append(c)
    for n, ((dtype, device), group) in enumerate(sorted(groups.items())):
        heading = f"{dtype} on {device}"
        add_heading(md, hp, heading)
        if any("latency_ms" in c["metrics"] for c in group):
            add_figure(board, md, hp, f"kernels_latency_{n}.png", latency_figure(group, f"Decode latency vs context: {heading}"),
                       f"Decode latency vs context (log-log) with the copy-bandwidth roofline, {heading}")
        headers, rows, notes = pivot(group)
        add_text(md, hp, "Latency in ms per context (in brackets: the roofline's time as % of the kernel's, i.e. the "
                         "fraction of the copy bandwidth its bytes moved at; WRONG: the kernel's output failed the "
                         "check against the float32 reference; empty: not in the grid).")
        add_table(md, hp, headers, rows, key=3)
        if notes:
            md.append("Not measured:\n")
            md += [f"- {x}" for x in notes] + [""]
            hp.append("<p>Not measured:</p><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in notes) + "</ul>")
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board
