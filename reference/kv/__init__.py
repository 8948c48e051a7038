"""KV-cache compression methods, one file each; importing this package registers them all."""
from reference.kv.base import METHODS, KVMethod, PrefillLayer, TokenCache, make_method  # noqa: F401
from reference.kv import full, streaming_llm, h2o, snapkv, pyramidkv, tova, knorm, fourier  # noqa: F401,E401
