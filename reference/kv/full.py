"""Full cache: every token kept (the baseline every method is compared with)."""
from __future__ import annotations

from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer, TokenCache


@METHODS.register("full")
@dataclass
class Full(KVMethod):
    order = 0  # listing order

    def compress(self, layer: PrefillLayer) -> TokenCache:
        return TokenCache(layer.keys.clone(), layer.values.clone())
