"""The KV-cache compression family: NIAH, RULER and LongBench (data, prompts, scoring), their sweeps of every KV
method on a real model (run_niah, run_tasks), their boards and headline, their rows of the Pareto page, and
`python -m harness compare` (a method variant against its default)."""
