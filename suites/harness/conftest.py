"""Fixtures for harness tests: a tiny random LLaMA saved to disk (loaded like any user checkpoint)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer random LLaMA (GQA 4/2 heads, head_dim 16) with the embedded model's tokenizer, saved as a
    transformers checkpoint directory: fast enough for CLI and flow tests, real enough for the model code."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from harness.lm.model import embedded_gguf_path

    path = tmp_path_factory.mktemp("tiny-llama")
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from harness.lm.model import load_model

    return load_model(str(tiny_model_dir))
