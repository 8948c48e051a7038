"""Weights for reference/dllm/model.py: our own small format, real LLaDA / Dream checkpoints, random weights.

- `save` / `load`: one `torch.save` file {"format": "longctx-dllm/1", "config", "state_dict", "recipe", "metrics"},
  weights stored in float16 (fixtures stay small), a tied LM head stored once, read back with
  `torch.load(weights_only=True)` (the file holds only plain types and tensors).
- `load_pretrained`: a LOCAL Hugging Face directory (config.json + *.safetensors shards, with or without
  model.safetensors.index.json; or pytorch_model*.bin) of
  - LLaDA (Nie et al., arXiv 2502.09992; the GSAI-ML/LLaDA-8B-* checkpoints, model_type "llada"): OLMo-style config
    (d_model, n_layers, n_heads, n_kv_heads, mlp_hidden_size, vocab_size / embedding_size (the padded vocab of the
    weights), rope_theta, rms_norm_eps, mask_token_id 126336, weight_tying, include_qkv_bias) and weights
    `model.transformer.{wte, blocks.i.{attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm, ff_proj, up_proj,
    ff_out}, ln_f, ff_out}`, where the block's ff_proj is the SwiGLU gate (silu applied to it), up_proj the up and
    ff_out the down projection, attn_out the attention output, the top-level ff_out the LM head (absent when tied);
  - Dream (Ye et al., 2025, Dream-v0-*-7B, model_type "Dream"): a Qwen2 (Qwen2.5-7B-initialised) config
    (hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size, ...,
    mask_token_id 151666, tie_word_embeddings) and Qwen2 weight names `model.{embed_tokens, layers.i.{self_attn.
    {q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}, norm}`, `lm_head`, with
    q/k/v biases; its logits are read shifted by one (`shift_logits`).
  Both use LLaMA's rotate-half RoPE layout, which model.py implements, so no weight permutation is needed.
- `random_model`: real shapes with random weights drawn on the target device, for timing (speed does not depend on
  the weights).
"""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from reference.dllm.config import DREAM_7B, LLADA_8B, DLLMConfig
from reference.dllm.model import DLLM

FORMAT = "longctx-dllm/1"
_FIELDS = {f.name for f in fields(DLLMConfig)}
_PLAIN = (str, int, float, bool, type(None))
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # a RoPE buffer some older checkpoints saved; recomputed by model.py


# ---------------------------------------------------------------------------------------------- shared helpers
def _device(device) -> torch.device:
    return torch.device(device) if device is not None else torch.get_default_device()


def _empty_model(cfg: DLLMConfig, device, dtype: torch.dtype) -> DLLM:
    """A DLLM with uninitialised storage on `device`: built on "meta" (no init cost), then materialised."""
    model = DLLM(cfg, device="meta", dtype=dtype).to_empty(device=_device(device))
    if cfg.tie_embeddings:  # to_empty gives each module its own new tensor: tie again
        model.lm_head.weight = model.embed.weight
    return model.eval()


def _assign(params: dict[str, torch.nn.Parameter], name: str, tensor: torch.Tensor, source: str) -> None:
    p = params[name]
    if tuple(tensor.shape) != tuple(p.shape):
        raise ValueError(f"weight {source!r} has shape {tuple(tensor.shape)}, expected {tuple(p.shape)} "
                         f"(for {name!r})")
    with torch.no_grad():
        p.copy_(tensor)  # casts to the model's dtype and moves to its device


def _first(names, k: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:k]) + (f" ... ({len(names)} in all)" if len(names) > k else "")


def _check_names(expected: set[str], found: set[str], optional: set[str], where: str) -> None:
    found = {n for n in found if not n.endswith(_IGNORED_SUFFIXES)} - optional
    missing, unexpected = expected - found, found - expected
    if missing or unexpected:
        parts = ([f"missing weights: {_first(missing)}"] if missing else []) + \
                ([f"unexpected weights: {_first(unexpected)}"] if unexpected else [])
        raise ValueError(f"{where}: " + "; ".join(parts))


