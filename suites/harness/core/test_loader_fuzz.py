"""Hypothesis fuzzing of every loader of user-provided files.

Row files (LongBench JSONL, acceptance traces, results store, haystack text, length distributions): a file mixing
drawn valid rows with drawn garbage (suites/strategies.py) loads to exactly the valid rows, in order; each bad line
is reported by a warning naming `file:line` (blank lines are skipped silently) and nothing but the documented
errors is raised. Whole files (dLLM checkpoints, Hugging Face checkpoint directories, transformers models): junk,
truncations and single-field corruptions raise the documented ValueError / FileNotFoundError naming the path.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.kv import longbench, niah
from harness.store import ResultsStore
from reference.dllm import checkpoint
from reference.dllm.config import DLLMConfig
from reference.dllm.model import DLLM
from reference.jsonl import MalformedRowWarning
from reference.scheduling.trace import Trace, load_traces
from reference.scheduling.workload import length_distributions
from suites.strategies import (
    jsonl_files,
    length_distribution_files,
    longbench_bad_rows,
    longbench_rows,
    row_texts,
    store_bad_records,
    store_records,
    trace_bad_rows,
    trace_rows,
)

# Each example writes into a fresh directory of its own; tmp_path_factory is function-safe under hypothesis.
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def _write(path: Path, lines) -> None:
    path.write_bytes(b"\n".join(line for _, line, _ in lines) + (b"\n" if lines else b""))


def _load(fn, *args, **kwargs):
    """(result or the exception raised, messages of the warnings it gave)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            result = exc
    return result, [str(w.message) for w in caught]


def _reported_lines(messages, path: Path) -> list[int]:
    return sorted(int(m) for msg in messages for m in re.findall(rf"^{re.escape(str(path))}:(\d+): ", msg))


def _check_rows(result, messages, path: Path, lines, expected, stop_line: int | None = None):
    """The loader returned `expected` and reported exactly the bad lines (those before `stop_line`, if given)."""
    bad = [i + 1 for i, (kind, _, _) in enumerate(lines) if kind == "bad" and (stop_line is None or i + 1 < stop_line)]
    if not expected:
        assert isinstance(result, ValueError) and str(path) in str(result), result
    else:
        assert not isinstance(result, Exception), result
        assert result == expected
    assert _reported_lines(messages, path) == bad, messages
    summaries = [m for m in messages if m.startswith(f"{path}: skipped")]
    assert len(summaries) == (1 if bad else 0), messages
    if bad:
        assert f"skipped {len(bad)} malformed" in summaries[0]


# ------------------------------------------------------------------------------------------------------ LongBench
@FUZZ
@given(lines=jsonl_files(longbench_rows(), longbench_bad_rows(), ("length",)),
       limit=st.none() | st.integers(1, 4))
def test_longbench_loader_keeps_valid_rows_and_reports_bad_ones(tmp_path_factory, lines, limit):
    root = tmp_path_factory.mktemp("lb")
    path = root / "hotpotqa.jsonl"
    _write(path, lines)
    ok = [(i + 1, row) for i, (kind, _, row) in enumerate(lines) if kind == "ok"]
    result, messages = _load(longbench.load_rows, "hotpotqa", data_dir=root, limit=limit)
    kept = ok if limit is None else ok[:limit]
    stop = kept[-1][0] if limit is not None and len(ok) >= limit else None
    _check_rows(result, messages, path, lines, [row for _, row in kept], stop)


