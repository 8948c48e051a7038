"""The kernel benchmark driven by the registry (harness/kernels/impls.py): every implementation and baseline of an op
with a benchmark spec, by `--impls` name, with the hooks registered beside it.

fixtures/suites/kernel_cell_keys.json holds the cells the benchmark planned when its kernels were a hand-written table
(commit c747af0): [--impls name, cell key] in planning order for the configs below, on the devices named there. The
registry must plan exactly those, so a rerun skips what the committed store holds and records keep their keys.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from harness.cli import build_parser
from harness.kernels import bench as bk
from harness.kernels.impls import bench_impls
from reference import registry
from reference.bench_spec import ImplBench, Missing

GOLDEN = json.loads((Path(__file__).resolve().parents[3] / "fixtures" / "suites" / "kernel_cell_keys.json").read_text())
H100, H200 = "cuda: NVIDIA H100 80GB HBM3", "cuda: NVIDIA H200"
BUILT_IN = ("sdpa_flash", "triton_dense", "triton_fourier", "triton_fourier_spectral", "flashinfer")  # in the golden file
ADDED = ("triton_fourier_tiles", "triton_fourier_lowrank")  # registered since: their cells join the plan, the golden cells keep their keys
ALL = ("sdpa_flash", "triton_dense", "triton_fourier", "triton_fourier_spectral", "triton_fourier_tiles",
       "triton_fourier_lowrank", "flashinfer")
FLASH = {"llama3-8b": "FLASH_ATTENTION/enable_gqa", "smollm2": "FLASH_ATTENTION/enable_gqa"}


def _config(args: list[str]) -> bk.KernelBenchConfig:
    return bk.config_from_args(build_parser().parse_args(["bench", *args]))


CONFIGS = {  # name: (arguments, backends, device)
    "default": ([], FLASH, H100),
    "variant": (["--quick", "--dtype", "float16", "--period", "smooth", "--kept-align", "8", "--num-freqs", "256"],
                {"llama3-8b": "EFFICIENT_ATTENTION/packed_gqa"}, H200),
    "unresolved": (["--quick", "--impls", "flashinfer,sdpa_flash,triton_dense", "--period", "pow2"], None, H100),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_registry_plans_the_cells_of_the_hand_written_table(name):
    args, backends, device = CONFIGS[name]
    cells = bk.plan(_config(args), backends, device=device)
    assert [[c["impl"], c["cell"]] for c in cells if c["impl"] in BUILT_IN] == GOLDEN[name]
    added = [c for c in cells if c["impl"] not in BUILT_IN]
    assert {c["impl"] for c in added} <= set(ADDED)
    assert not {c["cell"] for c in added} & {k for _, k in GOLDEN[name]}
    # Nested backends ({impl: {shape: backend}}, as the sweep resolves them) give the same cells.
    nested = {"sdpa_flash": backends} if backends else None
    assert [c["cell"] for c in bk.plan(_config(args), nested, device=device)] == [c["cell"] for c in cells]


def test_golden_keys_cover_every_built_in_kernel():
    assert len(GOLDEN["default"]) == 2 * 19 * 5 and {n for n, _ in GOLDEN["default"]} == set(BUILT_IN)
    assert {n for n, _ in GOLDEN["variant"]} == set(BUILT_IN)


def test_the_names_users_type_keep_working_and_come_in_order():
    assert tuple(bench_impls()) == ALL == _config([]).impls == bk.KernelBenchConfig().impls
    entries = bench_impls()
    assert [(entries[n].task, entries[n].label, entries[n].method) for n in ALL] == [
        ("sdpa_flash", "torch-sdpa-flash", "full"), ("decode_attention", "triton", "full"),
        ("fourier_decode_attention", "triton", "fourier"), ("fourier_decode_attention", "triton_spectral", "fourier"),
        ("fourier_decode_attention", "triton_tiles", "fourier"), ("fourier_decode_attention", "triton_lowrank", "fourier"),
        ("flashinfer", "flashinfer", "full")]
    assert [entries[n].baseline for n in ALL] == [True, False, False, False, False, False, True]
    for name in ALL:
        assert _config(["--impls", name]).impls == (name,)
    # The float32 formulations of the Fourier op are registered implementations but are not timed (bench=False).
    assert {"torch", "coefficients", "tiles"} <= set(registry.implementations("fourier_decode_attention"))
    assert not {e.impl for e in entries.values() if e.op == "fourier_decode_attention"} & {"torch", "coefficients",
                                                                                          "tiles"}
    # Baselines are not implementations: the conformance suite, parametrized by implementations(op), skips them.
    assert not {"sdpa_flash", "flashinfer"} & set(registry.implementations("decode_attention"))


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    registry.load_ops()
    for table in ("IMPLS", "BENCH", "BASELINES"):
        monkeypatch.setattr(registry, table, {op: dict(v) for op, v in getattr(registry, table).items()})
    return registry


def test_a_kernel_registered_in_one_file_joins_the_grid(scratch_registry):
    @scratch_registry.register_impl("decode_attention", "mine")
    def mine(q, k, v, seq_lens, scale=None):
        return q

    @scratch_registry.register_impl("fourier_decode_attention", "untimed", bench=False)
    def untimed(**kw):
        return kw["q"]

    assert list(bench_impls())[-1] == "mine" and "untimed" not in bench_impls()
    config = bk.KernelBenchConfig(shapes=("smollm2",), contexts=(4096,), batches=(1,), max_context={})
    (cell,) = [c for c in bk.plan(config, FLASH, device=H100) if c["impl"] == "mine"]
    assert (cell["task"], cell["impl_label"], cell["method"]) == ("decode_attention", "mine", "full")
    assert "backend" not in cell["params"] and bk.fast_path(cell, lambda x: None) is None  # no hooks: eager timing


def test_two_kernels_with_one_bench_name_are_refused_with_both_named(scratch_registry):
    scratch_registry.register_impl("fourier_decode_attention", "triton_dense")(lambda **kw: kw["q"])
    with pytest.raises(ValueError, match=r"two benchmarked kernels are named 'triton_dense': decode_attention/triton "
                                         r"and fourier_decode_attention/triton_dense"):
        bench_impls()


def test_registration_errors_name_the_argument(scratch_registry):
    with pytest.raises(TypeError, match=r"register_impl\('decode_attention', 'x'\): bench must be an ImplBench"):
        scratch_registry.register_impl("decode_attention", "x", bench="yes")
    with pytest.raises(TypeError, match="with a prepare hook"):
        scratch_registry.register_baseline("decode_attention", "y", ImplBench())
    with pytest.raises(ValueError, match="'triton' is already an implementation of op 'decode_attention'"):
        scratch_registry.register_baseline("decode_attention", "triton", ImplBench(prepare=lambda x, b: None))
    with pytest.raises(ValueError, match="'sdpa_flash' is already a baseline"):
        scratch_registry.register_impl("decode_attention", "sdpa_flash")(lambda **kw: None)


# ---------------------------------------------------------------- the op specs' inputs and byte models
class _Cfg:
    seed = 0


def test_dense_inputs_and_bytes_match_the_benchmarks_model():
    spec = registry.get_op("decode_attention").bench
    x = spec.inputs(bk.SHAPES["smollm2"], 2, 40, torch.float32, "cpu", _Cfg())
    assert x["q"].shape == (2, 9, 1, 64) and x["k"].shape == x["v"].shape == (2, 3, 40, 64)
    assert x["seq_lens"].tolist() == [40, 40] and x["seq_lens"].dtype == torch.long
    assert spec.bytes_read(x) == bk.dense_bytes_read(2, 9, 3, 64, 40, "float32")
    again = spec.inputs(bk.SHAPES["smollm2"], 2, 40, torch.float32, "cpu", _Cfg())
    assert torch.equal(x["k"], again["k"]) and not torch.equal(x["k"], x["v"])  # seeded, distinct draws


def test_fourier_cells_know_their_cache_and_what_the_full_cache_would_cost():
    config = _config(["--num-freqs", "8"])
    spec = registry.get_op("fourier_decode_attention").bench
    assert spec.min_context(config) == 4 + 1020 + 1 and "n_init + n_local" in spec.min_context_note
    assert spec.params(config)["period"] == "span" and "kept_align" not in spec.params(config)
    x = spec.inputs(bk.SHAPES["smollm2"], 2, 2000, torch.float16, "cpu", config)
    assert spec.extra(x) == {"dense_bytes_read": float(bk.dense_bytes_read(2, 9, 3, 64, 2000, "float16"))}
    assert 0 < spec.bytes_read(x) < spec.extra(x)["dense_bytes_read"]


# ---------------------------------------------------------------- the baselines' files
def test_sdpa_packed_gqa_equals_sdpa_gqa_and_a_backend_resolves_on_cpu():
    from optimized.torch_sdpa_flash import resolve_backend, sdpa_decode

    x = registry.get_op("decode_attention").bench.inputs(bk.SHAPES["smollm2"], 2, 40, torch.float32, "cpu", _Cfg())
    a = sdpa_decode(x["q"], x["k"], x["v"], "packed_gqa")
    b = sdpa_decode(x["q"], x["k"], x["v"], "enable_gqa")
    assert a.shape == (2, 9, 1, 64)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    backend, _ = resolve_backend(x)
    assert backend in ("FLASH_ATTENTION/enable_gqa", "FLASH_ATTENTION/packed_gqa", "EFFICIENT_ATTENTION/packed_gqa")
    with pytest.raises(Missing, match="no SDPA backend runs this shape"):
        bench_impls()["sdpa_flash"].hooks.prepare(x, None)


def _fake_flashinfer() -> types.ModuleType:
    """FlashInfer's two decode entry points as documented (HND layout: [Hkv, L, D] per sequence or page), in torch."""

    def attend(q, k, v):  # q [Hq, D], k/v [Hkv, L, D]
        k, v = (t.repeat_interleave(q.shape[0] // t.shape[0], dim=0) for t in (k, v))
        p = torch.softmax((k.float() @ q.float()[:, :, None])[..., 0] / q.shape[-1] ** 0.5, dim=-1)
        return (p[:, None, :] @ v.float())[:, 0].to(q.dtype)

    class Wrapper:
        def __init__(self, workspace, layout):
            assert layout == "HND"

        def plan(self, indptr, indices, last_page_len, hq, hkv, d, page_size, **kw):
            self.pages = [indices[indptr[i]:indptr[i + 1]].tolist() for i in range(len(indptr) - 1)]
            self.last, self.page_size = last_page_len.tolist(), page_size

        def run(self, q, kv):
            k, v = kv  # [pages, Hkv, page_size, D]
            outs = []
            for b, pages in enumerate(self.pages):
                n = (len(pages) - 1) * self.page_size + self.last[b]
                kb, vb = (torch.cat([t[p] for p in pages], dim=1)[:, :n] for t in (k, v))
                outs.append(attend(q[b], kb, vb))
            return torch.stack(outs)

    fake = types.ModuleType("flashinfer")
    fake.single_decode_with_kv_cache = lambda q, k, v, kv_layout: attend(q, k, v)
    fake.BatchDecodeWithPagedKVCacheWrapper = Wrapper
    return fake


@pytest.mark.parametrize("batch", [1, 3])
def test_flashinfer_glue_computes_decode_attention_with_the_documented_api(monkeypatch, batch):
    from reference.ops.decode_attention import decode_attention

    monkeypatch.setitem(sys.modules, "flashinfer", _fake_flashinfer())
    x = registry.get_op("decode_attention").bench.inputs(bk.SHAPES["smollm2"], batch, 40, torch.float32, "cpu", _Cfg())
    run = bench_impls()["flashinfer"].hooks.prepare(x, None)
    torch.testing.assert_close(run(x), decode_attention(**x), rtol=1e-5, atol=1e-6)


def test_flashinfer_without_the_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "flashinfer", None)  # import raises ImportError
    with pytest.raises(Missing, match="flashinfer is not installed on this machine"):
        bench_impls()["flashinfer"].hooks.prepare({}, None)
