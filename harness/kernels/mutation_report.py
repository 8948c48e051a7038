"""The mutation report of an implementation: counts, the score, each survivor's diff and reason; store records.

Score = (killed + crashed + timeout) / (mutants - equivalent survivors). A survivor is equivalent only when the
reasons file says so: a JSON object {"<op>/<impl>": {"<mutant key>": {"verdict": "equivalent" | "gap",
"reason": "..."}}} (results/mutation_reasons.json for our kernels), written by whoever read the survivor's diff;
"gap" names the test or strategy that would catch it. A survivor with no entry counts against the score.

Records (suite "mutation", task = the op, method = impl = the implementation as given, model "-", params
{"profile", "max_mutants", "seed", "max_examples"}): metrics "score" (0..1, unit "fraction"), "mutants",
"killed", "survived", "crashed", "timeout", "equivalent" (counts); every record's extra holds "run" and "function" (module:qualname); the score's
extra also {"sites", "unrun", "operators", "survivors": [{key, operator, line, diff, verdict, reason}]}.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import Counter

from harness.kernels.mutate import OPERATORS
from harness.kernels.mutation_run import STATUSES, Campaign
from harness.provenance import device_info, git_sha, now_iso, versions
from harness.store import ResultsStore, make_record

SUITE = "mutation"
DEFAULT_REASONS = os.path.join("results", "mutation_reasons.json")


def load_reasons(path: str | None) -> dict:
    """The reasons file as a dict ({} when `path` is None or absent); ValueError naming the file when malformed."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"reasons file {path}: cannot read it as JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"reasons file {path}: expected {{'op/impl': {{mutant key: {{verdict, reason}}}}}}")
    for label, entries in data.items():
        for key, entry in entries.items():
            if not isinstance(entry, dict) or entry.get("verdict") not in ("equivalent", "gap") or not entry.get("reason"):
                raise ValueError(f"reasons file {path}: {label} / {key}: needs a verdict ('equivalent' or 'gap') "
                                 "and a reason")
    return data


def summarize(campaign: Campaign, reasons: dict) -> dict:
    """Counts per status, equivalent survivors, the score, and the survivors with their diffs and reasons."""
    counts = Counter(r.status for r in campaign.results)
    mine = reasons.get(f"{campaign.op}/{campaign.impl}", {})
    survivors = []
    for r in campaign.results:
        if r.status == "survived":
            entry = mine.get(r.mutant.key, {})
            survivors.append({"key": r.mutant.key, "operator": r.mutant.operator, "line": r.mutant.line,
                              "diff": r.mutant.diff(campaign.source, os.path.relpath(campaign.path)),
                              "verdict": entry.get("verdict", "unexplained"), "reason": entry.get("reason", "")})
    equivalent = sum(s["verdict"] == "equivalent" for s in survivors)
    judged = len(campaign.results) - equivalent
    detected = counts["killed"] + counts["crashed"] + counts["timeout"]
    return {"mutants": len(campaign.results), **{s: counts[s] for s in STATUSES}, "equivalent": equivalent,
            "score": detected / judged if judged else 1.0, "survivors": survivors,
            "operators": {op: n for op in OPERATORS if (n := sum(r.mutant.operator == op for r in campaign.results))}}


def format_report(campaign: Campaign, summary: dict) -> str:
    """The printed report: one line of counts and the score, then each survivor's reason and diff."""
    s = summary
    lines = [f"mutation {campaign.op} / {campaign.impl}: {s['mutants']} mutants (of {campaign.sites} on executed "
             f"lines; {campaign.unrun} on lines that never ran left out): killed {s['killed']}, survived "
             f"{s['survived']} ({s['equivalent']} equivalent), crashed {s['crashed']}, timeout {s['timeout']}; "
             f"score {100 * s['score']:.1f}% of non-equivalent mutants"]
    for sv in s["survivors"]:
        lines.append(f"\nsurvivor [{sv['verdict']}] {sv['key']}" + (f"\n  reason: {sv['reason']}" if sv["reason"] else ""))
        lines.append(sv["diff"].rstrip())
    return "\n".join(lines)


def to_records(campaign: Campaign, summary: dict, params: dict, device: str = "cpu") -> list[dict]:
    """The store records of one campaign (module docstring)."""
    prov = {"device": device_info(device), "versions": versions(), "git_sha": git_sha()}
    run = uuid.uuid4().hex[:12]
    out = []
    for metric in ("score", "mutants", *STATUSES, "equivalent"):
        extra = {"run": run, "function": campaign.function}
        if metric == "score":
            extra.update(sites=campaign.sites, unrun=campaign.unrun, operators=summary["operators"],
                         survivors=summary["survivors"], baseline_s=round(campaign.baseline_s, 2))
        out.append(make_record(SUITE, campaign.op, campaign.impl, campaign.impl, "-", dict(params), metric,
                               float(summary[metric]), "fraction" if metric == "score" else "count",
                               seed=int(params.get("seed", 0)), device=device, extra=extra, provenance=prov))
    return out


def store(records: list[dict], results: str) -> str:
    ResultsStore(results).append(records)
    return os.path.join(results, f"{SUITE}.jsonl")


def rescore(records: list[dict], reasons: dict) -> list[dict]:
    """New "score" and "equivalent" records for the newest run of each (op, impl) in `records`, with the survivors'
    verdicts taken from `reasons` (written after the run, by whoever read the diffs): the run's id is kept, so the
    board shows the newer values. Nothing is rerun; only runs whose verdicts change get records."""
    runs: dict[str, dict] = {}
    for r in records:
        if r["suite"] == SUITE and (r.get("extra") or {}).get("run"):
            runs.setdefault(r["extra"]["run"], {})[r["metric"]] = r
    newest: dict[tuple, dict] = {}
    for metrics in runs.values():
        score = metrics.get("score")
        if score is not None and ((score["task"], score["impl"]) not in newest
                                  or score["time"] >= newest[(score["task"], score["impl"])]["score"]["time"]):
            newest[(score["task"], score["impl"])] = metrics
    out = []
    for (op, impl), metrics in sorted(newest.items()):
        score = metrics["score"]
        mine = reasons.get(f"{op}/{impl}", {})
        survivors = []
        for s in score["extra"].get("survivors", []):
            entry = mine.get(s["key"], {})
            survivors.append({**s, "verdict": entry.get("verdict", "unexplained"), "reason": entry.get("reason", "")})
        if survivors == score["extra"].get("survivors", []):
            continue
        equivalent = sum(s["verdict"] == "equivalent" for s in survivors)
        count = {m: int(metrics[m]["value"]) if m in metrics else 0 for m in ("mutants", *STATUSES)}
        judged = count["mutants"] - equivalent
        detected = count["killed"] + count["crashed"] + count["timeout"]
        time = now_iso()
        out.append({**score, "value": detected / judged if judged else 1.0, "time": time,
                    "extra": {**score["extra"], "survivors": survivors}})
        if "equivalent" in metrics:
            out.append({**metrics["equivalent"], "value": float(equivalent), "time": time})
    return out
