"""Speculative-decoding serving: cost model, discrete-event simulator, scheduling policies (LAPS-SD and baselines).

LAPS-SD: Li, Chen, Li, "Semi-Clairvoyant Scheduling of Speculative Decoding Requests to Minimize LLM Inference
Latency", arXiv 2505.17074 (IJCAI 2025); docs/scheduling.md. Files, one idea each:

- `trace.py`       the acceptance-trace format (below) and its loader
- `cost_model.py`  tokens per verification step and step time from measured draft/verify/prefill times
- `workload.py`    requests: Poisson arrivals, output lengths, acceptance traces replayed per request
- `acceptance.py`  parametric acceptance scenarios (Beta rates, speculative sampling's accepted tokens, drift)
- `predictor.py`   LAPS-SD's line-13 length re-prediction (an error model shrinking with the generated fraction)
- `simulator.py`   continuous batching, token budget, KV capacity, preemption (recompute or swap)
- `policies/`      fcfs, sjf_predicted, las_mlfq, srpt_len_late, laps_sd, srpt_oracle (one file each, a registry)
- `speculative.py` real greedy speculative decoding (prompt-lookup, early-exit or model draft), per-step records

Acceptance-trace format (JSONL, one request per line; `fixtures/scheduling/traces_*.jsonl`):
    {"id": str, "source": str, "prompt_len": int, "output_len": int, "draft_len": int,
     "accepted": [int, ...],      # per speculative step: draft tokens the target accepted, 0..draft_len
     "draft_ms": [float, ...],    # per step: wall time of drafting draft_len tokens
     "verify_ms": [float, ...]}   # per step: wall time of the target's verification pass
A step emits accepted + 1 tokens (the accepted prefix plus the target's own next token); the last step is cut at
output_len, so sum(min(a + 1, left)) == output_len.
"""
