"""The transformers plug-in: loading a LLaMA-family model (model), a KV method inside its cache through public
extension points (kv_cache), and the prefill-compress-decode flow the KV suites and the real serving loop use
(generate)."""
