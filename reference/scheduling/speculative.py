"""Real greedy speculative decoding with the embedded model: per-request sessions, per-step records, step times.

Speculative decoding (Leviathan et al. 2023, arXiv 2211.17192, Algorithm 1) at temperature 0: a draft proposes
`draft_len` tokens d_1..d_g, the target scores [x, d_1..d_g] in one pass, the longest prefix of d equal to the
target's argmax is accepted (a tokens), and the target's own next token y_{a+1} is appended, so a step emits
a + 1 tokens and the output equals the target's plain greedy output token for token.

Three drafts, all implemented (`PromptLookupDraft`, `EarlyExitDraft`, `ModelDraft`):
- prompt lookup (n-gram copying, as in LLMA, Yang et al. 2023, arXiv 2304.04487, and Saxena's "prompt lookup
  decoding", 2023): the continuation of the latest earlier occurrence of the last n tokens (n = max_ngram down
  to min_ngram) in prompt + output; no model, microseconds per step. No match gives an empty draft, and the step
  is a plain decoding step (accepted 0).
- early exit (self-speculation, as in LayerSkip, Elhoushi et al. 2024, arXiv 2404.16710): the target's first
  `draft_layers` decoder layers + its final norm + LM head, weights shared, its own KV cache.
- a separate small model (the setting of Leviathan et al. and of LAPS-SD, arXiv 2505.17074): any causal LM with
  the target's vocabulary, `draft_len` greedy one-token passes with its own KV cache (`SpecEngine(...,
  draft_model=...)`; fixtures/scheduling/make_traces.py --target MODEL --draft MODEL collects its traces).

The default is prompt lookup. Measured on SmolLM2-135M-Instruct, draft_len 4, CPU fp32 (fixtures/scheduling/):
- prompt lookup, 48 fixture prompts: 12.5% of draft tokens accepted, 1.49 tokens per step; 28% on the
  rewrite/copy prompts (92% on a verbatim repeat), 10-14% on chat, instructions and code; 4% over a request's
  first 10 steps, 11% after (its output grows into something to copy): the per-request spread and early drift
  a scheduler must cope with. Drafting costs ~0.03 ms against a ~70 ms verification.
- early exit at 6 layers, 8 of those prompts (128 tokens): 1.4% accepted (prompt lookup on the same tokens:
  16%), while its 4 draft passes cost about as much as the verification (the 28M-parameter LM head runs on
  every draft token). Per-token agreement of layer k's argmax with the final one is 5% at k = 6, 17% at
  k = 20, 57% at k = 29; skipping middle layers instead did no better. SmolLM2 was not trained for early exit
  (LayerSkip's recipe) and a 135M model has no redundant layers, so this draft only slows decoding down.
It stays because it is what the GPU calibration times (harness/scheduling/calibrate_sd.py): a draft with a real cost, the
draft term of the cost model, which prompt lookup leaves near zero.

Semantics the acceptance traces rely on (format in reference/scheduling/__init__.py):
- The prefill holds the prompt minus its last token; every output token, the first included, comes from a
  speculative step, so sum(accepted + 1) over the steps covers output_len, the last step cut.
- EOS counts as an output token (producing it takes a step) and ends the request; max_new_tokens cuts the
  last step.
Batch size 1 per session, fp32, torch.inference_mode; `measure_step_times` also times batches of equal lengths.
"""
from __future__ import annotations

import copy
import inspect
import random
import statistics
import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

STOCK_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass(frozen=True)
class PromptLookupDraft:
    """Copy the continuation of the latest earlier match of the last n tokens, n = max_ngram .. min_ngram."""

    max_ngram: int = 3
    min_ngram: int = 1
    kind: str = field(default="prompt_lookup", init=False)

    def __post_init__(self):
        if isinstance(self.min_ngram, bool) or not isinstance(self.min_ngram, int) or self.min_ngram < 1:
            raise ValueError(f"min_ngram must be an integer >= 1, got {self.min_ngram!r}")
        if isinstance(self.max_ngram, bool) or not isinstance(self.max_ngram, int) or self.max_ngram < self.min_ngram:
            raise ValueError(f"max_ngram must be an integer >= min_ngram ({self.min_ngram}), got {self.max_ngram!r}")


