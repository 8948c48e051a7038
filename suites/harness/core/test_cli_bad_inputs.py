"""Bad input to every `python -m harness` command exits with code 2 and one `error:` line naming the option, with no
traceback, before a model is loaded or anything runs (nothing is written under --results either).

Each row: argv (with {file}, {dir}, {missing}, {binary} replaced by paths in tmp_path) and the text the error line
must hold: the option (`--max-new-tokens`; the configs' validate() write "max_new_tokens (--max-new-tokens) must
..."). Errors come either from argparse (SystemExit(2), `... error: argument --x: ...`) or from main()'s handler
(return 2, one `error: ...` line).
"""
from __future__ import annotations

import pytest

from harness.cli import main

NIAH = [
    (["--compression-ratio", "nan"], "--compression-ratio"),
    (["--compression-ratio", "inf"], "--compression-ratio"),
    (["--compression-ratio", "-0.5"], "--compression-ratio"),
    (["--compression-ratio", "1"], "--compression-ratio"),
    (["--compression-ratio", "half"], "--compression-ratio"),
    (["--lengths", ""], "--lengths"),
    (["--lengths", ","], "--lengths"),
    (["--lengths", "0"], "--lengths"),
    (["--lengths", "1"], "--lengths"),
    (["--lengths", "-64"], "--lengths"),
    (["--lengths", "1024.5"], "--lengths"),
    (["--lengths", "nan"], "--lengths"),
    (["--depths", ""], "--depths"),
    (["--depths", "nan"], "--depths"),
    (["--depths", "0,inf"], "--depths"),
    (["--depths", "-0.1"], "--depths"),
    (["--depths", "1.5"], "--depths"),
    (["--trials", "0"], "--trials"),
    (["--trials", "-1"], "--trials"),
    (["--trials", "nan"], "--trials"),
    (["--trials", "1.5"], "--trials"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--max-new-tokens", "-3"], "--max-new-tokens"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "one"], "--seed"),
    (["--methods", ""], "--methods"),
    (["--methods", "full,nope"], "--methods"),
    (["--param", "snapkv.window=nan", "--methods", "snapkv"], "--param"),
    (["--param", "snapkv.window=Infinity", "--methods", "snapkv"], "--param"),
    (["--param", "window=16"], "--param"),
    (["--param", ".window=16"], "--param"),
    (["--param", "snapkv.window=3", "--methods", "full"], "--param"),
    (["--impl", "nope"], "--impl"),
    (["--impl", "no_such_module_xyz:fn"], "--impl"),
    (["--impl", ""], "--impl"),
    (["--model", ""], "--model"),
    (["--model", "{missing}/model"], "--model"),
    (["--model", "{missing}.gguf"], "--model"),
    (["--model", "{dir}"], "--model"),  # a directory without config.json
    (["--model", "{file}"], "--model"),  # a file that is not .gguf
    (["--haystack", "{missing}.txt"], "--haystack"),
    (["--haystack", "{dir}"], "--haystack"),
    (["--haystack", "{binary}"], "--haystack"),
    (["--haystack", ""], "--haystack"),
    (["--results", "{file}"], "--results"),
    (["--results", ""], "--results"),
    (["--out", "{file}"], "--out"),
    (["--suite", "nope"], "--suite"),
    (["--device", "tpu"], "--device"),
    (["--device", "cuda:7"], "--device"),
    (["--no-such-option"], "--no-such-option"),
    (["--lenghts", "1024"], "did you mean --lengths?"),  # the subcommand's usage and the closest option
    (["--methods", "snapkv", "--param", "snapkv.windw=16"], "'windw' (did you mean 'window'?); its parameters: ["),
    (["--lengths", "100000"], "exceed the model's 8192 positions"),  # read from the config, before loading
]
TASKS = [
    (["--suite", "ruler", "--methods", "full", "--lengths", "100000"], "--lengths"),
    (["--suite", "ruler", "--lengths", "0"], "--lengths"),
    (["--suite", "ruler", "--lengths", "1"], "--lengths"),
    (["--suite", "ruler", "--lengths", "255"], "--lengths"),
    (["--suite", "ruler", "--tasks", "nope"], "--tasks"),
    (["--suite", "ruler", "--tasks", ""], "--tasks"),
    (["--suite", "ruler", "--trials", "0"], "--trials"),
    (["--suite", "ruler", "--seed", "-2"], "--seed"),
    (["--suite", "ruler", "--impl", "nope"], "--impl"),
    (["--suite", "ruler", "--model", "{missing}/model"], "--model"),
    (["--suite", "longbench", "--data-dir", "{missing}"], "--data-dir"),
    (["--suite", "longbench", "--data-dir", "{file}"], "--data-dir"),
    (["--suite", "longbench", "--limit", "0"], "--limit"),
    (["--suite", "longbench", "--limit", "-1"], "--limit"),
    (["--suite", "longbench", "--limit", "nan"], "--limit"),
    (["--suite", "longbench", "--max-length", "0"], "--max-length"),
    (["--suite", "longbench", "--max-length", "1"], "--max-length"),
    (["--suite", "longbench", "--tasks", "nope"], "--tasks"),
    (["--suite", "longbench", "--longbench-e", "--tasks", "narrativeqa"], "--tasks"),
    (["--suite", "longbench", "--compression-ratio", "1.5"], "--compression-ratio"),
]
SCHEDULING = [
    (["--suite", "scheduling", "--policies", "nope"], "--policies"),
    (["--suite", "scheduling", "--policies", ""], "--policies"),
    (["--suite", "scheduling", "--workloads", "nope"], "--workloads"),
    (["--suite", "scheduling", "--workloads", ""], "--workloads"),
    (["--suite", "scheduling", "--loads", "0"], "--loads"),
    (["--suite", "scheduling", "--loads", "-0.5"], "--loads"),
    (["--suite", "scheduling", "--loads", "nan"], "--loads"),
    (["--suite", "scheduling", "--loads", "inf"], "--loads"),
    (["--suite", "scheduling", "--loads", ""], "--loads"),
    (["--suite", "scheduling", "--rates", "0"], "--rates"),
    (["--suite", "scheduling", "--rates", "-1"], "--rates"),
    (["--suite", "scheduling", "--rates", "inf"], "--rates"),
    (["--suite", "scheduling", "--rates", "nan"], "--rates"),
    (["--suite", "scheduling", "--n-requests", "0"], "--n-requests"),
    (["--suite", "scheduling", "--n-requests", "-2"], "--n-requests"),
    (["--suite", "scheduling", "--n-requests", "1e3"], "--n-requests"),
    (["--suite", "scheduling", "--seed", "-1"], "--seed"),
    (["--suite", "scheduling", "--mode", "nope"], "--mode"),
    (["--suite", "scheduling", "--mode", "real", "--n-requests", "0"], "--n-requests"),
    (["--suite", "scheduling", "--mode", "real", "--rates", "0"], "--rates"),
    (["--suite", "scheduling", "--mode", "real", "--policies", "nope"], "--policies"),
    (["--suite", "scheduling", "--mode", "real", "--seed", "-1"], "--seed"),
]
DLLM = [
    (["--suite", "dllm", "--device", "tpu"], "--device"),
    (["--suite", "dllm", "--device", "cuda:7"], "--device"),
    (["--suite", "dllm", "--device", ""], "--device"),
    (["--suite", "dllm", "--lengths", "0"], "--lengths"),
    (["--suite", "dllm", "--lengths", "1"], "--lengths"),
    (["--suite", "dllm", "--lengths", ""], "--lengths"),
    (["--suite", "dllm", "--n", "0"], "--n"),
    (["--suite", "dllm", "--n", "-4"], "--n"),
    (["--suite", "dllm", "--keep-ratios", "nan"], "--keep-ratios"),
    (["--suite", "dllm", "--keep-ratios", "1.5"], "--keep-ratios"),
    (["--suite", "dllm", "--keep-ratios", "-0.1"], "--keep-ratios"),
    (["--suite", "dllm", "--keep-ratios", ""], "--keep-ratios"),
    (["--suite", "dllm", "--methods", "nope"], "--methods"),
    (["--suite", "dllm", "--tasks", "nope"], "--tasks"),
    (["--suite", "dllm", "--impl", "nope"], "--impl"),
    (["--suite", "dllm", "--checkpoint", "{missing}.pt"], "--checkpoint"),
    (["--suite", "dllm", "--checkpoint", "{dir}"], "--checkpoint"),
    (["--suite", "dllm", "--checkpoint", ""], "--checkpoint"),
]
OTHERS = [
    (["leaderboard", "--results", "{missing}"], "--results"),
    (["leaderboard", "--results", "{file}"], "--results"),
    (["leaderboard", "--results", "{dir}", "--out", "{file}"], "--out"),
    (["methods", "--bogus"], "--bogus"),
    (["ops", "extra"], "extra"),
    (["nope"], "nope"),
    (["conform", "--op", "nope", "--impl", "a.b:c"], "--op"),
    (["conform", "--op", "attention"], "--impl"),
    (["conform", "--op", "", "--impl", "a.b:c"], "--op"),
    (["conform", "--op", "attention", "--impl", "nocolon"], "--impl"),
    (["conform", "--op", "attention", "--impl", "no_such_module_xyz:fn"], "impl 'no_such_module_xyz:fn'"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--max-examples", "0"], "--max-examples"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--max-examples", "nan"], "--max-examples"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--dtypes", ""], "--dtypes"),
    (["conform", "--op", "attention", "--impl", "reference.ops.attention:attention", "--dtypes", "float8"],
     "--dtypes"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--device", "tpu"], "--device"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--device", "cuda:7"], "--device"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--profile", "huge"], "--profile"),
    (["conform", "--op", "attention", "--impl", "a.b:c", "--results", "{file}"], "--results"),
    (["bench", "--contexts", ""], "--contexts"),
    (["bench", "--contexts", "0"], "--contexts"),
    (["bench", "--contexts", "nan"], "--contexts"),
    (["bench", "--batches", "0"], "--batches"),
    (["bench", "--batches", "-1"], "--batches"),
    (["bench", "--num-freqs", "0"], "--num-freqs"),
    (["bench", "--warmup-ms", "0"], "--warmup-ms"),
    (["bench", "--rep-ms", "-5"], "--rep-ms"),
    (["bench", "--seed", "-1"], "--seed"),
    (["bench", "--dtype", "float64"], "--dtype"),
    (["bench", "--shapes", "nope"], "--shapes"),
    (["bench", "--shapes", ""], "--shapes"),
    (["bench", "--impls", "nope"], "--impls"),
    (["bench", "--results", "{file}"], "--results"),
    (["bench", "--suite", "dllm", "--lengths", "0"], "--lengths"),
    (["bench", "--suite", "dllm", "--lengths", ""], "--lengths"),
    (["bench", "--suite", "dllm", "--keep-ratio", "nan"], "--keep-ratio"),
    (["bench", "--suite", "dllm", "--keep-ratio", "1.5"], "--keep-ratio"),
    (["bench", "--suite", "dllm", "--vanilla-blocks", "0"], "--vanilla-blocks"),
    (["bench", "--suite", "dllm", "--methods", "nope"], "nope"),  # DLLMBenchConfig.validate: "unknown dLLM method"
    (["bench", "--suite", "dllm", "--dllm-impls", "nope"], "--dllm-impls"),
    (["train-dllm", "--minutes", "0"], "--minutes"),
    (["train-dllm", "--minutes", "nan"], "--minutes"),
    (["train-dllm", "--minutes", "-1"], "--minutes"),
    (["train-dllm", "--minutes", "inf"], "--minutes"),
    (["train-dllm", "--max-steps", "0"], "--max-steps"),
    (["train-dllm", "--eval-lengths", ""], "--eval-lengths"),
    (["train-dllm", "--eval-lengths", "0"], "--eval-lengths"),
    (["train-dllm", "--eval-lengths", "1"], "--eval-lengths"),
    (["train-dllm", "--eval-lengths", "64,x"], "--eval-lengths"),
    (["train-dllm", "--eval-n", "0"], "--eval-n"),
    (["train-dllm", "--device", "tpu"], "--device"),
    (["train-dllm", "--device", "cuda:7"], "--device"),
    (["train-dllm", "--size", "huge"], "--size"),
    (["train-dllm", "--seed", "-1"], "--seed"),
    (["train-dllm", "--out", "{dir}"], "--out"),
    (["train-dllm", "--out", "{file}"], "--out"),  # exists, no --force: refused before training
    (["calibrate-sd", "--device", "tpu", "--out", "{missing}/s.json"], "--device"),
    (["calibrate-sd", "--device", "cuda:7", "--out", "{missing}/s.json"], "--device"),
    (["calibrate-sd", "--device", "cpu", "--draft-layers", "4", "--out", "{missing}/s.json"], "--draft-layers"),
    (["calibrate-sd", "--device", "cpu", "--draft-layers", "0", "--out", "{missing}/s.json"], "--draft-layers"),
    (["calibrate-sd", "--device", "cpu", "--batches", "0", "--out", "{missing}/s.json"], "--batches"),
    (["calibrate-sd", "--device", "cpu", "--shape", "huge", "--out", "{missing}/s.json"], "--shape"),
    (["calibrate-sd", "--device", "cpu", "--out", "{dir}"], "--out"),
    (["calibrate-sd", "--device", "cpu"], "--out"),
]
CASES = [(["run", *a], o) for a, o in NIAH + TASKS + SCHEDULING + DLLM] + OTHERS


class Ran(BaseException):
    """Raised by the patched loaders: not an Exception, so main()'s handler cannot swallow it."""


@pytest.fixture
def nothing_may_run(monkeypatch):
    """Loading a model or checkpoint, simulating, serving or training fails the test."""
    import transformers

    from harness.dllm import train as train_dllm
    from harness.scheduling import calibrate_sd
    from reference.dllm import checkpoint
    from reference.scheduling import simulator

    def ran(what):
        def fail(*args, **kwargs):
            raise Ran(f"{what} ran before the bad input was rejected")
        return fail

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", ran("model loading"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", ran("tokenizer loading"))
    monkeypatch.setattr(checkpoint, "load", ran("checkpoint.load"))
    monkeypatch.setattr(simulator, "simulate", ran("the simulator"))
    monkeypatch.setattr(train_dllm, "train", ran("training"))
    monkeypatch.setattr(calibrate_sd, "gpu_step_times", ran("the calibration"))
    try:
        import harness.scheduling.run as rs

        monkeypatch.setattr(rs, "simulate", ran("the simulator"))
    except (ImportError, AttributeError):
        pass


