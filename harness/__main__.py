"""Entry point: `python -m harness`."""
import os
import sys

if "mutate" in sys.argv[1:]:
    # One intra-op thread, set before torch is imported (as suites/conftest.py does for the test suite): a mutant's
    # verdict must not depend on the core count, and a forked child inherits no half-built thread pool.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from harness.cli import main  # noqa: E402  (after OMP_NUM_THREADS)

sys.exit(main())
