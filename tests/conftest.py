"""Suite-wide settings: one XLA compilation cache per test run, shared with the CLIs the tests start.

Many tests build the same tiny models and train them for a few steps; each `train()` makes fresh jitted closures,
so without a cache every test recompiles identical programs. JAX's persistent cache keys a program by its HLO,
which makes the second compilation of the same program a file read. The cache lives in a temporary folder that is
removed at the end of the run, so no test ever sees another run's programs.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix="exhubert-jax-test-xla-cache-")
# Environment variables, so that the CLIs and worker processes the tests start share the cache too.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# No periodic progress lines (exhubert_jax.process.progress) in the stderr that tests read line by line, however
# slow the machine; tests/test_progress.py sets its own interval.
os.environ.setdefault("EXHUBERT_PROGRESS_SECONDS", "3600")
# LLVM's optimisation passes take about half of a tiny model's compile time on the CPU. Without them the programs
# are the same HLO and differ from the optimised build only at float rounding (6e-8 at most on the tiny model's
# gradients), far inside every tolerance here; bitwise checks compare runs compiled the same way. Users' programs
# keep XLA's default level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def pytest_unconfigure(config):
    """Remove this run's cache."""
    shutil.rmtree(_CACHE, ignore_errors=True)