def _paths(argv, tmp_path):
    (tmp_path / "a_file.txt").write_text("not a directory\n")
    (tmp_path / "a_dir").mkdir(exist_ok=True)
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    subs = {"{file}": str(tmp_path / "a_file.txt"), "{dir}": str(tmp_path / "a_dir"),
            "{missing}": str(tmp_path / "missing"), "{binary}": str(tmp_path / "binary.bin")}
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    return out


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, option", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_exits_2_with_one_line_naming_the_option(argv, option, tmp_path, capsys, nothing_may_run):
    argv = _paths(argv, tmp_path)
    results = tmp_path / "results"
    if argv[0] in ("run", "bench", "conform") and "--results" not in argv:
        argv = [*argv, "--results", str(results)]
    if argv[0] == "run":
        argv = [*argv, "--no-progress", "--out", str(tmp_path / "board")]
    code, err = _run(argv, capsys)
    assert code == 2, f"{argv}: exit code {code}\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    assert "error:" in last, f"{argv}: no error line in {err!r}"
    if not last.split("error:")[0].strip():  # main()'s own handler: only the one line, nothing before it
        assert len(lines) == 1, err
    assert option in last, f"{argv}: the message does not name {option}: {last}"
    assert not results.exists() and not (tmp_path / "board").exists(), "a failed command wrote results"
    assert not (tmp_path / "missing").exists(), "a failed command wrote its output"


def test_corrupt_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    code, err = _run(["run", "--suite", "dllm", "--checkpoint", str(bad), "--lengths", "64", "--n", "1",
                      "--results", str(tmp_path / "results"), "--no-progress", "--no-leaderboard"], capsys)
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "not a readable dLLM checkpoint" in lines[0], err


def test_multi_line_messages_are_joined_into_one(monkeypatch, capsys):
    """main() prints any handled error on one line, even one whose text spans several."""
    import harness.cli as cli

    def boom(args):
        raise FileNotFoundError("first line\n    second line")

    monkeypatch.setitem(cli.COMMANDS, "methods", (cli.add_methods_parser, boom))
    code, err = _run(["methods"], capsys)
    assert code == 2 and err == "error: first line second line\n"
