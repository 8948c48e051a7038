"""A method variant against its default on the same cells: per-length score with a 95% interval, and a paired
sign test on the cells where the two disagree.

A variant is a method parameter away from its default (`fourier` with `period="smooth"`, say). Its records pair
with the default's when every other parameter (length, depth, trial, seed, question-awareness, ...) is equal, so
both answered the same prompt. Exact-match metrics (NIAH) get a Wilson interval on the fraction right; graded
ones (RULER) a percentile-bootstrap interval on the mean. Over the paired cells "a+ / b-" counts where the variant
scored higher / lower, and the exact two-sided sign test on those discordant cells says whether the difference is
more than chance.

    python -m harness compare --results results --suite niah --method fourier --variant period=smooth
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from harness.stats import bootstrap_ci, sign_test, wilson
from harness.store import ResultsStore


@dataclass(frozen=True)
class Row:
    """One group (a length, or "all") of paired cells."""

    group: str
    n: int
    base: float
    variant: float
    base_ci: tuple[float, float]
    variant_ci: tuple[float, float]
    wins: int
    losses: int

    @property
    def p_value(self) -> float:
        return sign_test(self.wins, self.losses)


def _identity(record: dict, variant_keys: set[str]) -> str:
    """The record's task and parameters without the variant's keys: equal for the default's and the variant's."""
    p = dict(record["params"])
    p["method_params"] = {k: v for k, v in (p.get("method_params") or {}).items() if k not in variant_keys}
    return json.dumps([record.get("task"), p], sort_keys=True)


def parse_variant(text: str) -> dict[str, str]:
    """"key=value[,key=value]" -> {key: value}; a clear error for anything else."""
    out = {}
    for part in filter(None, (s.strip() for s in str(text).split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"variant must be key=value[,key=value], got {text!r}")
        out[key] = value
    if not out:
        raise ValueError(f"variant must name at least one key=value, got {text!r}")
    return out


def compare(records: list[dict], suite: str, method: str, variant: dict[str, str], metric: str | None = None,
            group_by: str = "length") -> list[Row]:
    """Rows per `group_by` value and one "all" row, over the cells both the default and the variant measured.

    A record is the default's when none of the variant's keys is in its method parameters (the harness records a
    parameter only away from its default), the variant's when all of them hold the variant's values."""
    keys = set(variant)
    mine = [r for r in records if r.get("suite") == suite and r.get("method") == method]
    if metric is None:
        metric = "exact_match" if any(r["metric"] == "exact_match" for r in mine) else "score"
    base, var = {}, {}
    for r in mine:
        if r["metric"] != metric:
            continue
        mp = r["params"].get("method_params") or {}
        if not keys & set(mp):
            base[_identity(r, keys)] = r
        elif all(str(mp.get(k)) == v for k, v in variant.items()):
            var[_identity(r, keys)] = r
    pairs = [(base[k], var[k]) for k in sorted(set(base) & set(var))]
    if not pairs:
        raise ValueError(f"no cell of suite {suite!r} has both the default {method!r} and the variant {variant} "
                         f"(metric {metric!r})")
    groups: dict[str, list] = {}
    for b, v in pairs:
        groups.setdefault(str(b["params"].get(group_by)), []).append((b["value"], v["value"]))
    ordered = sorted(groups, key=lambda g: (len(g), g)) + ["all"]
    groups["all"] = [x for g in list(groups.values()) for x in g]
    exact = metric == "exact_match"
    rows = []
    for g in ordered:
        xs = groups[g]
        b_vals, v_vals = [b for b, _ in xs], [v for _, v in xs]
        ci = (lambda vals: wilson(sum(vals), len(vals))) if exact else bootstrap_ci
        rows.append(Row(g, len(xs), sum(b_vals) / len(xs), sum(v_vals) / len(xs), ci(b_vals), ci(v_vals),
                        sum(v > b for b, v in xs), sum(v < b for b, v in xs)))
    return rows


def markdown(rows: list[Row], variant: dict[str, str], group_by: str = "length") -> str:
    """The rows as a Markdown table: score [95% CI] of each, the discordant cells and the sign test."""
    name = ", ".join(f"{k}={v}" for k, v in variant.items())
    lines = [f"| {group_by} | cells | default | {name} | variant + / - | sign test p |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.group} | {r.n} | {100 * r.base:.0f}% [{100 * r.base_ci[0]:.0f}, {100 * r.base_ci[1]:.0f}] | "
                     f"{100 * r.variant:.0f}% [{100 * r.variant_ci[0]:.0f}, {100 * r.variant_ci[1]:.0f}] | "
                     f"{r.wins}+ / {r.losses}- | {r.p_value:.2g} |")
    return "\n".join(lines)


def add_parser(sub):
    """`python -m harness compare`: the variant's table, from the records of a results store."""
    p = sub.add_parser("compare", help="a method variant against its default on the same cells (95%% CIs, sign test)")
    p.add_argument("--results", default="results", help="results store directory (default: results)")
    p.add_argument("--suite", required=True, help="the suite whose records to pair, e.g. niah or ruler")
    p.add_argument("--method", required=True, help="the method, e.g. fourier")
    p.add_argument("--variant", required=True, type=parse_variant, help="key=value[,key=value], e.g. period=smooth")
    p.add_argument("--metric", default=None, help="default: exact_match where recorded, else score")
    p.add_argument("--group-by", default="length", help="the parameter of a row (default: length)")
    return p


def cmd_compare(args) -> int:
    rows = compare(ResultsStore(args.results).records(args.suite), args.suite, args.method, args.variant,
                   args.metric, args.group_by)
    print(markdown(rows, args.variant, args.group_by))
    return 0
