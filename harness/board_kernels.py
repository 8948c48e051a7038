"""The kernels boards: conformance reports of submitted kernels (suite "conformance", the newest run per op, impl,
profile and device) and decode latency per kernel x shape x batch x context (suite "kernels_bench", with the
FlashFourierAttention targets table and latency-vs-context plots)."""
from __future__ import annotations

import html
import json
from collections import defaultdict

from tabulate import tabulate

from harness import fourier_targets
from harness.board_page import Board, add_table, add_text, fig_png, img_html, plt, table_html


def _latest_by_run(records: list[dict]) -> list[list[dict]]:
    """Conformance records grouped by run (extra.run); only the newest run of each (op, impl, profile, device)."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        run = (r.get("extra") or {}).get("run")
        if run:
            runs[run].append(r)
    newest: dict[tuple, list[dict]] = {}
    for recs in runs.values():
        r = recs[0]
        key = (r["task"], r["impl"], r["params"].get("profile"), r["device"])
        if key not in newest or max(x["time"] for x in recs) >= max(x["time"] for x in newest[key]):
            newest[key] = recs
    return list(newest.values())


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
        "dtypes": ", ".join(p.get("dtypes", [])), "examples": int(examples["value"]) if examples else 0,
        "passed": verdict["value"] == 1, "failed": ", ".join(failed) or "—", "error": err,
        "speedup": f"{speedup['value']:.2f}x" if speedup else "—", "roofline": f"{100 * roof['value']:.1f}" if roof else "—",
        "speed_value": speedup["value"] if speedup else float("-inf"),
        "failure": first, "protocol": json.dumps(verdict.get("protocol", {}), sort_keys=True), "time": verdict["time"],
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


def kernels_conformance_board(records: list[dict]) -> Board | None:
    """Submitted kernels' conformance reports (suite "conformance"): the newest run per op, impl, profile, device;
    each with its conformance strength (suite "mutation": the share of its non-equivalent mutants conformance
    rejects), and the mutation runs in a table of their own."""
    runs = [(recs, row) for recs in _latest_by_run([r for r in records if r["suite"] == "conformance"])
            if (row := _conformance_row(recs)) is not None]
    mutations = mutation_runs(records)
    if not runs and not mutations:
        return None
    rows = [row for _, row in runs]
    board = Board("Kernels: conformance", records=[r for recs, _ in runs for r in recs]
                  + [row["record"] for row in {id(v["record"]): v for v in mutations.values()}.values()])
    intro = ("Each row is the newest `python -m harness conform` (or `pytest suites/conformance --impl`) run of a "
             "kernel: PASS when every drawn input met the conformance rule in every listed dtype. Error column: the "
             "worst max|impl - oracle| against the allowed 2 x baseline error + atol (the failing case's when it "
             "failed on tolerance). Speed (GPU runs only): the reference's median time over the kernel's on one input "
             "of the op's gpu profile, and the kernel's bytes / time as a % of the device's copy bandwidth. "
             "Conformance strength: of the single-point mutants of the kernel's source that are not equivalent to it, "
             "the share conformance rejects (`python -m harness mutate`).")
    md, hp = [intro + "\n"], [f"<p>{html.escape(intro)}</p>"]
    headers = ["op", "impl", "profile", "device", "dtypes", "examples", "result", "failed property",
               "worst error / allowed", "speedup vs reference", "% of roofline", "conformance strength"]
    protocols = sorted({r["protocol"] for r in rows})
    for proto in protocols:
        group = sorted((r for r in rows if r["protocol"] == proto),
                       key=lambda r: (r["op"], not r["passed"], -r["speed_value"], r["impl"]))
        if len(protocols) > 1:
            warn = f"Runs under different conformance protocols are listed apart. This table's protocol: `{proto}`"
            md.append(f"> {warn}\n")
            hp.append(f'<p class="warn">{html.escape(warn)}</p>')
        table = [[r["op"], r["impl"], r["profile"], r["device"], r["dtypes"], r["examples"],
                  "PASS" if r["passed"] else "FAIL", r["failed"], r["error"], r["speedup"], r["roofline"],
                  strength(mutations.get((r["op"], r["impl"])))] for r in group]
        md.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True) + "\n")
        hp.append(table_html(headers, table))
    failures = sorted((r for r in rows if r["failure"] is not None), key=lambda r: (r["op"], r["impl"]))
    if failures:
        md.append("Failing inputs (replay with `harness.conformance.check_case`):\n")
        hp.append("<p>Failing inputs (replay with <code>harness.conformance.check_case</code>):</p><ul>")
        for r in failures:
            x = r["failure"]["extra"]
            msg = (x.get("message") or "").splitlines()[0][:240] if x.get("message") else ""
            line = f"{r['impl']} [{r['failure']['params']['property']}] {x.get('failing_dtype')}: {msg}"
            md.append(f"- {line}\n  `{x.get('replay')}`")
            hp.append(f"<li>{html.escape(line)}<br><code>{html.escape(str(x.get('replay')))}</code></li>")
        md.append("")
        hp.append("</ul>")
    if mutations:
        md.append("### Conformance strength (mutation testing)\n")
        hp.append("<h3>Conformance strength (mutation testing)</h3>")
        add_text(md, hp, "The newest `python -m harness mutate` run of each kernel: sampled single-point mutants of its "
                 "source, each checked by conformance; equivalent survivors (by the committed reasons file) are left "
                 "out of the score, crashes and timeouts count as rejections.")
        add_table(md, hp, *_strength_table(mutations))
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board


LATENCY_METRICS = ("latency_ms", "bytes_read", "bandwidth_gbs", "roofline_fraction", "status")


def _bench_cells(records: list[dict]) -> list[dict]:
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


def _kernel_label(r: dict) -> str:
    return f"{r['task']} / {r['impl']}"


def _latency_plot(cells: list[dict], title: str) -> bytes:
    """Latency vs context, log-log: one panel per (shape, batch), one line per kernel."""
    panels = sorted({(c["record"]["model"], c["record"]["params"]["batch"]) for c in cells})
    cols = min(3, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.4 * cols, 3.4 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    labels = sorted({_kernel_label(c["record"]) for c in cells})
    for ax, (shape, batch) in zip(axes.flat, panels):
        for label in labels:
            pts = sorted((c["record"]["params"]["context"], c["metrics"]["latency_ms"]) for c in cells
                         if c["record"]["model"] == shape and c["record"]["params"]["batch"] == batch
                         and _kernel_label(c["record"]) == label and "latency_ms" in c["metrics"])
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{shape}, batch {batch}", fontsize=10)
        ax.set_xlabel("context (tokens)", fontsize=8)
        ax.set_ylabel("latency (ms)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return fig_png(fig)


def kernels_latency_board(records: list[dict]) -> Board | None:
    """Decode-attention latency per kernel x shape x batch x context from `python -m harness bench` records."""
    cells = _bench_cells(records)
    if not cells:
        return None
    board = Board("Kernels: decode latency", records=[r for c in cells for r in c["used"].values()])
    intro = ("One decode step (one query token per sequence) over a KV cache of `context` tokens: median latency, "
             "the bandwidth its bytes read imply, and that bandwidth as a % of the device-to-device copy bandwidth "
             "measured in the same run (the roofline of a memory-bound kernel).")
    md, hp = [intro + "\n"], [f"<p>{html.escape(intro)}</p>"]
    targets = fourier_targets.target_rows(records)
    if targets:
        text = ("FlashFourierAttention in coefficient space vs SDPA-flash on the full cache (LLaMA-3-8B decode shapes, "
                "the newest run that measured both; `phase_ms` from CUDA-graph timings of the first k phases).")
        md.append("### FlashFourierAttention targets\n")
        hp.append("<h3>FlashFourierAttention targets</h3>")
        add_text(md, hp, text)
        add_table(md, hp, fourier_targets.HEADERS, targets)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["record"]["params"].get("dtype", "?"), c["record"]["device"])].append(c)
    headers = ["shape", "kernel", "batch", "context", "latency ms", "GB/s", "% of copy bandwidth", "check"]
    for n, ((dtype, device), group) in enumerate(sorted(groups.items())):
        heading = f"{dtype} on {device}"
        md.append(f"### {heading}\n")
        hp.append(f"<h3>{html.escape(heading)}</h3>")
        table = []
        for c in sorted(group, key=lambda c: (c["record"]["model"], _kernel_label(c["record"]),
                                              c["record"]["params"]["batch"], c["record"]["params"]["context"])):
            r, m, x = c["record"], c["metrics"], c["extra"]
            if "latency_ms" in m:
                gbs, frac = m.get("bandwidth_gbs"), m.get("roofline_fraction")
                if frac is None and gbs is not None and x.get("copy_bandwidth_gbs"):
                    frac = gbs / x["copy_bandwidth_gbs"]
                check = "ok" if x.get("correct") else ("WRONG RESULT" if x.get("checked") else "unchecked")
                vals = [f"{m['latency_ms']:.4f}", f"{gbs:.0f}" if gbs is not None else "—",
                        f"{100 * frac:.1f}" if frac is not None else "—", check]
            else:
                vals = ["—", "—", "—", str(x.get("status", "not measured"))[:80]]
            table.append([r["model"], _kernel_label(r), r["params"]["batch"], r["params"]["context"], *vals])
        md.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True) + "\n")
        hp.append(table_html(headers, table))
        if any("latency_ms" in c["metrics"] for c in group):
            name = f"kernels_latency_{n}.png"
            png = _latency_plot(group, f"decode latency — {heading}")
            board.figures[name] = png
            md.append(f"![decode latency vs context]({name})\n")
            hp.append(img_html(name, png, f"Decode latency vs context (log-log), {heading}"))
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board
