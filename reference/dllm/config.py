"""Shapes of a LLaDA/Dream-style masked-diffusion transformer (frozen config) and the real models' presets.

LLaDA-8B (Nie et al., arXiv 2502.09992, Table 5; its HF config: d_model 4096, 32 layers, 32 heads with 32 KV heads,
SwiGLU hidden 12288, vocab 126464, RoPE theta 500000, mask id 126336). Dream-7B (Ye et al., 2025; Qwen2.5-7B shapes:
hidden 3584, 28 layers, 28 heads / 4 KV heads, FFN 18944, vocab 152064, theta 1e6, q/k/v biases, mask id 151666,
logits shifted right by one: docs/sparse-dllm.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DLLMConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    mask_id: int
    eos_id: int
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False
    tie_embeddings: bool = False
    shift_logits: bool = False  # Dream: the logit for position p is read at p - 1 (AR-initialised model)
    max_len: int = 8192

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim (d_model / n_heads = {self.head_dim}) must be even for RoPE")
        if self.rope_theta <= 0 or self.norm_eps < 0:
            raise ValueError(f"rope_theta must be > 0 and norm_eps >= 0, got {self.rope_theta}, {self.norm_eps}")
        if not 0 <= self.mask_id < self.vocab_size:
            raise ValueError(f"mask_id ({self.mask_id}) must be a token id below vocab_size ({self.vocab_size})")
        if not 0 <= self.eos_id < self.vocab_size:
            raise ValueError(f"eos_id ({self.eos_id}) must be a token id below vocab_size ({self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


LLADA_8B = DLLMConfig(vocab_size=126464, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=12288,
                      mask_id=126336, eos_id=126081, rope_theta=500000.0, max_len=32768)
DREAM_7B = DLLMConfig(vocab_size=152064, d_model=3584, n_layers=28, n_heads=28, n_kv_heads=4, ffn_dim=18944,
                      mask_id=151666, eos_id=151643, rope_theta=1e6, norm_eps=1e-6, qkv_bias=True,
                      shift_logits=True, max_len=32768)
PRESETS = {"llada-8b": LLADA_8B, "dream-7b": DREAM_7B}
