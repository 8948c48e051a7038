"""GPU step times for the speculative-decoding cost model: draft, verify and prefill of SmolLM2-135M's shapes.

    python -m harness calibrate-sd --device cuda --out fixtures/scheduling/step_times_h100.json
    python -m harness calibrate-sd --device cpu --out /tmp/smoke.json          # tiny shapes, a smoke test

(`python -m harness.scheduling.calibrate_sd` takes the same options.)

A LlamaForCausalLM with the real model's shapes and RANDOM weights (speed does not depend on the weights), the
early-exit draft of reference/scheduling/speculative.py (its first draft_layers layers + norm + LM head), and
`measure_step_times` from the same module: for each (batch, context), with `batch` sequences holding `context`
tokens each in their KV caches, the median of `repeats` synchronized runs after a warm-up of
- draft: draft_len one-token passes of the draft (the draft step of Leviathan et al. 2023, arXiv 2211.17192),
- verify: one target pass over draft_len + 1 tokens,
- prefill: one target pass over `context` fresh tokens.
The output has the format of fixtures/scheduling/step_times_cpu.json, which
reference/scheduling/cost_model.py fits.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from harness import argtypes
from harness.provenance import device_info, git_sha
from reference.scheduling.speculative import EarlyExitDraft, SpecEngine, measure_step_times

SHAPES = {
    # SmolLM2-135M(-Instruct): HuggingFaceTB/SmolLM2-135M config.json
    "smollm2": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    head_dim=64, intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192,
                    rope_theta=100000.0, tie_word_embeddings=True),
    # for smoke tests on a CPU
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 intermediate_size=128, vocab_size=1024, max_position_embeddings=2048, tie_word_embeddings=True),
}
DEFAULT_DRAFT_LAYERS = EarlyExitDraft().draft_layers


def random_model(shape: str = "smollm2", dtype: torch.dtype = torch.bfloat16, device: str = "cuda", seed: int = 0):
    """A LlamaForCausalLM of SHAPES[shape] with random weights, in eval mode, on `device` in `dtype`, SDPA attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {sorted(SHAPES)}, got {shape!r}")
    config = LlamaConfig(**SHAPES[shape], attn_implementation="sdpa", bos_token_id=1, eos_token_id=2,
                         pad_token_id=2)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype).eval()


def gpu_step_times(shape: str = "smollm2", batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
                   contexts: tuple[int, ...] = (256, 512, 1024, 2048, 4096), draft_layers: int = DEFAULT_DRAFT_LAYERS,
                   draft_len: int = 4, dtype: torch.dtype = torch.bfloat16, device: str = "cuda",
                   repeats: int = 10) -> list[dict]:
    """Samples [{"batch", "context", "draft_ms", "verify_ms", "prefill_ms"}] of the random `shape` model."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r}: torch.cuda.is_available() is False (torch {torch.__version__})")
    engine = SpecEngine(random_model(shape, dtype, device), EarlyExitDraft(draft_layers), draft_len)
    # discarded: the first passes pay for cuBLAS handles, kernel selection and the allocator's first blocks
    measure_step_times(engine, (min(contexts),), 2, (min(batches),))
    return measure_step_times(engine, tuple(contexts), repeats, tuple(batches))


def _arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--device", default="cuda", help="cuda (the calibration) or cpu (tiny shapes: a smoke test)")
    p.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: smollm2 on cuda, tiny on cpu")
    p.add_argument("--batches", type=argtypes.int_list(minimum=1), default=None,
                   help="default: 1,2,4,8,16,32 on cuda, 1,2 on cpu")
    p.add_argument("--contexts", type=argtypes.int_list(minimum=1), default=None,
                   help="default: 256,512,1024,2048,4096 on cuda, 32,64 on cpu")
    p.add_argument("--draft-layers", type=argtypes.integer(minimum=1), default=None,
                   help=f"default: {DEFAULT_DRAFT_LAYERS} (tiny: 1)")
    p.add_argument("--draft-len", type=argtypes.integer(minimum=1), default=4)
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None,
                   help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--repeats", type=argtypes.integer(minimum=1), default=None, help="default: 10 on cuda, 2 on cpu")
    p.add_argument("--out", required=True, type=argtypes.output_file,
                   help="JSON file to write (format of fixtures/scheduling/step_times_cpu.json)")
    return p


HELP = "GPU step times (draft, verify, prefill) for the speculative-decoding cost model"


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `calibrate-sd` on the subparsers of the harness CLI (harness/cli.py)."""
    return _arguments(sub.add_parser("calibrate-sd", help=HELP, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter))


def problem(args) -> str | None:
    """What makes the arguments unusable before anything is built (argparse's "argument --x: ..." form), or None."""
    device = argtypes.device_problem(args.device)  # checked here, not as a type: the default needs no GPU to parse
    if device:
        return f"argument --device: {device}"
    shape = args.shape or ("smollm2" if args.device.startswith("cuda") else "tiny")
    if args.draft_layers is not None and args.draft_layers >= SHAPES[shape]["num_hidden_layers"]:
        return (f"argument --draft-layers: must be below the {shape} model's "
                f"{SHAPES[shape]['num_hidden_layers']} layers, got {args.draft_layers}")
    return None


def cmd_calibrate(args) -> int:
    """`python -m harness calibrate-sd`: measure and write the step times; an unusable argument raises ValueError
    naming it (the CLI prints it on one line, exit 2)."""
    if (bad := problem(args)) is not None:
        raise ValueError(bad)
    gpu = args.device.startswith("cuda")
    shape = args.shape or ("smollm2" if gpu else "tiny")
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    draft_layers = args.draft_layers or (DEFAULT_DRAFT_LAYERS if shape == "smollm2" else 1)
    batches = args.batches or ((1, 2, 4, 8, 16, 32) if gpu else (1, 2))
    contexts = args.contexts or ((256, 512, 1024, 2048, 4096) if gpu else (32, 64))
    repeats = args.repeats or (10 if gpu else 2)
    samples = gpu_step_times(shape, batches, contexts, draft_layers, args.draft_len, dtype, args.device, repeats)
    n_layers = SHAPES[shape]["num_hidden_layers"]
    out = {"device": device_info(args.device), "torch": torch.__version__, "model": shape, "weights": "random",
           "dtype": str(dtype).removeprefix("torch."), "git": git_sha(),
           "draft": {"kind": "early_exit", "draft_layers": draft_layers, "target_layers": n_layers},
           "draft_len": args.draft_len, "repeats": repeats, "samples": samples}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for s in samples:
        print(f"batch {s['batch']:3d} context {s['context']:5d}: draft {s['draft_ms']:8.3f} ms  "
              f"verify {s['verify_ms']:8.3f} ms  prefill {s['prefill_ms']:9.3f} ms")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The same options as a parser of its own, for `python -m harness.scheduling.calibrate_sd`."""
    return _arguments(argparse.ArgumentParser(prog="python -m harness calibrate-sd", description=__doc__,
                                              formatter_class=argparse.RawDescriptionHelpFormatter))


def main(argv=None) -> int:
    """`python -m harness.scheduling.calibrate_sd ...`, the same command as `python -m harness calibrate-sd ...`."""
    return argtypes.run_main(build_parser(), problem, cmd_calibrate, argv)


if __name__ == "__main__":
    sys.exit(main())
