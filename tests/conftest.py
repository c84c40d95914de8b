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


# The files that take longest (seconds of test time on 2 cores, 2026-12-06), run first: pytest-xdist hands whole files
# to its workers in collection order (--dist loadfile), so with the long ones first the short ones fill in at the
# end and the workers finish together, instead of one running a 60 s file while the other idles.
LONGEST_FIRST = ("test_released.py", "test_adapters.py", "test_train_cli.py", "test_onnx.py", "test_interrupts.py",
                 "test_training.py", "test_augment_training.py", "test_expansion.py", "test_evaluation.py",
                 "test_expanded_export.py", "test_round_math.py", "test_hub.py", "test_degrade.py", "test_rounds.py",
                 "test_train_parity.py", "test_mesh.py")


def pytest_collection_modifyitems(session, config, items):
    """The tests of LONGEST_FIRST's files first, in that order; the others after them, in their own order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_unconfigure(config):
    """Remove this run's cache."""
    shutil.rmtree(_CACHE, ignore_errors=True)
