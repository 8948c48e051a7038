"""The dLLM flow end to end on the CPU: train-dllm writes a checkpoint, `run --suite dllm` measures the committed
fixture (records, resume, --rerun), and the CLI / config errors of `run` and `bench --suite dllm`.

Thresholds on the fixture are far below what it measures (passkey@256 vanilla: 100% on 8 held-out prompts on CPU,
and in its own metrics on 32), so they catch a broken pipeline, not a retrained model's drift.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.dllm import tasks
from harness.dllm.bench import DLLMBenchConfig
from harness.dllm.run import DLLMAccuracyConfig, run_dllm
from harness.dllm.train import Recipe, train
from harness.store import ResultsStore
from reference.dllm import checkpoint

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "dllm" / "tiny_dllm.pt"
METRICS = {"accuracy", "cache_bytes_peak", "tokens_equal_vanilla", "forwards"}
ACCURACY = DLLMAccuracyConfig(checkpoint=str(FIXTURE), methods=("vanilla", "sparse_dllm", "fast_dllm_dual"),
                              keep_ratios=(1.0, 0.5), tasks=("passkey",), lengths=(256,), n=8)
CELLS = 4  # vanilla, sparse_dllm at keep 1.0 and 0.5, fast_dllm_dual
GEN_LEN = 16  # the fixture's recipe


pytestmark = pytest.mark.usefixtures("one_thread_module")


def label(r: dict) -> str:
    return r["method"] + (f"@{r['params']['keep_ratio']}" if "keep_ratio" in r["params"] else "")


# ------------------------------------------------------------------------------------------------ train-dllm
@pytest.fixture(scope="module")
def trained(one_thread_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-dllm") / "tiny.pt"
    rc = main(["train-dllm", "--size", "cpu", "--device", "cpu", "--max-steps", "3", "--eval-lengths", "64",
               "--eval-n", "1", "--out", str(out)])
    return rc, out


def test_train_dllm_cli_writes_a_checkpoint_with_recipe_and_metrics(trained):
    rc, out = trained
    assert rc == 0 and out.is_file()
    model, meta = checkpoint.load(out)
    recipe, metrics = meta["recipe"], meta["metrics"]
    assert recipe["size"] == "cpu" and recipe["max_steps"] == 3 and model.cfg.d_model == recipe["d_model"] == 64
    assert model.cfg.vocab_size == tasks.VOCAB_SIZE and model.cfg.mask_id == tasks.MASK
    assert recipe["train"]["steps"] == 3 and recipe["train"]["device"] == "cpu"
    assert all(math.isfinite(h["loss"]) and h["loss"] > 0 for h in recipe["train"]["history"])
    assert set(metrics["vanilla_accuracy"]) == {f"{t}@64" for t in tasks.TASKS}
    assert all(v in (0.0, 100.0) for v in metrics["vanilla_accuracy"].values())  # one example per cell
    assert metrics["eval_n"] == 1 and metrics["block_len"] == recipe["gen_len"] // 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_lowers_the_loss(seed):
    """101 steps of a one-layer model on 64-token contexts: the loss (logged every 50 steps) falls well below its
    first value (over seeds 0-29 every later value is < 0.9x the first and the lower one < 0.73x)."""
    r = Recipe(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, curriculum=((0.0, (64,)),),
               tokens_per_batch=1024, warmup=5, minutes=1e6, max_steps=101, seed=seed)
    # minutes=1e6: the schedule's progress is max(elapsed / budget, step / max_steps); with no reachable budget
    # it is the step count alone, so the run does not depend on how fast this machine is.
    _, log = train(r, log=lambda line: None)
    losses = [h["loss"] for h in log["history"]]
    assert log["steps"] == 101 and [h["step"] for h in log["history"]] == [0, 50, 100]
    assert all(math.isfinite(v) for v in losses)
    first, later = losses[0], losses[1:]
    assert all(v < first for v in later) and min(later) < 0.85 * first, losses


def test_cli_runs_every_method_on_the_trained_checkpoint(trained, tmp_path, capsys):
    from harness.dllm.methods import labels

    _, out = trained
    rc = main(["run", "--suite", "dllm", "--checkpoint", str(out), "--lengths", "64", "--n", "2",
               "--results", str(tmp_path), "--no-leaderboard", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    records = ResultsStore(tmp_path).records("dllm")
    cells = {(r["task"], label(r)) for r in records}
    labels = {("sparse_dllm@0.5" if m == "sparse_dllm" else m) for m in labels()}
    assert cells == {(t, m) for t in tasks.TASKS for m in labels}
    for cell in cells:
        assert {r["metric"] for r in records if (r["task"], label(r)) == cell} == METRICS, cell
    assert f"ran {len(cells)} cells, skipped 0" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- the committed fixture
@pytest.fixture(scope="module")
def fixture_run(one_thread_module, tmp_path_factory):
    config = replace(ACCURACY, results=str(tmp_path_factory.mktemp("dllm-results")))
    return config, run_dllm(config, progress=False)


def test_fixture_run_writes_every_metric_of_every_cell(fixture_run):
    config, summary = fixture_run
    assert summary["ran"] == CELLS and summary["skipped"] == 0
    records = ResultsStore(config.results).records("dllm")
    by = {}
    for r in records:
        assert r["task"] == "passkey" and r["params"]["length"] == 256 and r["params"]["n"] == 8
        assert r["model"].startswith("tiny-dllm@") and r["protocol"]["gen_len"] == GEN_LEN
        by.setdefault(label(r), {})[r["metric"]] = r
    assert set(by) == {"vanilla", "sparse_dllm@1.0", "sparse_dllm@0.5", "fast_dllm_dual"}
    vanilla_tokens = by["vanilla"]["accuracy"]["extra"]["tokens"]
    for name, m in by.items():
        assert set(m) == METRICS, name
        acc = m["accuracy"]
        correct, toks = acc["extra"]["correct"], acc["extra"]["tokens"]
        assert len(correct) == 8 and all(len(t) == GEN_LEN for t in toks)
        assert acc["value"] == pytest.approx(100.0 * sum(correct) / 8)
        lo, hi = acc["extra"]["ci95"]
        assert 0 <= lo <= acc["value"] <= hi <= 100, name
        exs = tasks.held_out("passkey", 256, 8)
        assert correct == [tasks.is_correct(e, t) for e, t in zip(exs, toks)]  # same held-out prompts
        same = sum(a == b for ra, rb in zip(toks, vanilla_tokens) for a, b in zip(ra, rb))
        assert m["tokens_equal_vanilla"]["value"] == pytest.approx(100.0 * same / (8 * GEN_LEN)), name
    assert by["vanilla"]["tokens_equal_vanilla"]["value"] == 100.0
    assert by["vanilla"]["accuracy"]["value"] >= 75.0
    assert by["vanilla"]["cache_bytes_peak"]["value"] == 0  # vanilla keeps nothing between steps
    half, full = by["sparse_dllm@0.5"]["cache_bytes_peak"]["value"], by["sparse_dllm@1.0"]["cache_bytes_peak"]["value"]
    assert 0 < half < full


def test_rerunning_skips_every_cell(fixture_run):
    config, _ = fixture_run
    store = Path(config.results) / "dllm.jsonl"
    before = store.read_bytes()
    again = run_dllm(config, progress=False)
    assert again["ran"] == 0 and again["skipped"] == CELLS
    assert store.read_bytes() == before


def test_cli_rerun_measures_again(fixture_run, capsys):
    config, _ = fixture_run
    store = ResultsStore(config.results)
    old = [r for r in store.records("dllm") if r["method"] == "vanilla" and r["metric"] == "accuracy"]
    rc = main(["run", "--suite", "dllm", "--checkpoint", str(FIXTURE), "--methods", "vanilla", "--tasks", "passkey",
               "--lengths", "256", "--n", "8", "--results", config.results, "--rerun", "--no-leaderboard",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "ran 1 cells, skipped 0" in capsys.readouterr().out
    new = [r for r in store.records("dllm") if r["method"] == "vanilla" and r["metric"] == "accuracy"]
    assert len(new) == len(old) + 1 and new[-1]["cell"] == old[0]["cell"]
    assert new[-1]["extra"]["tokens"] == old[0]["extra"]["tokens"]  # greedy decoding: the same tokens again


# ----------------------------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "dllm", "--checkpoint", str(FIXTURE), "--tasks", "nope"], "nope"),
    (["run", "--suite", "dllm", "--checkpoint", str(FIXTURE), "--methods", "nope"], "nope"),
    (["run", "--suite", "dllm", "--checkpoint", str(FIXTURE), "--keep-ratios", "1.5"], "--keep-ratios"),
    (["bench", "--suite", "dllm", "--lengths", "0"], "--lengths"),  # config errors come before the CUDA check
    (["bench", "--suite", "dllm", "--methods", "nope"], "nope"),
    (["bench", "--suite", "dllm", "--dllm-layers", "fused,nope"], "--dllm-layers"),
])
def test_cli_errors_exit_2_with_a_message(argv, message, tmp_path, capsys):
    assert main([*argv, "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert message in err and "CUDA" not in err, err
    assert not (tmp_path / "results").exists()


def test_run_dllm_names_a_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert main(["run", "--suite", "dllm", "--checkpoint", str(missing), "--results", str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_bench_dllm_needs_a_cuda_gpu(tmp_path, capsys):
    assert main(["bench", "--suite", "dllm", "--results", str(tmp_path)]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------- DLLMBenchConfig.validate
def test_bench_config_defaults_are_valid():
    DLLMBenchConfig().validate()


@pytest.mark.parametrize("fields, message", [
    ({"model": "nope"}, "--model"),
    ({"gen_len": 100, "block_len": 32}, "multiple of block_len"),
    ({"gen_len": 256, "block_len": 32, "steps": 100}, "number of blocks"),
    ({"block_len": 0}, "positive"),
    ({"methods": ("nope",)}, "unknown dLLM method"),
    ({"lengths": (1024, 0)}, "--lengths"),
])
def test_bench_config_rejects(fields, message):
    with pytest.raises(ValueError, match=message):
        DLLMBenchConfig(**fields).validate()
