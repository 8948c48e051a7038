"""The masked-diffusion transformer (reference/dllm/model.py, config.py) and its weights (reference/dllm/checkpoint.py).

Tiny shapes on the CPU, random weights and token ids drawn from seeded generators (the seed is in each test id).
The LLaDA / Dream checkpoints are synthetic directories written here with the real weight names (renamed by hand in
this file, independently of checkpoint.py's tables), so the loaders are exercised without downloading anything.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from reference.dllm import checkpoint
from reference.dllm.config import LLADA_8B, DLLMConfig
from reference.dllm.model import DLLM, dense_attention

SEEDS = (0, 1, 7)
TINY = DLLMConfig(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, mask_id=60, eos_id=59,
                  rope_theta=10000.0)


pytestmark = pytest.mark.usefixtures("one_thread_module")


def model_of(cfg: DLLMConfig = TINY, seed: int = 0, dtype=torch.float64) -> DLLM:
    """Random weights a bit larger than random_model's 0.02, and random norm weights, so every term matters."""
    torch.manual_seed(seed)
    model = DLLM(cfg, dtype=dtype).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2 if name.endswith("norm.weight") else 0.15
            center = 1.0 if name.endswith("norm.weight") else 0.0
            p.copy_(center + scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def ids_of(cfg: DLLMConfig, b: int, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (b, n), generator=torch.Generator().manual_seed(seed + 1000))


# ------------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("seed", SEEDS)
def test_bidirectional_a_later_token_changes_every_earlier_row(seed):
    model, ids = model_of(seed=seed), ids_of(TINY, 2, 12, seed)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % TINY.vocab_size
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert (a[:, :-1] - b[:, :-1]).abs().amax(-1).min() > 1e-6, f"seed={seed}: some earlier row did not change"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lo,hi", [(0, 5), (4, 9), (7, 13), (12, 13)])
def test_window_at_its_absolute_positions_with_the_rest_of_the_kv_equals_the_full_forward(seed, lo, hi):
    """RoPE uses absolute positions: a window run at positions lo..hi-1, attending to the full run's other K/V,
    gives the full forward's rows; at positions 0..hi-lo-1 it does not."""
    n = 13
    model, ids = model_of(seed=seed), ids_of(TINY, 2, n, seed)
    kv = {}

    def record(i, q, k, v):
        kv[i] = (k, v)
        return dense_attention(q, k, v)

    def with_rest(i, q, k, v):
        k_all, v_all = kv[i]
        k_cat = torch.cat([k_all[:, :, :lo], k, k_all[:, :, hi:]], dim=2)
        v_cat = torch.cat([v_all[:, :, :lo], v, v_all[:, :, hi:]], dim=2)
        return dense_attention(q, k_cat, v_cat)

    with torch.no_grad():
        full = model(ids, attend=record)
        assert torch.allclose(full, model(ids), rtol=0, atol=1e-12)
        window = model(ids[:, lo:hi], positions=torch.arange(lo, hi), attend=with_rest)
        shifted = model(ids[:, lo:hi], positions=torch.arange(0, hi - lo), attend=with_rest)
    torch.testing.assert_close(window, full[:, lo:hi], rtol=1e-10, atol=1e-10,
                               msg=lambda m: f"seed={seed} lo={lo} hi={hi}: {m}")
    if lo > 0:
        assert (shifted - full[:, lo:hi]).abs().max() > 1e-6, "RoPE positions had no effect"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_heads,n_kv_heads", [(4, 1), (4, 2), (6, 3), (4, 4)])
def test_gqa_equals_mha_with_each_kv_head_repeated_for_its_group(seed, n_heads, n_kv_heads):
    """Query head h reads KV head h // group: a GQA model equals the MHA model whose K/V projections repeat each KV
    head's rows group times."""
    cfg = replace(TINY, d_model=8 * n_heads, n_heads=n_heads, n_kv_heads=n_kv_heads, qkv_bias=True)
    mha_cfg = replace(cfg, n_kv_heads=n_heads)
    gqa, mha = model_of(cfg, seed), DLLM(mha_cfg, dtype=torch.float64).eval()
    group, d = n_heads // n_kv_heads, cfg.head_dim
    with torch.no_grad():
        for name, p in mha.named_parameters():
            src = gqa.get_parameter(name)
            if name.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")):
                src = src.reshape(n_kv_heads, d, *src.shape[1:]).repeat_interleave(group, 0).reshape(p.shape)
            p.copy_(src)
    ids = ids_of(cfg, 2, 10, seed)
    shapes = {}

    def spy(i, q, k, v):
        shapes[i] = (tuple(q.shape), tuple(k.shape))
        return dense_attention(q, k, v)

    with torch.no_grad():
        out = gqa(ids, attend=spy)
        torch.testing.assert_close(out, mha(ids), rtol=1e-10, atol=1e-10)
    assert shapes[0] == ((2, n_heads, 10, d), (2, n_kv_heads, 10, d))


@pytest.mark.parametrize("rows", [slice(0, 3), slice(4, 11), slice(-1, None), slice(None)])
def test_rows_returns_those_rows_only(rows):
    model, ids = model_of(seed=3), ids_of(TINY, 2, 11, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, rows=rows), model(ids)[:, rows], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("field,changes", [
    ("vocab_size", dict(vocab_size=0)), ("d_model", dict(d_model=-32)), ("n_layers", dict(n_layers=0)),
    ("n_heads", dict(n_heads=0)), ("n_kv_heads", dict(n_kv_heads=0)), ("ffn_dim", dict(ffn_dim=0)),
    ("d_model", dict(d_model=30)),                       # not a multiple of n_heads
    ("n_kv_heads", dict(n_kv_heads=3)),                  # n_heads not a multiple of it
    ("mask_id", dict(mask_id=61)), ("mask_id", dict(mask_id=-1)),
    ("eos_id", dict(eos_id=61)), ("eos_id", dict(eos_id=-2)),
])
def test_invalid_config_names_the_field(field, changes):
    with pytest.raises(ValueError, match=field):
        replace(TINY, **changes)


def test_model_input_shape_errors():
    model = model_of()
    with pytest.raises(ValueError, match="ids"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="positions"):
        model(ids_of(TINY, 1, 5, 0), positions=torch.arange(4))


# ---------------------------------------------------------------------------------------------- random weights
def test_random_model_is_seeded_on_its_device_with_unit_norms():
    cfg = replace(TINY, qkv_bias=True, tie_embeddings=True)
    a = checkpoint.random_model(cfg, "cpu", torch.bfloat16, seed=5)
    b = checkpoint.random_model(cfg, "cpu", torch.bfloat16, seed=5)
    c = checkpoint.random_model(cfg, "cpu", torch.bfloat16, seed=6)
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" and not p.requires_grad for p in a.parameters())
    assert a.lm_head.weight is a.embed.weight
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q), name
        if name.endswith("norm.weight"):
            assert torch.all(p == 1), name
        else:
            assert not torch.equal(p, r), name
            assert 0.01 < p.float().std().item() < 0.04, name
    with torch.no_grad():
        assert a(ids_of(cfg, 1, 6, 0)).isfinite().all()
    meta = checkpoint.random_model(LLADA_8B, "meta", torch.bfloat16)
    assert 7.5e9 < meta.num_params() < 8.5e9


