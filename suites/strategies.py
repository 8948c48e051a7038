"""Shared hypothesis strategies for the method suites: random prefills, ratios, seeds (never zeros)."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from reference.kv.base import METHODS, PrefillLayer


def seeds():
    return st.integers(0, 2**31 - 1)


def compression_ratios(max_ratio: float = 0.9):
    return st.floats(0.0, max_ratio, allow_nan=False)


@st.composite
def prefill_layers(draw, min_len: int = 8, max_len: int = 160, max_protected: int = 0, num_layers: int | None = None,
                   min_protected: int = 0):
    """A PrefillLayer of random normal float32 q/k/v: B 1..2, Hkv 1..3, group 1..3, D in {8, 16, 32}.

    Length in [min_len, max_len] (at least protected + 2, so the context has 2+ tokens); protected (question) tokens
    in [min_protected, max_protected]; num_layers drawn in 1..8 unless given, layer_idx below it.
    """
    b, hkv, group = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d = draw(st.sampled_from([8, 16, 32]))
    protected = draw(st.integers(min_protected, max(min_protected, max_protected)))
    n = draw(st.integers(max(min_len, protected + 2), max(max_len, protected + 2)))
    layers = num_layers or draw(st.integers(1, 8))
    g = torch.Generator().manual_seed(draw(seeds()))
    return PrefillLayer(
        layer_idx=draw(st.integers(0, layers - 1)),
        num_layers=layers,
        queries=torch.randn(b, hkv * group, n, d, generator=g),
        keys=torch.randn(b, hkv, n, d, generator=g),
        values=torch.randn(b, hkv, n, d, generator=g),
        protected=protected,
        max_new_tokens=draw(st.integers(0, 8)),
    )


# Every registered method whose state is a TokenCache (plugins' included), so the token-method property tests
# check a new method with no edit here.
TOKEN_METHODS = tuple(name for name, cls in METHODS.items.items() if cls.token_eviction)


# ---------------------------------------------------------------- scheduling: traces, cost models, servers
@st.composite
def acceptance_traces(draw, n: int | None = None):
    """Traces (reference.scheduling.trace.Trace) of random per-step acceptance whose rate drifts then settles:
    draft_len 1..6, output 1..200 tokens, prompt 1..300 tokens."""
    from reference.scheduling.trace import Trace, emitted

    g = draw(st.integers(1, 6))
    count = n or draw(st.integers(1, 6))
    out = []
    for i in range(count):
        length = draw(st.integers(1, 200))
        early, late = draw(st.integers(0, g)), draw(st.integers(0, g))
        jitter = draw(st.lists(st.integers(-1, 1), min_size=1, max_size=8))
        acc, k = [], 0
        while sum(a + 1 for a in acc) < length:
            base = early if len(acc) < 5 else late
            acc.append(min(max(base + jitter[k % len(jitter)], 0), g))
            k += 1
        acc = acc[:len(emitted(acc, length))]
        out.append(Trace(f"t{i}", "hypothesis", draw(st.integers(1, 300)), length, g, tuple(acc)))
    return out


@st.composite
def cost_models(draw, draft_len: int):
    """SpecCostModel with positive random coefficients (never zero), seconds."""
    from reference.scheduling.cost_model import SpecCostModel

    pos = st.floats(1e-4, 5e-2)
    per_tok = st.floats(1e-8, 1e-5)
    return SpecCostModel(draft_len, (draw(pos), draw(pos), draw(per_tok)), (draw(pos), draw(pos), draw(per_tok)),
                         (draw(pos), draw(per_tok)))


@st.composite
def server_configs(draw):
    from reference.scheduling.simulator import ServerConfig

    capacity = draw(st.one_of(st.none(), st.integers(700, 4000)))
    return ServerConfig(max_batch=draw(st.integers(1, 8)), token_budget=draw(st.integers(16, 2048)),
                        kv_capacity=capacity, preemption=draw(st.sampled_from(["recompute", "swap"])),
                        swap_s_per_token=draw(st.floats(0, 1e-4)))


@st.composite
def dllm_cases(draw, n_layers: int | None = None, loop: str = "llada"):
    """A random tiny dLLM (float64) with a prompt and a generation config: (model, prompt [B, P], GenConfig).

    d_model 32-64, heads 2-4 with GQA groups 1-2, 1-3 layers unless given; prompt 12-60 random tokens (never the
    mask), B 1-2; gen_len = blocks x block_len with 1-3 blocks of 4-8, 2-4 steps per block... at most one token
    per step when steps == block_len.
    """
    from reference.dllm.config import DLLMConfig
    from reference.dllm.generate import GenConfig
    from reference.dllm.model import DLLM

    kv_heads, group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    head_dim = draw(st.sampled_from([8, 16]))
    layers = n_layers or draw(st.integers(1, 3))
    vocab = 48
    cfg = DLLMConfig(vocab_size=vocab, d_model=kv_heads * group * head_dim, n_layers=layers,
                     n_heads=kv_heads * group, n_kv_heads=kv_heads, ffn_dim=64, mask_id=vocab - 1, eos_id=0,
                     rope_theta=draw(st.sampled_from([100.0, 10000.0])), shift_logits=loop == "dream")
    seed = draw(seeds())
    with torch.random.fork_rng(devices=[]):  # the weights from `seed`; later tests' global RNG untouched
        torch.manual_seed(seed)
        model = DLLM(cfg, dtype=torch.float64).eval()
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab - 1, (draw(st.integers(1, 2)), draw(st.integers(12, 60))), generator=g)
    block_len, blocks = draw(st.integers(4, 8)), draw(st.integers(1, 3))
    steps_per_block = draw(st.sampled_from([2, block_len // 2, block_len]))
    gen = GenConfig(gen_len=block_len * blocks, block_len=block_len, steps=steps_per_block * blocks, loop=loop)
    return model, prompt, gen


# ---------------------------------------------------------------- loaders: valid rows of user files, garbage lines
def row_texts(min_size: int = 0, max_size: int = 24):
    """Unicode text a JSON string carries and UTF-8 encodes (no lone surrogates): newlines, U+2028, CJK, emoji."""
    return st.text(st.characters(exclude_categories=("Cs",)), min_size=min_size, max_size=max_size)


def nonblank_texts(max_size: int = 24):
    """Text with at least one letter or digit somewhere in it."""
    return st.builds(lambda a, c, b: a + c + b, row_texts(max_size=max_size // 2),
                     st.characters(categories=("L", "N")), row_texts(max_size=max_size // 2))


@st.composite
def longbench_rows(draw):
    """A row of the official LongBench schema (harness.kv.longbench.SCHEMA) that the loader must keep."""
    answers = draw(st.lists(row_texts(), max_size=2))
    answers.insert(draw(st.integers(0, len(answers))), draw(nonblank_texts()))
    return {"input": draw(row_texts()), "context": draw(nonblank_texts(40)), "answers": answers,
            "length": draw(st.integers(0, 2**40)), "dataset": draw(row_texts(max_size=12)),
            "language": draw(st.sampled_from(["en", "zh", ""])),
            "all_classes": draw(st.none() | st.lists(row_texts(max_size=8), max_size=3)),
            "_id": draw(row_texts(min_size=1, max_size=12))}


@st.composite
def longbench_bad_rows(draw):
    """A LongBench row with exactly one thing wrong (missing field, wrong type, negative length, empty context,
    no non-empty answer, a lone surrogate): the loader must report and skip it."""
    row = draw(longbench_rows())
    wrong = {
        "input": [None, 3, ["q"], {"q": 1}, True, "\ud800"],
        "context": ["", "   \n\t", None, 7, ["c"], "ok \udfff"],
        "answers": [[], "answer", [1], [""], ["  "], None, [["a"]]],
        "length": [-1, "12", 1.5, True, None, [3]],
        "dataset": [None, 1, ["d"]],
        "language": [None, 0],
        "all_classes": ["a,b", [1], {"a": 1}],
        "_id": ["", 5, None],
    }
    field = draw(st.sampled_from(sorted(wrong)))
    if draw(st.booleans()):
        del row[field]
    else:
        row[field] = draw(st.sampled_from(wrong[field]))
    return row


@st.composite
def trace_rows(draw):
    """An acceptance-trace JSON object (reference/scheduling/__init__.py) that load_traces must keep: draft_len
    1..6, 1..16 steps, the last step cut anywhere, optional source and per-step times."""
    g = draw(st.integers(1, 6))
    acc = draw(st.lists(st.integers(0, g), min_size=1, max_size=16))
    before = sum(a + 1 for a in acc[:-1])
    row = {"id": draw(row_texts(min_size=1, max_size=12)), "prompt_len": draw(st.integers(0, 100_000)),
           "output_len": draw(st.integers(before + 1, before + acc[-1] + 1)), "draft_len": g, "accepted": acc}
    if draw(st.booleans()):
        row["source"] = draw(row_texts(max_size=8))
    times = st.lists(st.floats(0, 1e4, allow_nan=False) | st.integers(0, 10**4), min_size=len(acc), max_size=len(acc))
    for key in ("draft_ms", "verify_ms"):
        if draw(st.booleans()):
            row[key] = draw(times)
    return row


@st.composite
def trace_bad_rows(draw):
    """A trace object with exactly one thing wrong: the loader must report and skip it."""
    row = draw(trace_rows())
    g, steps = row["draft_len"], len(row["accepted"])
    wrong = {
        "id": ["", 5, None, ["a"]],
        "prompt_len": [-1, "5", 1.5, True, None, 2**31],
        "output_len": [0, -3, "7", row["output_len"] + g + 2, 2**40],
        "draft_len": [0, -1, "4", 1.0],
        "accepted": [[], [g + 1], [-1], "0", [True], None, [0.5]],
        "draft_ms": [[1.0] * (steps + 1), [-1.0] * steps, ["x"] * steps, [True] * steps, "fast", 3.0],
        "verify_ms": [[0.5] * (steps + 1), [-0.5] * steps, {"a": 1}],
        "source": [5, ["s"]],
    }
    field = draw(st.sampled_from(sorted(wrong)))
    if field in ("id", "prompt_len", "output_len", "draft_len", "accepted") and draw(st.booleans()):
        del row[field]
    else:
        row[field] = draw(st.sampled_from(wrong[field]))
    return row


@st.composite
def store_records(draw, suite: str = "fuzz"):
    """A results-store record (harness/store.py validate) of `suite`."""
    from harness.store import REQUIRED

    record = {k: draw(row_texts(max_size=8)) for k in REQUIRED}
    record.update(suite=suite, metric=draw(nonblank_texts(8)), cell=draw(nonblank_texts(8)),
                  value=draw(st.floats(-1e300, 1e300, allow_nan=False) | st.integers(-2**53, 2**53)),
                  params=draw(st.dictionaries(row_texts(max_size=4), st.integers() | row_texts(max_size=4), max_size=3)),
                  seed=draw(st.integers(0, 2**31)))
    return record


@st.composite
def store_bad_records(draw, suite: str = "fuzz"):
    """A record the store must skip: a field missing, a non-finite or non-numeric value, an empty or path-like
    suite / metric / cell."""
    from harness.store import REQUIRED

    record = draw(store_records(suite))
    kind = draw(st.sampled_from(["missing", "value", "suite", "metric", "cell"]))
    if kind == "missing":
        del record[draw(st.sampled_from(REQUIRED))]
    elif kind == "value":
        record["value"] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), "1.0", None, True, [1]]))
    else:
        record[kind] = draw(st.sampled_from(["", 3, None] + (["a/b", ".hidden"] if kind == "suite" else [])))
    return record


_SENTINEL = 0.123456789  # stands for a number in a dumped row, then replaced by text json.dumps cannot write


@st.composite
def garbage_lines(draw, rows, bad_rows, numeric_fields: tuple[str, ...] = ()):
    """One line (bytes, no newline) a JSONL loader must not return: a row of `bad_rows`, truncated JSON of a row
    of `rows`, NaN / Infinity / 1e999 / a 5000-digit integer in one of `numeric_fields`, JSON that is not an
    object, nesting too deep to parse, bytes that are not UTF-8, unicode junk, or a blank line (which a loader
    skips without reporting it: the caller tells blank from bad by `line.strip()`)."""
    import json

    kinds = ["bad_row", "truncated", "not_object", "deep", "bytes", "junk", "blank"] + (["number"] if numeric_fields else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "bad_row":
        # raw UTF-8 cannot hold a lone surrogate: "surrogatepass" writes bytes that are not UTF-8 (also bad)
        return json.dumps(draw(bad_rows), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "truncated":
        text = json.dumps(draw(rows)).encode()
        return text[:draw(st.integers(1, len(text) - 1))]
    if kind == "number":
        field = draw(st.sampled_from(numeric_fields))
        text = json.dumps({**draw(rows), field: _SENTINEL})
        bad = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000]))
        return text.replace(repr(_SENTINEL), bad).encode()
    if kind == "not_object":
        value = draw(st.none() | st.booleans() | st.integers() | row_texts() | st.lists(st.integers(), max_size=3))
        return json.dumps(value).encode()
    if kind == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    if kind == "bytes":  # 0xff is never UTF-8
        return b"\xff" + draw(st.binary(max_size=24)).replace(b"\n", b"")
    if kind == "junk":
        return draw(row_texts(min_size=1)).replace("\n", " ").encode()
    return draw(st.sampled_from([b"", b" ", b"\t", b"  \t ", b"\r"]))


@st.composite
def jsonl_files(draw, rows, bad_rows, numeric_fields: tuple[str, ...] = (), max_lines: int = 10):
    """Lines of a JSONL file mixing valid rows with garbage: [(kind, line bytes, row or None)], kind in
    {"ok", "bad", "blank"}. Valid rows are written in varied forms (ASCII or raw UTF-8, leading spaces, CRLF)."""
    import json

    out = []
    for _ in range(draw(st.integers(0, max_lines))):
        if draw(st.booleans()):
            row = draw(rows)
            line = json.dumps(row, ensure_ascii=draw(st.booleans())).encode()
            line = draw(st.sampled_from([b"", b" ", b"\t"])) + line + draw(st.sampled_from([b"", b" ", b"\r"]))
            out.append(("ok", line, row))
        else:
            line = draw(garbage_lines(rows, bad_rows, numeric_fields))
            out.append(("blank" if not line.strip() else "bad", line, None))
    return out


@st.composite
def length_distribution_files(draw):
    """output_lengths.json-style objects mixing valid distributions, malformed ones and "_" comments:
    (the object, names of the valid entries in order, names of the malformed ones)."""
    valid = st.fixed_dictionaries({
        "mean_output": st.floats(0.5, 1e4), "mean_input": st.floats(0.5, 1e4), "sigma": st.floats(0, 3),
        "max_len": st.integers(1, 100_000)}, optional={"source": row_texts(max_size=8)})
    out, good, bad = {}, [], []
    for i in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["ok", "bad", "comment"]))
        if kind == "comment":
            out[f"_c{i}"] = draw(row_texts(max_size=8))
            continue
        d = draw(valid)
        if kind == "bad":
            field = draw(st.sampled_from(["mean_output", "mean_input", "sigma", "max_len", "whole"]))
            if field == "whole":
                d = draw(st.sampled_from([None, 3, "sharegpt", [1.0]]))
            elif draw(st.booleans()):
                del d[field]
            else:
                d[field] = draw(st.sampled_from([-1, 0, "1", None, True] + ([2.5, 2**40] if field == "max_len" else [])
                                                + ([11.0] if field == "sigma" else [])))
                if field == "sigma" and d[field] == 0:
                    d[field] = -0.5  # sigma 0 is a valid (degenerate) distribution
        (good if kind == "ok" else bad).append(f"d{i}")
        out[f"d{i}"] = d
    return out, good, bad


@st.composite
def fourier_spans(draw):
    """(channels, num_freqs, length, period, seed) of a compressed span: odd and even periods, a period longer than
    the span, N below, at and above T / 2 (the Nyquist term and the frequencies the weights drop)."""
    period = draw(st.integers(1, 96))
    length = draw(st.integers(0, period))
    num_freqs = draw(st.integers(1, period // 2 + 3))
    return draw(st.integers(1, 6)), num_freqs, length, period, draw(seeds())