def test_longbench_whole_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        longbench.load_rows("hotpotqa", data_dir=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="hotpotqa.jsonl"):
        longbench.load_rows("hotpotqa", data_dir=tmp_path)
    (tmp_path / "hotpotqa.jsonl").write_bytes(b"")
    with pytest.raises(ValueError, match="holds no valid row .it is empty"):
        longbench.load_rows("hotpotqa", data_dir=tmp_path)
    (tmp_path / "hotpotqa.jsonl").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="holds no valid row"), pytest.warns(MalformedRowWarning):
        longbench.load_rows("hotpotqa", data_dir=tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hotpotqa.jsonl").mkdir()
    with pytest.raises(FileNotFoundError, match="hotpotqa.jsonl"):
        longbench.load_rows("hotpotqa", data_dir=tmp_path / "sub")


# --------------------------------------------------------------------------------------------- acceptance traces
def _trace(row: dict) -> Trace:
    return Trace(row["id"], row.get("source", ""), row["prompt_len"], row["output_len"], row["draft_len"],
                 tuple(row["accepted"]), tuple(float(x) for x in row.get("draft_ms", ())),
                 tuple(float(x) for x in row.get("verify_ms", ())))


@FUZZ
@given(lines=jsonl_files(trace_rows(), trace_bad_rows(), ("prompt_len", "output_len", "draft_len")))
def test_trace_loader_keeps_valid_traces_and_reports_bad_ones(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("traces") / "t.jsonl"
    _write(path, lines)
    result, messages = _load(load_traces, path)
    _check_rows(result, messages, path, lines, [_trace(row) for kind, _, row in lines if kind == "ok"])


def test_trace_whole_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_traces(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_traces(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no valid trace .it is empty"):
        load_traces(tmp_path / "empty.jsonl")


# ------------------------------------------------------------------------------------------- length distributions
@FUZZ
@given(drawn=length_distribution_files())
def test_length_distributions_keep_valid_entries_and_report_bad_ones(tmp_path_factory, drawn):
    data, good, bad = drawn
    path = tmp_path_factory.mktemp("lengths") / "lengths.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result, messages = _load(length_distributions, path)
    if not good:
        assert isinstance(result, ValueError) and str(path) in str(result)
    else:
        assert list(result) == good and all(result[k] == data[k] for k in good)
    assert sorted(re.findall(r"distribution '(d\d+)'", "\n".join(messages))) == sorted(bad)


@FUZZ
@given(data=st.binary(max_size=64) | row_texts().map(str.encode)
       | st.sampled_from([b"NaN", b"[1, 2]", b'{"a": Infinity}', b'{"a": 1e999}', b"[" * 100_000]))
def test_length_distributions_garbage_file_is_a_value_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("lengths") / "lengths.json"
    path.write_bytes(data)
    result, _ = _load(length_distributions, path)
    assert isinstance(result, ValueError) and str(path) in str(result)


# ---------------------------------------------------------------------------------------------------- haystack
@FUZZ
@given(lines=st.lists(st.tuples(st.booleans(), row_texts(max_size=40), st.binary(max_size=8)), max_size=8))
def test_haystack_keeps_utf8_lines_and_reports_the_others(tmp_path_factory, lines):
    raw = []
    for is_text, text, junk in lines:  # 0xff is never UTF-8; no NUL (that makes the whole file binary)
        line = text.replace("\n", " ").replace("\0", " ").encode() if is_text else b"\xff" + junk
        raw.append(line.replace(b"\n", b" ").replace(b"\0", b" "))
    path = tmp_path_factory.mktemp("haystack") / "h.txt"
    path.write_bytes(b"\n".join(raw))
    result, messages = _load(niah.load_haystack, str(path))
    good = "\n".join(line.decode() for (is_text, _, _), line in zip(lines, raw) if is_text)
    try:
        expected = niah.split_sentences(good)
    except ValueError:
        expected = None
    if expected is None:
        assert isinstance(result, ValueError) and "--haystack" in str(result)
    else:
        assert result == expected
    bad = [i + 1 for i, (is_text, _, _) in enumerate(lines) if not is_text]
    assert _reported_lines(messages, path) == bad


def test_haystack_whole_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--haystack"):
        niah.load_haystack(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="directory"):
        niah.load_haystack(str(tmp_path))
    (tmp_path / "bin").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="not a text file"):
        niah.load_haystack(str(tmp_path / "bin"))


# ---------------------------------------------------------------------------------------------- results store
@FUZZ
@given(lines=jsonl_files(store_records(), store_bad_records(), ("value",)))
def test_store_keeps_valid_records_and_reports_bad_ones(tmp_path_factory, lines):
    root = tmp_path_factory.mktemp("store")
    _write(root / "fuzz.jsonl", lines)
    result, messages = _load(ResultsStore(root).records, "fuzz")
    expected = [row for kind, _, row in lines if kind == "ok"]
    assert not isinstance(result, Exception), result
    assert result == json.loads(json.dumps(expected))  # JSON round trip: tuples become lists, ints stay ints
    bad = [i + 1 for i, (kind, _, _) in enumerate(lines) if kind == "bad"]
    assert _reported_lines(messages, root / "fuzz.jsonl") == bad


_RECORD = {"suite": "fuzz", "task": "t", "method": "m", "impl": "i", "model": "x", "params": {}, "metric": "acc",
           "value": 1.0, "unit": "", "cell": "c", "device": "cpu", "versions": {}, "git_sha": "", "seed": 0, "time": ""}


def test_store_skips_a_line_that_is_not_utf8(tmp_path):
    good = json.dumps(_RECORD)
    (tmp_path / "fuzz.jsonl").write_bytes(good.encode() + b"\n\xff\xfe\n")
    with pytest.warns(UserWarning, match=":2:"), pytest.warns(UserWarning, match="skipped 1 malformed record of 2"):
        assert len(ResultsStore(tmp_path).records("fuzz")) == 1


def test_store_skips_a_line_nested_too_deeply(tmp_path):
    good = json.dumps(_RECORD)
    (tmp_path / "fuzz.jsonl").write_bytes(good.encode() + b"\n" + b"[" * 100_000 + b"\n")
    with pytest.warns(UserWarning, match=":2:"), pytest.warns(UserWarning, match="skipped 1 malformed record of 2"):
        assert len(ResultsStore(tmp_path).records("fuzz")) == 1


# ---------------------------------------------------------------------------------------- our dLLM checkpoints
TINY = DLLMConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=24, mask_id=31, eos_id=1,
                  max_len=64)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    checkpoint.save(DLLM(TINY), path, recipe={"steps": 1}, metrics={"acc": 0.5})
    return path, torch.load(path, weights_only=True)


_CONFIG_BREAKS = st.sampled_from([("d_model", "16"), ("d_model", 16.0), ("d_model", -16), ("d_model", 2**40),
                                  ("n_layers", 10**9), ("n_layers", 0), ("n_heads", 3), ("rope_theta", float("nan")),
                                  ("rope_theta", float("inf")), ("rope_theta", -1.0), ("qkv_bias", "yes"),
                                  ("mask_id", 99), ("vocab_size", None), ("bogus_field", 1)])


@FUZZ
@given(data=st.data())
def test_checkpoint_corruptions_are_value_errors(tiny_checkpoint, tmp_path_factory, data):
    path, obj = tiny_checkpoint
    raw = path.read_bytes()
    out = tmp_path_factory.mktemp("bad") / "bad.pt"
    kind = data.draw(st.sampled_from(["truncate", "flip", "junk", "config", "weights", "top"]))
    may_load = False
    if kind == "truncate":
        out.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "flip":  # a flip inside a weight's bytes may leave a loadable (finite) checkpoint
        at = data.draw(st.integers(0, len(raw) - 1))
        out.write_bytes(raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:])
        may_load = True
    elif kind == "junk":
        out.write_bytes(data.draw(st.binary(max_size=256)))
    else:
        bad = {**obj, "config": dict(obj["config"]), "state_dict": dict(obj["state_dict"])}
        if kind == "config":
            field, value = data.draw(_CONFIG_BREAKS)
            bad["config"][field] = value
        elif kind == "weights":
            name = data.draw(st.sampled_from(sorted(bad["state_dict"])))
            w = bad["state_dict"][name]
            bad["state_dict"][name] = data.draw(st.sampled_from([
                None, w[:-1], w.float().fill_(float("nan")), w.float().fill_(float("inf")), w.to(torch.int32),
                w.unsqueeze(0), "weights"]))
            if data.draw(st.booleans()):
                del bad["state_dict"][name]
        else:
            bad = data.draw(st.sampled_from([{**bad, "format": "longctx-dllm/0"}, {**bad, "state_dict": [1, 2]},
                                             {**bad, "config": "tiny"}, [1, 2, 3], {"format": checkpoint.FORMAT}]))
        torch.save(bad, out)
    try:
        model, _ = checkpoint.load(out)
    except ValueError as exc:
        assert str(out) in str(exc)
    else:
        assert may_load and isinstance(model, DLLM)


def test_checkpoint_whole_file_errors(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    model, meta = checkpoint.load(path)
    assert model.cfg == TINY and meta["recipe"] == {"steps": 1}
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint.load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="directory"):
        checkpoint.load(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        checkpoint.load(tmp_path / "empty.pt")


# ----------------------------------------------------------------------------- Hugging Face checkpoint directories
def _llada(cfg: DLLMConfig) -> tuple[dict, dict[str, torch.Tensor]]:
    config = {"model_type": "llada", "d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
              "n_kv_heads": cfg.n_kv_heads, "mlp_hidden_size": cfg.ffn_dim, "vocab_size": cfg.vocab_size,
              "rope_theta": cfg.rope_theta, "mask_token_id": cfg.mask_id, "eos_token_id": cfg.eos_id,
              "weight_tying": False}
    names = {ours: theirs for theirs, ours in checkpoint.llada_names(cfg).items()}
    torch.manual_seed(0)
    return config, {names[n]: p.detach().clone() for n, p in DLLM(cfg).named_parameters()}


@FUZZ
@given(data=st.data())
def test_pretrained_directory_corruptions_are_documented_errors(tmp_path_factory, data):
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("hf")
    config, weights = _llada(TINY)
    kind = data.draw(st.sampled_from(["config_bytes", "config_field", "shard_bytes", "index", "weight", "none"]))
    config_text = json.dumps(config).encode()
    if kind == "config_bytes":
        config_text = data.draw(st.binary(max_size=64) | st.sampled_from([b"[]", b"NaN", b'{"model_type": "llada"'])
                                | st.just(config_text[:-1]))
    elif kind == "config_field":
        field = data.draw(st.sampled_from(["d_model", "n_layers", "n_heads", "vocab_size", "rope_theta",
                                           "mask_token_id", "mlp_hidden_size"]))
        value = data.draw(st.sampled_from(["x", None, -4, 0, 2**40, [16], 1.5]))
        assume(not (field == "mlp_hidden_size" and value in (None, 0)))  # falsy: the 4 x d_model default applies
        config[field] = value
        config_text = json.dumps(config).encode()
    elif kind == "weight":
        name = data.draw(st.sampled_from(sorted(weights)))
        weights[name] = data.draw(st.sampled_from([weights[name][..., :-1].contiguous(),
                                                   torch.full_like(weights[name], float("nan")),
                                                   torch.full_like(weights[name], float("inf"))]))
    (root / "config.json").write_bytes(config_text)
    if kind == "shard_bytes":
        (root / "model.safetensors").write_bytes(data.draw(st.binary(max_size=128)))
    else:
        save_file(weights, str(root / "model.safetensors"))
    if kind == "index":
        index = data.draw(st.sampled_from([b"{", b"[]", b'{"weight_map": {"a": "../../etc/passwd"}}',
                                           b'{"weight_map": {"a": "nothere.safetensors"}}', b'{"weight_map": 3}']))
        (root / "model.safetensors.index.json").write_bytes(index)
    try:
        model = checkpoint.load_pretrained(root, dtype=torch.float32)
    except (ValueError, FileNotFoundError) as exc:
        assert kind not in ("none",), exc
        assert str(root) in str(exc)
    else:  # some field values are fine after all (mask_token_id 0, rope_theta 1.5, [16] read as its first id)
        assert kind in ("none", "config_field"), kind
        assert isinstance(model, DLLM) and all(type(getattr(model.cfg, f)) is int for f in ("d_model", "n_layers"))


# ------------------------------------------------------------------------------------------ transformers models
@settings(max_examples=min(5, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["gguf", "config", "missing", "not_a_model"]), junk=st.binary(max_size=64))
def test_load_model_bad_paths_are_documented_errors(tmp_path_factory, kind, junk):
    from harness.lm.model import load_model

    root = tmp_path_factory.mktemp("model")
    if kind == "gguf":
        name = root / "m.gguf"
        name.write_bytes(junk)
    elif kind == "config":
        name = root / "dir"
        name.mkdir()
        (name / "config.json").write_bytes(junk)
    elif kind == "missing":
        name = root / "nothing" / "here"
    else:
        name = root / "weights.bin"
        name.write_bytes(junk)
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(str(name))):
        load_model(str(name))
