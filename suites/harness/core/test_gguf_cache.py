"""The de-quantized copy of a GGUF model (harness/lm/gguf_cache.py): the same model as the GGUF file, written whole
or not at all, never a reason for a load to fail."""
from __future__ import annotations

import logging
import os
import time

import pytest
import torch

from harness.lm import gguf_cache
from harness.lm.model import embedded_gguf_path, load_model

PROMPT = "The pass key is 68213. Remember it.\n<|im_start|>user\nWhat is the pass key?<|im_end|>"


@pytest.mark.slow
def test_the_copy_is_the_gguf_model(tmp_path, monkeypatch, caplog):
    """A load from the GGUF file (cache off), its copy stored, then a load that reads the copy: the same token ids,
    chat template, logits (exactly), tied embeddings, context length and provenance."""
    monkeypatch.setenv(gguf_cache.ENV, "off")
    ref = load_model("smollm2")
    monkeypatch.setenv(gguf_cache.ENV, str(tmp_path))
    path = gguf_cache.copy_dir(embedded_gguf_path(), torch.float32)
    assert path.parent == tmp_path and not path.exists()
    gguf_cache.store_copy(path, ref.model, ref.tokenizer)
    assert (path / gguf_cache.DONE).is_file() and not list(tmp_path.glob(".*.tmp"))
    with caplog.at_level(logging.INFO, logger="longctx.model"):
        got = load_model("smollm2")
    assert "the de-quantized copy in" in caplog.text
    ids = ref.tokenizer(PROMPT).input_ids
    assert got.tokenizer(PROMPT).input_ids == ids and got.tokenizer.chat_template == ref.tokenizer.chat_template
    assert (got.model_id, got.source, got.max_positions) == (ref.model_id, ref.source, ref.max_positions)
    assert got.model.lm_head.weight.data_ptr() == got.model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        want, have = (lm.model(torch.tensor([ids])).logits for lm in (ref, got))
    assert want.abs().max() > 0
    torch.testing.assert_close(have, want, rtol=0, atol=0)


def test_the_root_follows_the_environment(tmp_path, monkeypatch):
    for off in ("off", "0", "", "False"):
        monkeypatch.setenv(gguf_cache.ENV, off)
        assert gguf_cache.cache_root() is None and gguf_cache.copy_dir(embedded_gguf_path(), torch.float32) is None
    monkeypatch.setenv(gguf_cache.ENV, str(tmp_path / "models"))
    assert gguf_cache.cache_root() == tmp_path / "models"
    monkeypatch.delenv(gguf_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_cache.cache_root() == tmp_path / "xdg" / "longctx-bench" / "models"


def test_the_key_changes_with_the_dtype_and_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(gguf_cache.ENV, str(tmp_path))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    a32, a16 = (gguf_cache.copy_dir(gguf, dt) for dt in (torch.float32, torch.bfloat16))
    gguf.write_bytes(b"GGUF" + bytes(61))
    assert len({a32, a16, gguf_cache.copy_dir(gguf, torch.float32)}) == 3


def test_a_copy_that_is_not_whole_or_not_readable_is_not_used(tmp_path, caplog):
    """No marker: not a copy (a writer was killed); a marker over unreadable files: a warning and None, so the
    loader reads the GGUF file."""
    path = tmp_path / "copy"
    path.mkdir()
    (path / "config.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="longctx.model"):
        assert gguf_cache.load_copy(path, torch.float32) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    (path / gguf_cache.DONE).write_text("")
    with caplog.at_level(logging.WARNING, logger="longctx.model"):
        assert gguf_cache.load_copy(path, torch.float32) is None
    assert "cannot read" in caplog.text and str(path) in caplog.text


def test_a_copy_that_cannot_be_written_is_a_warning_not_an_error(tmp_path, tiny_lm, caplog):
    """A root that is a file: logged, nothing left behind; a copy already in place (another process renamed its
    own first) is kept as it is, without a warning; a writer removes temporary copies older than an hour."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="longctx.model"):
        gguf_cache.store_copy(blocked / "copy", tiny_lm.model, tiny_lm.tokenizer)
    assert "cannot write" in caplog.text
    path = tmp_path / "copy"
    gguf_cache.store_copy(path, tiny_lm.model, tiny_lm.tokenizer)
    first = (path / "model.safetensors").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longctx.model"):
        gguf_cache.store_copy(path, tiny_lm.model, tiny_lm.tokenizer)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (path / "model.safetensors").stat().st_mtime_ns == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "file"]
    stale, fresh = tmp_path / ".copy.1.tmp", tmp_path / ".copy.2.tmp"  # killed writers' leftovers, old and new
    for d in (stale, fresh):
        d.mkdir()
    os.utime(stale, (time.time() - 7200,) * 2)
    gguf_cache.store_copy(tmp_path / "copy2", tiny_lm.model, tiny_lm.tokenizer)
    assert not stale.exists() and fresh.exists() and (tmp_path / "copy2" / gguf_cache.DONE).is_file()
    tokenizer, model = gguf_cache.load_copy(path, torch.float32)
    for name, tensor in tiny_lm.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
