"""The draft-model trace collector (make_traces.py --target MODEL --draft MODEL) on tiny random LLaMA pairs on CPU:
speculative output equals the target's greedy output, a draft identical to the target accepts every token, and
the collector writes valid traces and step times."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from reference.scheduling.speculative import ModelDraft, SpecEngine, greedy_decode, speculative_decode
from reference.scheduling.trace import load_traces

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scheduling"
CHARS = "$? abcdefghijklmnopqrstuvwxyz.,:<>"


def _tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(CHARS)}, merges=[], unk_token="?"))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="?", eos_token="$")
    fast.chat_template = ("{% for m in messages %}<{{ m['content'] }}>{% endfor %}"
                          "{% if add_generation_prompt %}:{% endif %}")
    return fast


def tiny_llama(path: Path, layers: int, hidden: int, seed: int) -> Path:
    """A random LLaMA (`layers` x `hidden`) with the character tokenizer, saved to `path`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(CHARS), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, eos_token_id=0, bos_token_id=1, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    return tiny_llama(root / "target", 2, 32, 0), tiny_llama(root / "draft", 1, 16, 1)


def _engine(target, draft, name="draft"):
    from harness.lm.model import load_model

    return SpecEngine(load_model(str(target)).model, ModelDraft(name), 4, draft_model=load_model(str(draft)).model)


def test_model_draft_output_equals_target_greedy(pair):
    target, draft = pair
    for engine in (_engine(target, draft), _engine(target, target)):
        for prompt in ([5, 6, 7, 8], [9, 3, 12, 30, 31, 2, 2]):
            session = speculative_decode(engine, prompt, 40)
            assert session.output_ids == greedy_decode(engine, prompt, 40)
            assert all(0 <= r.accepted <= 4 for r in session.records)
    same = speculative_decode(_engine(target, target), [5, 6, 7, 8], 40)
    assert [r.accepted for r in same.records[:-1]] == [4] * (len(same.records) - 1)  # all but the cut last step


def test_draft_with_another_vocabulary_is_refused(pair, tmp_path):
    from harness.lm.model import load_model
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=len(CHARS) + 1, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ValueError, match="draft_model"):
        SpecEngine(load_model(str(pair[0])).model, ModelDraft("x"), 4, draft_model=other)


def test_collector_writes_traces_and_step_times(pair, tmp_path, monkeypatch):
    sys.path.insert(0, str(FIXTURES))
    import make_traces

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "kind": "chat", "text": t}) + "\n"
                               for i, t in enumerate(["hello there", "write code, please"])))
    traces, times = tmp_path / "traces.jsonl", tmp_path / "times.json"
    argv = ["--target", str(pair[0]), "--draft", str(pair[1]), "--prompts", str(prompts), "--max-new-tokens", "24",
            "--traces", str(traces), "--step-times", str(times), "--contexts", "16,32", "--batches", "1",
            "--repeats", "1", "--prefill-repeats", "1"]
    make_traces.main(argv)
    rows = load_traces(traces)
    assert [t.id for t in rows] == ["p0", "p1"] and all(t.draft_len == 4 and t.draft_ms for t in rows)
    data = json.loads(times.read_text())
    assert data["draft"]["kind"] == "model" and data["draft"]["draft_layers"] == 1 and len(data["samples"]) == 2
    with pytest.raises(SystemExit, match="--traces"):
        make_traces.main(argv[:8])  # a draft model without output paths: the committed fixture stays untouched
