"""A de-quantized copy of a GGUF model on disk, so the second load of it takes a second instead of half a minute.

transformers de-quantizes a GGUF file on every load (about 18 s for the embedded SmolLM2 on a 2-core CPU). The first
load stores the de-quantized weights (safetensors), the config and the tokenizer under the cache root; later loads
of the same file in the same dtype read them (0.4 s) and give the same logits and token ids. The key is the file's
name, size and modification time, the dtype and the transformers version, so a reinstalled package or another
transformers makes a new copy.

The root is `$LONGCTX_MODEL_CACHE`, else `$XDG_CACHE_HOME/longctx-bench/models`, else
`~/.cache/longctx-bench/models`; `LONGCTX_MODEL_CACHE=off` turns the cache off. A copy is written to a temporary
directory and renamed into place whole, so concurrent loads (pytest workers, Ray workers) never read half a copy. A
copy that cannot be read is reported and the GGUF file is loaded instead; a temporary copy left by a killed writer is
removed by the next writer after an hour.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import torch

LOG = logging.getLogger("longctx.model")
ENV = "LONGCTX_MODEL_CACHE"
DONE = "complete"  # written last: a directory without it is not a copy


def cache_root() -> Path | None:
    """Where copies live, or None when `LONGCTX_MODEL_CACHE` is off (or 0, or empty)."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "no", "false") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "longctx-bench" / "models"


def copy_dir(gguf: Path, dtype: torch.dtype) -> Path | None:
    """The copy's directory for GGUF file `gguf` loaded in `dtype` (it may not exist yet); None when caching is off."""
    import transformers

    root = cache_root()
    if root is None:
        return None
    st = gguf.stat()
    dtype_name = str(dtype).removeprefix("torch.")
    return root / f"{gguf.stem}-{st.st_size}-{st.st_mtime_ns}-{dtype_name}-transformers{transformers.__version__}"


def load_copy(path: Path, dtype: torch.dtype):
    """(tokenizer, model) from the copy at `path`, or None when there is no whole copy or it cannot be read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / DONE).is_file():
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - any unreadable copy: the GGUF file is still there
        LOG.warning("model cache: cannot read %s (%s: %s); loading the GGUF file", path, type(exc).__name__,
                    str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "")
        return None
    return tokenizer, model


def store_copy(path: Path, model: torch.nn.Module, tokenizer) -> None:
    """Write the copy of `model` and `tokenizer` at `path`, whole or not at all; a failure (disk full, read-only
    root) is logged, never raised: the model is loaded either way."""
    from safetensors.torch import save_model

    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        _remove_stale(path.parent)
        tmp.mkdir(parents=True, exist_ok=True)
        save_model(model, str(tmp / "model.safetensors"))  # tied weights are stored once
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / DONE).write_text("")
        os.replace(tmp, path)
        LOG.info("model cache: stored a de-quantized copy in %s", path)
    except OSError as exc:
        if not (path / DONE).is_file():  # (a concurrent load that renamed its copy first is not a failure)
            LOG.warning("model cache: cannot write %s (%s)", path, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale(root: Path, age_s: float = 3600.0) -> None:
    """Temporary copies older than `age_s` under `root`: left by a writer that was killed mid-write."""
    if not root.is_dir():
        return
    now = time.time()
    for tmp in root.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > age_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
