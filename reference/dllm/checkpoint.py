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

import math
import os
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from reference.dllm.config import DREAM_7B, LLADA_8B, DLLMConfig
from reference.dllm.model import DLLM
from reference.jsonl import read_json_object

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
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"weight {source!r} is a {type(tensor).__name__}, not a tensor")
    if tuple(tensor.shape) != tuple(p.shape):
        raise ValueError(f"weight {source!r} has shape {tuple(tensor.shape)}, expected {tuple(p.shape)} "
                         f"(for {name!r})")
    if not tensor.is_floating_point():
        raise ValueError(f"weight {source!r} has dtype {tensor.dtype}, expected a floating-point dtype")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"weight {source!r} holds NaN or inf")
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


# Bounds beyond which a config is corrupt, not large (LLaMA-3-405B: d_model 16384, 126 layers, FFN 53248).
_LIMITS = {"vocab_size": 2**22, "d_model": 2**16, "n_layers": 1024, "n_heads": 1024, "n_kv_heads": 1024,
           "ffn_dim": 2**18, "max_len": 2**24}


def _checked_config(values, where: str) -> DLLMConfig:
    """A DLLMConfig from a dict of its fields, type- and range-checked first (ValueError naming `where` and the
    field): a corrupt file must not reach DLLMConfig's arithmetic, nor build a billion layers."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: config must be a dict of DLLMConfig fields, got {type(values).__name__}")
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown config fields {sorted(unknown)}")
    for f in fields(DLLMConfig):
        if f.name not in values:
            continue
        v = values[f.name]
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _LIMITS.get(f.name, 2**31 - 1)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            want = {"bool": "a bool", "int": f"an integer in [0, {_LIMITS.get(f.name, 2**31 - 1)}]"}.get(
                kind, "a finite number")
            raise ValueError(f"{where}: config field {f.name!r} must be {want}, got {v!r:.40}")
    try:
        return DLLMConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _torch_load(path: Path, what: str):
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: an empty file, not a {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... on junk
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__}: {reason})") from exc


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
    trainable), meta = {"format", "config", "recipe", "metrics"}.

    FileNotFoundError when `path` is not a file; ValueError naming the path for anything else wrong with it (not a
    torch file, another format, a bad config, missing, unexpected, mis-shaped or non-finite weights), raised before
    any weight is allocated on `device`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dLLM checkpoint at {path}" + (" (it is a directory)" if path.is_dir() else ""))
    obj = _torch_load(path, "dLLM checkpoint")
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt != FORMAT:
        raise ValueError(f"{path}: format {fmt!r}, expected {FORMAT!r} (a file written by checkpoint.save)")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path}: 'state_dict' must be a dict of named tensors, got {type(state).__name__}")
    cfg = _checked_config(obj.get("config"), str(path))
    layers = {k.split(".")[1] for k in state if k.startswith("layers.") and k.count(".") >= 2}
    if len(layers) != cfg.n_layers:  # checked before building even a meta model: its size comes from the config
        raise ValueError(f"{path}: config says {cfg.n_layers} layers, the weights hold {len(layers)}")
    shapes = {n: tuple(p.shape) for n, p in DLLM(cfg, device="meta").named_parameters()}
    _check_names(set(shapes), set(state), set(), str(path))
    state = {k: w for k, w in state.items() if k in shapes}  # _check_names let through only ignored buffers
    for name, w in state.items():
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != shapes[name]:
            got = f"shape {tuple(w.shape)}" if isinstance(w, torch.Tensor) else f"a {type(w).__name__}"
            raise ValueError(f"{path}: weight {name!r} is {got}, expected shape {shapes[name]}")
    model = _empty_model(cfg, device, dtype)
    params = dict(model.named_parameters())
    for name, w in state.items():
        try:
            _assign(params, name, w, name)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
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


def llada_names(cfg: DLLMConfig) -> dict[str, str]:
    """LLaDA checkpoint parameter name -> our DLLM parameter name, for a model of `cfg`'s shape."""
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
FAMILIES = {"llada": (_llada_config, llada_names, "model.transformer.ff_out.weight"),
            "dream": (_dream_config, _dream_names, "lm_head.weight")}


def _read_json(path: Path) -> dict:
    return read_json_object(path, "checkpoint file")


def _shards(root: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (root / index).is_file():
            weight_map = _read_json(root / index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map or not all(
                    isinstance(f, str) and f not in ("", ".", "..") and Path(f).name == f for f in weight_map.values()):
                raise ValueError(f"{root / index}: 'weight_map' must map weight names to shard file names in {root}")
            return [root / f for f in sorted(set(weight_map.values()))]
    shards = sorted(root.glob("*.safetensors")) or sorted(root.glob("pytorch_model*.bin"))
    if not shards:
        raise FileNotFoundError(f"{root}: no *.safetensors or pytorch_model*.bin weights")
    return shards


def _read(shard: Path) -> dict[str, torch.Tensor]:
    if not shard.is_file():
        raise FileNotFoundError(f"weight shard {shard} (named by the index) does not exist")
    if shard.suffix == ".safetensors":
        try:
            return load_file(shard, device="cpu")
        except Exception as exc:  # noqa: BLE001 - SafetensorError and friends on a corrupt file
            raise ValueError(f"{shard}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    tensors = _torch_load(shard, "weight shard")
    if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
        raise ValueError(f"{shard}: must hold a dict of named tensors, got {type(tensors).__name__}")
    return tensors


def _safetensors_keys(shard: Path) -> set[str]:
    try:
        with safe_open(shard, framework="pt") as f:
            return set(f.keys())
    except Exception as exc:  # noqa: BLE001 - SafetensorError on a corrupt header
        raise ValueError(f"{shard}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc


def load_pretrained(path, device=None, dtype: torch.dtype = torch.bfloat16) -> DLLM:
    """A DLLM (eval mode, no grad) on `device` in `dtype` from a local LLaDA or Dream Hugging Face directory.

    Shard by shard: peak host memory is one shard, device memory the model. Raises FileNotFoundError for a missing
    directory / config / shard, ValueError for a config or index that is not JSON, an unknown model_type,
    unsupported options or out-of-range fields, a corrupt shard, missing, unexpected, mis-shaped or non-finite
    weights (naming the first few).
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory (expected a local Hugging Face checkpoint directory)")
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {root} (expected a local Hugging Face checkpoint directory)")
    where = str(root / "config.json")
    raw = _read_json(root / "config.json")
    model_type = str(raw.get("model_type", ""))
    if model_type.lower() not in FAMILIES:
        raise ValueError(f"{where}: unknown model_type {model_type!r}; supported: 'llada', 'Dream'")
    make_config, make_names, head = FAMILIES[model_type.lower()]
    try:
        cfg = _checked_config(make_config(raw, where).to_dict(), where)
    except (TypeError, ValueError, IndexError, OverflowError) as exc:  # a field of the wrong type met int() / max()
        raise ValueError(exc if str(exc).startswith(where) else f"{where}: {exc}") from None
    names = make_names(cfg)
    optional = {head} if cfg.tie_embeddings else set()
    shards = _shards(root)
    if all(s.suffix == ".safetensors" and s.is_file() for s in shards):  # headers only: fail before allocating
        found = set()
        for s in shards:
            found |= _safetensors_keys(s)
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
                try:
                    _assign(params, names[name], w, name)
                except ValueError as exc:
                    raise ValueError(f"{shard}: {exc}") from None
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