def _check_plain(obj, where: str) -> None:
    """recipe / metrics must load under torch.load(weights_only=True): plain types, lists, tuples, str-keyed dicts."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            _check_plain(x, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, x in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be str, got {k!r}")
            _check_plain(x, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where} must hold only str/int/float/bool/None, lists and dicts; got {type(obj).__name__}")


# ------------------------------------------------------------------------------------------------ our format
def save(model: DLLM, path, recipe: dict | None = None, metrics: dict | None = None) -> None:
    """Write `model` (config + float16 weights) with how it was made (`recipe`) and what it scored (`metrics`).

    The file is written to a temporary name, then renamed, so a reader never sees half a checkpoint.
    """
    _check_plain(recipe, "recipe")
    _check_plain(metrics, "metrics")
    f16_max = torch.finfo(torch.float16).max
    state = {}
    for name, p in model.named_parameters():  # named_parameters lists a tied lm_head once (as embed.weight)
        w = p.detach()
        if w.is_floating_point() and w.isfinite().all() and w.abs().max() > f16_max:
            raise ValueError(f"weight {name!r} exceeds the float16 range (max |w| = {w.abs().max().item():.4g})")
        state[name] = w.to(device="cpu", dtype=torch.float16).contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": state, "recipe": recipe,
                "metrics": metrics}, tmp)
    os.replace(tmp, path)


def load(path, device=None, dtype: torch.dtype = torch.float32) -> tuple[DLLM, dict]:
    """(model, meta) of a file written by `save`: the model in eval mode on `device` in `dtype` (parameters
    trainable), meta = {"format", "config", "recipe", "metrics"}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dLLM checkpoint at {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt != FORMAT:
        raise ValueError(f"{path}: format {fmt!r}, expected {FORMAT!r} (a file written by checkpoint.save)")
    unknown = set(obj["config"]) - _FIELDS
    if unknown:
        raise ValueError(f"{path}: unknown config fields {sorted(unknown)}")
    cfg = DLLMConfig(**obj["config"])
    model = _empty_model(cfg, device, dtype)
    params = dict(model.named_parameters())
    _check_names(set(params), set(obj["state_dict"]), set(), str(path))
    for name, w in obj["state_dict"].items():
        _assign(params, name, w, name)
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return model, meta


# ------------------------------------------------------------------------------------- Hugging Face checkpoints
def _get(raw: dict, key: str, where: str):
    if raw.get(key) is None:
        raise ValueError(f"{where}: config.json lacks {key!r}")
    return raw[key]


def _token(value, default: int) -> int:
    if isinstance(value, (list, tuple)):  # some configs list several eos ids; the first is the generation stop
        value = value[0] if value else None
    return default if value is None else int(value)


def _llada_config(raw: dict, where: str) -> DLLMConfig:
    unsupported = {k: raw[k] for k in ("include_bias", "alibi", "attention_layer_norm", "scale_logits",
                                       "input_emb_norm") if raw.get(k)}
    if raw.get("block_type", "llama") != "llama":
        unsupported["block_type"] = raw["block_type"]
    if raw.get("rope") is False:
        unsupported["rope"] = False
    if unsupported:
        raise ValueError(f"{where}: LLaDA options not supported by reference/dllm/model.py: {unsupported}")
    d, heads = _get(raw, "d_model", where), _get(raw, "n_heads", where)
    ffn = raw.get("mlp_hidden_size") or int(raw.get("mlp_ratio", 4) * d)
    return DLLMConfig(
        vocab_size=max(_get(raw, "vocab_size", where), raw.get("embedding_size") or 0),
        d_model=d, n_layers=_get(raw, "n_layers", where), n_heads=heads, n_kv_heads=raw.get("n_kv_heads") or heads,
        ffn_dim=ffn, mask_id=_token(raw.get("mask_token_id"), LLADA_8B.mask_id),
        eos_id=_token(raw.get("eos_token_id"), LLADA_8B.eos_id), rope_theta=float(_get(raw, "rope_theta", where)),
        norm_eps=float(raw.get("rms_norm_eps") or 1e-5), qkv_bias=bool(raw.get("include_qkv_bias")),
        tie_embeddings=bool(raw.get("weight_tying")), shift_logits=False,
        max_len=int(raw.get("max_sequence_length") or DLLMConfig.max_len))


def _llada_names(cfg: DLLMConfig) -> dict[str, str]:
    """checkpoint name -> our name."""
    t = "model.transformer."
    names = {t + "wte.weight": "embed.weight", t + "ln_f.weight": "norm.weight"}
    if not cfg.tie_embeddings:
        names[t + "ff_out.weight"] = "lm_head.weight"
    ours = {"attn_norm": "attn_norm", "q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj",
            "attn_out": "o_proj", "ff_norm": "mlp_norm", "ff_proj": "gate_proj", "up_proj": "up_proj",
            "ff_out": "down_proj"}
    for i in range(cfg.n_layers):
        for theirs, mine in ours.items():
            names[f"{t}blocks.{i}.{theirs}.weight"] = f"layers.{i}.{mine}.weight"
        if cfg.qkv_bias:
            for p in ("q_proj", "k_proj", "v_proj"):
                names[f"{t}blocks.{i}.{p}.bias"] = f"layers.{i}.{p}.bias"
    return names


def _dream_config(raw: dict, where: str) -> DLLMConfig:
    if raw.get("hidden_act", "silu") != "silu" or raw.get("rope_scaling"):
        raise ValueError(f"{where}: Dream options not supported by reference/dllm/model.py: "
                         f"hidden_act={raw.get('hidden_act')!r}, rope_scaling={raw.get('rope_scaling')!r}")
    heads = _get(raw, "num_attention_heads", where)
    return DLLMConfig(
        vocab_size=_get(raw, "vocab_size", where), d_model=_get(raw, "hidden_size", where),
        n_layers=_get(raw, "num_hidden_layers", where), n_heads=heads,
        n_kv_heads=raw.get("num_key_value_heads") or heads, ffn_dim=_get(raw, "intermediate_size", where),
        mask_id=_token(raw.get("mask_token_id"), DREAM_7B.mask_id),
        eos_id=_token(raw.get("eos_token_id"), DREAM_7B.eos_id), rope_theta=float(_get(raw, "rope_theta", where)),
        norm_eps=float(raw.get("rms_norm_eps") or 1e-6), qkv_bias=True,
        tie_embeddings=bool(raw.get("tie_word_embeddings", False)), shift_logits=True,
        max_len=int(raw.get("max_position_embeddings") or DLLMConfig.max_len))


def _dream_names(cfg: DLLMConfig) -> dict[str, str]:
    names = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight"}
    if not cfg.tie_embeddings:
        names["lm_head.weight"] = "lm_head.weight"
    ours = {"self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
            "self_attn.o_proj": "o_proj", "mlp.gate_proj": "gate_proj", "mlp.up_proj": "up_proj",
            "mlp.down_proj": "down_proj", "input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"}
    for i in range(cfg.n_layers):
        for theirs, mine in ours.items():
            names[f"model.layers.{i}.{theirs}.weight"] = f"layers.{i}.{mine}.weight"
        for p in ("q_proj", "k_proj", "v_proj"):
            names[f"model.layers.{i}.self_attn.{p}.bias"] = f"layers.{i}.{p}.bias"
    return names


# model_type (lower case) -> (config mapping, weight names, LM head name: ignored if present in a tied checkpoint)
FAMILIES = {"llada": (_llada_config, _llada_names, "model.transformer.ff_out.weight"),
            "dream": (_dream_config, _dream_names, "lm_head.weight")}


def _shards(root: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (root / index).is_file():
            weight_map = json.loads((root / index).read_text())["weight_map"]
            return [root / f for f in sorted(set(weight_map.values()))]
    shards = sorted(root.glob("*.safetensors")) or sorted(root.glob("pytorch_model*.bin"))
    if not shards:
        raise FileNotFoundError(f"{root}: no *.safetensors or pytorch_model*.bin weights")
    return shards


def _read(shard: Path) -> dict[str, torch.Tensor]:
    if not shard.is_file():
        raise FileNotFoundError(f"weight shard {shard} (named by the index) does not exist")
    if shard.suffix == ".safetensors":
        return load_file(shard, device="cpu")
    return torch.load(shard, map_location="cpu", weights_only=True)


def load_pretrained(path, device=None, dtype: torch.dtype = torch.bfloat16) -> DLLM:
    """A DLLM (eval mode, no grad) on `device` in `dtype` from a local LLaDA or Dream Hugging Face directory.

    Shard by shard: peak host memory is one shard, device memory the model. Raises FileNotFoundError for a missing
    directory / config / shard, ValueError for an unknown model_type, unsupported options, missing, unexpected or
    mis-shaped weights (naming the first few).
    """
    root = Path(path)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {root} (expected a local Hugging Face checkpoint directory)")
    raw = json.loads((root / "config.json").read_text())
    model_type = str(raw.get("model_type", ""))
    if model_type.lower() not in FAMILIES:
        raise ValueError(f"{root}/config.json: unknown model_type {model_type!r}; supported: 'llada', 'Dream'")
    make_config, make_names, head = FAMILIES[model_type.lower()]
    cfg = make_config(raw, str(root / "config.json"))
    names = make_names(cfg)
    optional = {head} if cfg.tie_embeddings else set()
    shards = _shards(root)
    if all(s.suffix == ".safetensors" and s.is_file() for s in shards):  # headers only: fail before allocating
        found = set()
        for s in shards:
            with safe_open(s, framework="pt") as f:
                found |= set(f.keys())
        _check_names(set(names), found, optional, str(root))

    model = _empty_model(cfg, device, dtype)
    params = dict(model.named_parameters())
    seen = set()
    for shard in shards:
        tensors = _read(shard)
        unexpected = {n for n in tensors if n not in names and n not in optional
                      and not n.endswith(_IGNORED_SUFFIXES)}
        if unexpected:
            raise ValueError(f"{shard}: unexpected weights: {_first(unexpected)}")
        for name, w in tensors.items():
            if name in names:
                _assign(params, names[name], w, name)
                seen.add(name)
        del tensors
    _check_names(set(names), seen, set(), str(root))
    return model.requires_grad_(False)


# ------------------------------------------------------------------------------------------------ random weights
def random_model(cfg: DLLMConfig, device, dtype: torch.dtype, seed: int = 0) -> DLLM:
    """A DLLM of cfg's shapes (eval mode, no grad): linear / embedding weights and biases ~ N(0, 0.02^2), norm
    weights 1, drawn on `device` itself by a generator of that device (no host allocation, no copy).
    On device "meta" the weights are left unset (shapes only)."""
    model = _empty_model(cfg, device, dtype)
    dev = next(model.parameters()).device
    if dev.type == "meta":
        return model.requires_grad_(False)
    gen = torch.Generator(device=dev).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return model.requires_grad_(False)