@dataclass(frozen=True)
class EarlyExitDraft:
    """The target's first `draft_layers` decoder layers + final norm + LM head (LayerSkip-style self-speculation).

    6 of SmolLM2's 30 layers: a draft about a fifth of the target's depth, a common draft-to-target ratio.
    """

    draft_layers: int = 6
    kind: str = field(default="early_exit", init=False)

    def __post_init__(self):
        if isinstance(self.draft_layers, bool) or not isinstance(self.draft_layers, int) or self.draft_layers < 1:
            raise ValueError(f"draft_layers must be an integer >= 1, got {self.draft_layers!r}")


@dataclass(frozen=True)
class ModelDraft:
    """A separate draft model, named for records (the model itself is given to SpecEngine as `draft_model`)."""

    name: str
    kind: str = field(default="model", init=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ModelDraft name must be a non-empty string, got {self.name!r}")


Draft = PromptLookupDraft | EarlyExitDraft | ModelDraft


@dataclass(frozen=True)
class StepRecord:
    """One speculative step: draft tokens accepted (0..draft_len), tokens emitted (cut at EOS / the limit), times."""

    accepted: int
    tokens: list[int]
    draft_s: float
    verify_s: float


def prompt_lookup(tokens: list[int], draft_len: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to draft_len tokens following the latest earlier occurrence of tokens' last n-gram, longest n first."""
    end = len(tokens)
    for n in range(min(max_ngram, end - 1), min_ngram - 1, -1):
        tail = tokens[end - n:]
        for start in range(end - n - 1, -1, -1):  # latest match first; it must end before the tail does
            if tokens[start:start + n] == tail:
                return tokens[start + n:start + n + draft_len]
    return []


def early_exit_model(model: torch.nn.Module, draft_layers: int) -> torch.nn.Module:
    """A second LLaMA-family model sharing the target's embedding, first draft_layers layers, norm and LM head.

    Built on the meta device (no weights allocated), then every submodule is the target's own object.
    """
    n = model.config.num_hidden_layers
    if isinstance(draft_layers, bool) or not isinstance(draft_layers, int) or not 1 <= draft_layers < n:
        raise ValueError(f"draft_layers must be an integer in [1, {n - 1}] (the target has {n} layers), "
                         f"got {draft_layers!r}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = draft_layers
    with torch.device("meta"):
        draft = type(model)(config)
    draft.model.embed_tokens = model.model.embed_tokens
    draft.model.layers = torch.nn.ModuleList(model.model.layers[:draft_layers])
    draft.model.norm = model.model.norm
    draft.model.rotary_emb = model.model.rotary_emb
    draft.lm_head = model.lm_head
    left = [name for name, t in [*draft.named_parameters(), *draft.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"model: cannot share {left[:3]} with an early-exit draft (not a LLaMA-style layout)")
    return draft.eval()


class SpecEngine:
    """A target model, a draft (config above) and draft_len: what every session of one run shares."""

    def __init__(self, model: torch.nn.Module, draft: Draft = PromptLookupDraft(), draft_len: int = 4,
                 eos_token_id: int | None = None, draft_model: torch.nn.Module | None = None):
        if not isinstance(model, torch.nn.Module):  # a harness LoadedModel
            model = getattr(model, "model", model)
        if not isinstance(model, torch.nn.Module) or not hasattr(getattr(model, "model", None), "layers"):
            raise ValueError(f"model must be a LLaMA-family causal LM (model.model.layers), got {type(model).__name__}")
        if isinstance(draft_len, bool) or not isinstance(draft_len, int) or draft_len < 1:
            raise ValueError(f"draft_len must be an integer >= 1, got {draft_len!r}")
        if not isinstance(draft, (PromptLookupDraft, EarlyExitDraft, ModelDraft)):
            raise ValueError(f"draft must be a PromptLookupDraft, an EarlyExitDraft or a ModelDraft, got {draft!r}")
        if isinstance(draft, ModelDraft):
            draft_model = getattr(draft_model, "model", draft_model) if not isinstance(draft_model, torch.nn.Module) \
                else draft_model
            if not isinstance(draft_model, torch.nn.Module):
                raise ValueError("draft_model: a ModelDraft needs the draft model (a causal LM)")
            if draft_model.config.vocab_size != model.config.vocab_size:
                raise ValueError(f"draft_model: vocabulary of {draft_model.config.vocab_size} tokens, the target's has "
                                 f"{model.config.vocab_size}; a draft must share the target's tokenizer")
        elif draft_model is not None:
            raise ValueError(f"draft_model is only for a ModelDraft, not a {draft.kind} draft")
        attn = model.config._attn_implementation
        if attn not in STOCK_ATTENTION:
            raise ValueError(f"model: attention implementation {attn!r} is not a stock one {STOCK_ATTENTION}; "
                             "run under harness.lm.model.native_attention")
        eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
        self.model, self.draft, self.draft_len = model, draft, draft_len
        self.eos_token_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self.device = next(model.parameters()).device
        if isinstance(draft, ModelDraft):
            self.draft_model = draft_model.eval()
            if self.draft_model.config._attn_implementation not in STOCK_ATTENTION:
                raise ValueError("draft_model: attention implementation is not a stock one; run under "
                                 "harness.lm.model.native_attention")
        else:
            self.draft_model = early_exit_model(model, draft.draft_layers) if isinstance(draft, EarlyExitDraft) else None
        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._draft_cache_kwarg = self._cache_kwarg if self.draft_model is None else \
            "cache" if "cache" in inspect.signature(self.draft_model.forward).parameters else "past_key_values"

    def new_cache(self, draft: bool = False) -> DynamicCache:
        """An empty KV cache for the target (or the early-exit draft)."""
        return DynamicCache(config=(self.draft_model if draft else self.model).config)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: DynamicCache, draft: bool = False, last_only: bool = False):
        """Logits [B, n or 1, vocab] of ids [B, n] after the cache's tokens; the cache grows by n."""
        model = self.draft_model if draft else self.model
        kwarg = self._draft_cache_kwarg if draft else self._cache_kwarg
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1 if last_only else 0, **{kwarg: cache})
        return out.logits

    def tensor(self, ids: list[int]) -> torch.Tensor:
        """ids as a [1, n] batch on the model's device."""
        return torch.tensor([ids], device=self.device)

    def session(self, prompt_ids: list[int], max_new_tokens: int) -> "SpecSession":
        """A new request (SpecSession) on this engine."""
        return SpecSession(self, prompt_ids, max_new_tokens)


def _crop(cache: DynamicCache, length: int) -> None:
    """Keep the cache's first `length` tokens (DynamicCache.crop takes a negative count of tokens to drop)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _check_request(engine: SpecEngine, prompt_ids, max_new_tokens: int) -> list[int]:
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.reshape(-1).tolist()
    if not isinstance(prompt_ids, (list, tuple)) or not prompt_ids:
        raise ValueError("prompt_ids must be a non-empty list of token ids")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    need = len(prompt_ids) + max_new_tokens + engine.draft_len
    if need > engine.max_positions:
        raise ValueError(f"prompt_ids ({len(prompt_ids)}) + max_new_tokens ({max_new_tokens}) + draft_len exceed "
                         f"the model's {engine.max_positions} positions")
    return [int(t) for t in prompt_ids]


class SpecSession:
    """One request decoded speculatively, one `step()` at a time, with its own target (and draft) KV caches.

    Invariant between steps: the target cache holds every token of `ids` but the last (the next pass's input);
    the draft cache holds a prefix of `ids` (an early-exit draft feeds the missing 1-2 tokens first).
    """

    def __init__(self, engine: SpecEngine, prompt_ids: list[int], max_new_tokens: int):
        self.engine = engine
        self.ids = _check_request(engine, prompt_ids, max_new_tokens)
        self.prompt_len = len(self.ids)
        self.max_new_tokens = max_new_tokens
        self.output_ids: list[int] = []
        self.records: list[StepRecord] = []
        self.done = False
        self.prefill_s: float | None = None
        self._target_cache = self._draft_cache = None

    def prefill(self) -> float:
        """Fill the caches with the prompt minus its last token; seconds taken (also kept in prefill_s)."""
        if self.prefill_s is not None:
            return self.prefill_s
        engine, start = self.engine, time.perf_counter()
        self._target_cache = engine.new_cache()
        prefix = engine.tensor(self.ids[:-1])
        if prefix.shape[1]:
            engine.forward(prefix, self._target_cache, last_only=True)
        if engine.draft_model is not None:
            self._draft_cache = engine.new_cache(draft=True)
            if prefix.shape[1]:
                engine.forward(prefix, self._draft_cache, draft=True, last_only=True)
        self.prefill_s = time.perf_counter() - start
        return self.prefill_s

    def _propose(self) -> list[int]:
        engine, g = self.engine, self.engine.draft_len
        if engine.draft_model is None:
            return prompt_lookup(self.ids, g, engine.draft.max_ngram, engine.draft.min_ngram)
        feed, out = self.ids[self._draft_cache.get_seq_length():], []
        for _ in range(g):
            logits = engine.forward(engine.tensor(feed), self._draft_cache, draft=True, last_only=True)
            out.append(int(logits[0, -1].argmax()))
            feed = out[-1:]
        return out

    def step(self) -> StepRecord:
        """One draft of draft_len tokens + one target pass over them; caches cropped to the accepted length."""
        if self.done:
            raise RuntimeError("step() called on a finished session (check .done)")
        self.prefill()
        t0 = time.perf_counter()
        draft = self.propose()
        t1 = time.perf_counter()
        logits = self.engine.forward(self.engine.tensor(self.ids[-1:] + draft), self._target_cache)
        target = logits[0].argmax(-1).tolist()  # target[i]: the target's token after ids + draft[:i]
        return self.commit(draft, target, t1 - t0, time.perf_counter() - t1)

    def propose(self) -> list[int]:
        """The draft's next proposal (at most draft_len tokens; prompt lookup may propose fewer)."""
        return self._propose()

    def commit(self, draft: list[int], target: list[int], draft_s: float, verify_s: float) -> StepRecord:
        """Accept the longest prefix of `draft` equal to `target` (the target's argmax after ids + draft[:i], the
        target cache already holding ids + draft), crop the caches to it, append the target's own next token."""
        n = len(self.ids)
        accepted = 0
        while accepted < len(draft) and draft[accepted] == target[accepted]:
            accepted += 1
        _crop(self._target_cache, n + accepted)
        if self._draft_cache is not None:
            _crop(self._draft_cache, n + accepted)
        tokens = draft[:accepted] + [target[accepted]]
        tokens = tokens[:self.max_new_tokens - len(self.output_ids)]
        for i, tok in enumerate(tokens):
            if tok in self.engine.eos_token_ids:
                tokens = tokens[:i + 1]
                self.done = True
                break
        self.ids += tokens
        self.output_ids += tokens
        self.done = self.done or len(self.output_ids) >= self.max_new_tokens
        record = StepRecord(accepted, tokens, draft_s, verify_s)
        self.records.append(record)
        return record

    def run(self) -> "SpecSession":
        """Step until done; returns self."""
        while not self.done:
            self.step()
        return self

    def trace(self, request_id: str, source: str) -> dict:
        """This request as one line of the acceptance-trace format (reference/scheduling/__init__.py)."""
        if not self.done:
            raise RuntimeError(f"trace() of request {request_id!r} before it finished")
        return {"id": request_id, "source": source, "prompt_len": self.prompt_len,
                "output_len": len(self.output_ids), "draft_len": self.engine.draft_len,
                "accepted": [r.accepted for r in self.records],
                "draft_ms": [round(r.draft_s * 1e3, 4) for r in self.records],
                "verify_ms": [round(r.verify_s * 1e3, 3) for r in self.records]}


def chat_prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of one user message under the tokenizer's chat template, ready for the assistant's reply."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    out = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True, return_dict=True)
    return list(out["input_ids"])


def speculative_decode(engine: SpecEngine, prompt_ids: list[int], max_new_tokens: int) -> SpecSession:
    """A finished session of one request (its output_ids, records, prefill_s)."""
    return SpecSession(engine, prompt_ids, max_new_tokens).run()


@torch.inference_mode()
def greedy_decode(engine: SpecEngine, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """The reference: the target alone, one token per pass, the same prefill / EOS / limit rules as a session."""
    ids = _check_request(engine, prompt_ids, max_new_tokens)
    cache = engine.new_cache()
    if len(ids) > 1:
        engine.forward(engine.tensor(ids[:-1]), cache, last_only=True)
    out: list[int] = []
    while len(out) < max_new_tokens:
        token = int(engine.forward(engine.tensor(ids[-1:]), cache)[0, -1].argmax())
        ids.append(token)
        out.append(token)
        if token in engine.eos_token_ids:
            break
    return out


def _median_s(fn, repeats: int, reset=None, sync=None) -> float:
    """Median wall time of fn() over `repeats` runs after one warm-up; reset() (untimed) after every run.

    sync (torch.cuda.synchronize on a GPU) runs before the clock starts and before it stops, so a run's time is
    its launches plus its kernels: the latency a serving loop waits for.
    """
    times = []
    for i in range(repeats + 1):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        if i:
            times.append(time.perf_counter() - start)
        if reset is not None:
            reset()
    return statistics.median(times)


@torch.inference_mode()
def measure_step_times(engine: SpecEngine, contexts: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
                       repeats: int = 5, batches: tuple[int, ...] = (1,), seed: int = 0,
                       prefill_repeats: int | None = None) -> list[dict]:
    """Median draft / verify / prefill milliseconds per (batch, context), on the engine's device (GPU: synchronized).

    draft: one proposal of draft_len tokens after `context` tokens (early exit: draft_len one-token passes of
    the draft, which holds the context in its cache; prompt lookup: one lookup per sequence over `context`
    random tokens, which rarely match: a full scan, the worst case). verify: one target pass over draft_len + 1
    tokens with a cache of `context` tokens. prefill: a fresh target pass over `context` tokens. Sequences of a
    batch have equal lengths (no padding). Tokens are random: speed does not depend on them. prefill_repeats
    (default: repeats) lets the long prefills run fewer times than the short steps.
    """
    for name, values in (("contexts", contexts), ("batches", batches)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be a non-empty tuple of integers >= 1, got {values!r}")
    prefill_repeats = repeats if prefill_repeats is None else prefill_repeats
    for name, value in (("repeats", repeats), ("prefill_repeats", prefill_repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if max(contexts) + engine.draft_len + 1 > engine.max_positions:
        raise ValueError(f"contexts: {max(contexts)} + draft_len + 1 exceeds the model's {engine.max_positions} positions")
    g, device = engine.draft_len, engine.device
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    vocab = engine.model.config.vocab_size
    rng = random.Random(seed)
    samples = []
    for batch in batches:
        for context in contexts:
            ids = torch.tensor([[rng.randrange(vocab) for _ in range(context)] for _ in range(batch)], device=device)
            holder = {}

            def prefill():
                holder["cache"] = engine.new_cache()
                engine.forward(ids, holder["cache"], last_only=True)

            prefill_s = _median_s(prefill, prefill_repeats, sync=sync)
            cache, step_ids = holder["cache"], ids[:, : g + 1]
            verify_s = _median_s(lambda: engine.forward(step_ids, cache), repeats, lambda: _crop(cache, context), sync)
            if engine.draft_model is None:
                rows = ids.tolist()
                draft = engine.draft
                draft_s = _median_s(lambda: [prompt_lookup(r, g, draft.max_ngram, draft.min_ngram) for r in rows],
                                    repeats)
            else:
                dcache = engine.new_cache(draft=True)
                engine.forward(ids, dcache, draft=True, last_only=True)

                def propose():
                    token = ids[:, -1:]
                    for _ in range(g):
                        token = engine.forward(token, dcache, draft=True, last_only=True)[:, -1].argmax(-1, keepdim=True)

                draft_s = _median_s(propose, repeats, lambda: _crop(dcache, context), sync)
            samples.append({"batch": batch, "context": context, "draft_ms": round(draft_s * 1e3, 4),
                            "verify_ms": round(verify_s * 1e3, 3), "prefill_ms": round(prefill_s * 1e3, 3)})
    return samples


def draft_config(engine: SpecEngine) -> dict:
    """The engine's draft as a JSON-ready dict (kind and parameters)."""
    d = engine.draft
    if d.kind == "model":
        params = {"model": d.name, "draft_layers": engine.draft_model.config.num_hidden_layers,
                  "target_layers": engine.model.config.num_hidden_layers}
    else:
        params = {"max_ngram": d.max_ngram, "min_ngram": d.min_ngram} if d.kind == "prompt_lookup" else \
            {"draft_layers": d.draft_layers, "target_layers": engine.model.config.num_hidden_layers}
    return {"kind": d.kind, **params}