# ----------------------------------------------------------------------------------------------- our format
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tie", [False, True])
def test_save_load_round_trip(tmp_path, seed, tie):
    cfg = replace(TINY, tie_embeddings=tie, qkv_bias=seed % 2 == 1, shift_logits=seed == 7)
    model = model_of(cfg, seed, dtype=torch.float32)
    recipe = {"steps": 100, "lr": 3e-4, "data": "synthetic copy task", "layers": [0, 1], "nested": {"a": None}}
    metrics = {"loss": 1.25, "accuracy": 0.5}
    path = tmp_path / "sub" / "tiny.pt"
    checkpoint.save(model, path, recipe=recipe, metrics=metrics)

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == checkpoint.FORMAT
    assert all(w.dtype == torch.float16 for w in raw["state_dict"].values())
    assert ("lm_head.weight" in raw["state_dict"]) == (not tie)

    loaded, meta = checkpoint.load(path)
    assert loaded.cfg == cfg and meta["config"] == cfg.to_dict()
    assert meta["recipe"] == recipe and meta["metrics"] == metrics and meta["format"] == checkpoint.FORMAT
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert (loaded.lm_head.weight is loaded.embed.weight) == tie
    ids = ids_of(cfg, 2, 9, seed)
    with torch.no_grad():
        rounded = model_of(cfg, seed, dtype=torch.float32)
        for p in rounded.parameters():
            p.copy_(p.half().float())
        torch.testing.assert_close(loaded(ids), rounded(ids), rtol=0, atol=0)  # exactly the float16 weights
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=2e-2)  # close to the float32 source


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here.pt"):
        checkpoint.load(tmp_path / "nothing-here.pt")
    torch.save({"format": "something-else/3", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="something-else/3"):
        checkpoint.load(tmp_path / "other.pt")
    model = model_of(dtype=torch.float32)
    checkpoint.save(model, tmp_path / "ok.pt")
    raw = torch.load(tmp_path / "ok.pt", weights_only=True)
    del raw["state_dict"]["layers.1.up_proj.weight"]
    torch.save(raw, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing weights: layers\.1\.up_proj\.weight"):
        checkpoint.load(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="recipe"):
        checkpoint.save(model, tmp_path / "bad.pt", recipe={"device": torch.device("cpu")})


# ---------------------------------------------------------------------------------- Hugging Face directories
def llada_weights(model: DLLM) -> dict[str, torch.Tensor]:
    t, cfg = "model.transformer.", model.cfg
    out = {t + "wte.weight": model.embed.weight, t + "ln_f.weight": model.norm.weight}
    if not cfg.tie_embeddings:
        out[t + "ff_out.weight"] = model.lm_head.weight
    for i, layer in enumerate(model.layers):
        b = f"{t}blocks.{i}."
        out.update({b + "attn_norm.weight": layer.attn_norm.weight, b + "q_proj.weight": layer.q_proj.weight,
                    b + "k_proj.weight": layer.k_proj.weight, b + "v_proj.weight": layer.v_proj.weight,
                    b + "attn_out.weight": layer.o_proj.weight, b + "ff_norm.weight": layer.mlp_norm.weight,
                    b + "ff_proj.weight": layer.gate_proj.weight, b + "up_proj.weight": layer.up_proj.weight,
                    b + "ff_out.weight": layer.down_proj.weight})
        if cfg.qkv_bias:
            out.update({b + f"{p}.bias": getattr(layer, p).bias for p in ("q_proj", "k_proj", "v_proj")})
    return out


def dream_weights(model: DLLM) -> dict[str, torch.Tensor]:
    out = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight,
           "lm_head.weight": model.lm_head.weight}
    for i, layer in enumerate(model.layers):
        b = f"model.layers.{i}."
        out.update({b + "input_layernorm.weight": layer.attn_norm.weight,
                    b + "post_attention_layernorm.weight": layer.mlp_norm.weight,
                    b + "self_attn.o_proj.weight": layer.o_proj.weight,
                    b + "mlp.gate_proj.weight": layer.gate_proj.weight, b + "mlp.up_proj.weight": layer.up_proj.weight,
                    b + "mlp.down_proj.weight": layer.down_proj.weight})
        for p in ("q_proj", "k_proj", "v_proj"):
            out[b + f"self_attn.{p}.weight"] = getattr(layer, p).weight
            out[b + f"self_attn.{p}.bias"] = getattr(layer, p).bias
    return out


def llada_config(cfg: DLLMConfig, kv_null: bool = False) -> dict:
    return {"model_type": "llada", "architectures": ["LLaDAModelLM"], "block_type": "llama",
            "activation_type": "silu", "d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
            "n_kv_heads": None if kv_null else cfg.n_kv_heads, "mlp_hidden_size": cfg.ffn_dim, "mlp_ratio": 4,
            "vocab_size": cfg.vocab_size - 3, "embedding_size": cfg.vocab_size, "rope_theta": cfg.rope_theta,
            "rms_norm_eps": cfg.norm_eps, "mask_token_id": cfg.mask_id, "eos_token_id": cfg.eos_id,
            "weight_tying": cfg.tie_embeddings, "include_bias": False, "include_qkv_bias": cfg.qkv_bias,
            "max_sequence_length": cfg.max_len, "rope": True, "alibi": False}


def dream_config(cfg: DLLMConfig) -> dict:
    return {"model_type": "Dream", "architectures": ["DreamModel"], "hidden_act": "silu",
            "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
            "num_key_value_heads": cfg.n_kv_heads, "intermediate_size": cfg.ffn_dim, "vocab_size": cfg.vocab_size,
            "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.norm_eps, "mask_token_id": cfg.mask_id,
            "eos_token_id": cfg.eos_id, "tie_word_embeddings": cfg.tie_embeddings, "rope_scaling": None,
            "max_position_embeddings": cfg.max_len, "torch_dtype": "float32"}


def write_hf(root, config: dict, weights: dict[str, torch.Tensor], layout: str = "sharded"):
    """A Hugging Face directory: one safetensors file, two shards + index, or a pytorch_model.bin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    weights = {k: v.detach().clone().contiguous() for k, v in weights.items()}
    if layout == "single":
        save_file(weights, root / "model.safetensors", metadata={"format": "pt"})
    elif layout == "bin":
        torch.save(weights, root / "pytorch_model.bin")
    else:
        names = sorted(weights)
        parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
        for file, part in parts.items():
            save_file({k: weights[k] for k in part}, root / file, metadata={"format": "pt"})
        index = {"metadata": {}, "weight_map": {k: f for f, part in parts.items() for k in part}}
        (root / "model.safetensors.index.json").write_text(json.dumps(index))
    return root


def assert_same_logits(source: DLLM, loaded: DLLM, seed: int):
    ids = ids_of(source.cfg, 2, 10, seed)
    with torch.no_grad():
        a, b = source(ids), loaded(ids)
    assert torch.equal(a, b), f"seed={seed}: max |diff| {(a - b).abs().max().item():.3g}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("layout,tie,bias,kv_null", [("sharded", False, False, False), ("single", True, False, True),
                                                      ("bin", False, True, False)])
def test_llada_directory_loads_with_identical_logits(tmp_path, seed, layout, tie, bias, kv_null):
    cfg = replace(TINY, n_kv_heads=TINY.n_heads if kv_null else 2, tie_embeddings=tie, qkv_bias=bias,
                  norm_eps=1e-5, max_len=4096)
    source = model_of(cfg, seed, dtype=torch.float32)
    root = write_hf(tmp_path / "llada", llada_config(cfg, kv_null), llada_weights(source), layout)
    loaded = checkpoint.load_pretrained(root, dtype=torch.float32)
    assert loaded.cfg == cfg
    assert (loaded.lm_head.weight is loaded.embed.weight) == tie
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in loaded.parameters())
    assert_same_logits(source, loaded, seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("layout,tie", [("sharded", False), ("single", True), ("bin", False)])
def test_dream_directory_loads_with_identical_logits(tmp_path, seed, layout, tie):
    cfg = replace(TINY, qkv_bias=True, shift_logits=True, tie_embeddings=tie, norm_eps=1e-6, rope_theta=1e6,
                  max_len=2048)
    source = model_of(cfg, seed, dtype=torch.float32)
    weights = dream_weights(source)
    weights["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # an old buffer: ignored
    if tie and seed == 0:
        del weights["lm_head.weight"]  # a tied checkpoint may or may not store the head
    root = write_hf(tmp_path / "dream", dream_config(cfg), weights, layout)
    loaded = checkpoint.load_pretrained(root, dtype=torch.float32)
    assert loaded.cfg == cfg
    assert_same_logits(source, loaded, seed)


def test_pretrained_bfloat16_default_and_model_type_case(tmp_path):
    cfg = replace(TINY, qkv_bias=True, shift_logits=True, norm_eps=1e-6, max_len=2048)
    source = model_of(cfg, 0, dtype=torch.float32)
    root = write_hf(tmp_path / "dream", {**dream_config(cfg), "model_type": "dream"}, dream_weights(source))
    loaded = checkpoint.load_pretrained(root)
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
    for (name, p), q in zip(loaded.named_parameters(), source.parameters()):
        assert torch.equal(p, q.to(torch.bfloat16)), name


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("layout", ["sharded", "bin"])
def test_pretrained_missing_unexpected_and_misshaped_weights_are_named(tmp_path, family, layout):
    cfg = replace(TINY, qkv_bias=family == "dream", shift_logits=family == "dream")
    source = model_of(cfg, 0, dtype=torch.float32)
    weights, config = (llada_weights(source), llada_config(cfg)) if family == "llada" else \
        (dream_weights(source), dream_config(cfg))
    gone = sorted(weights)[3]
    missing = {k: v for k, v in weights.items() if k != gone}
    with pytest.raises(ValueError, match=rf"missing weights: {gone.replace('.', '[.]')}"):
        checkpoint.load_pretrained(write_hf(tmp_path / "missing", config, missing, layout))
    extra_name = "model.transformer.blocks.0.q_norm.weight" if family == "llada" else "model.layers.0.extra.weight"
    extra = {**weights, extra_name: torch.ones(cfg.d_model)}
    with pytest.raises(ValueError, match=rf"unexpected weights: {extra_name.replace('.', '[.]')}"):
        checkpoint.load_pretrained(write_hf(tmp_path / "extra", config, extra, layout))
    name = next(k for k in weights if k.endswith("up_proj.weight"))
    bad = {**weights, name: weights[name][:-1]}
    with pytest.raises(ValueError, match=name.replace(".", "[.]")):
        checkpoint.load_pretrained(write_hf(tmp_path / "shape", config, bad, layout))


def test_pretrained_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        checkpoint.load_pretrained(tmp_path)
    cfg = TINY
    source = model_of(cfg, 0, dtype=torch.float32)
    root = write_hf(tmp_path / "gpt", {**llada_config(cfg), "model_type": "gpt2"}, llada_weights(source))
    with pytest.raises(ValueError, match="unknown model_type 'gpt2'"):
        checkpoint.load_pretrained(root)
    root = write_hf(tmp_path / "seq", {**llada_config(cfg), "block_type": "sequential"}, llada_weights(source))
    with pytest.raises(ValueError, match="block_type"):
        checkpoint.load_pretrained(root)
    config = llada_config(cfg)
    del config["rope_theta"]
    with pytest.raises(ValueError, match="rope_theta"):
        checkpoint.load_pretrained(write_hf(tmp_path / "theta", config, llada_weights(source)))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(llada_config(cfg)))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        checkpoint.load_pretrained(tmp_path / "empty")
