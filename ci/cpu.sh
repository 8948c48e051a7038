#!/usr/bin/env bash
# The CPU tier in an environment that already has the project installed (see README "The two commands").
# .ci/run is the same from scratch on a clean clone. The GPU-runner job (ci/gpu.sh) comes with the Triton kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
TRITON_INTERPRET=1 python -m pytest suites/ "$@"
