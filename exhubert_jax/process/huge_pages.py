"""Process-level CPU settings: back XLA's large per-step buffers with transparent huge pages (glibc malloc).

XLA on CPU allocates each execution's temporaries (activations, residuals, stacked layer gradients: GBs for a
HuBERT Large training step) as one fresh block. glibc serves blocks that large with a new mmap, so every step
touches every page again: ~650,000 minor page faults and ~1 s of kernel time per HuBERT Large step at 2 x 3 s.
glibc >= 2.35 can ask for transparent huge pages on such blocks (tunable glibc.malloc.hugetlb=1), which cuts the
faults ~300x. Tunables are read only when a process starts, hence the re-exec.
"""

from __future__ import annotations

import os
import platform
import sys

from exhubert_jax.process.interrupts import blocked

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "EXHUBERT_NO_HUGEPAGES"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_at_least(major: int, minor: int) -> bool:
    """Whether this Python runs on glibc >= major.minor."""
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return False
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return parts >= (major, minor)


def _thp_available() -> bool:
    """Whether the kernel grants transparent huge pages on request (mode 'always' or 'madvise')."""
    try:
        with open(THP_SETTING) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def hugepage_env(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to restart with, or None when it is already set, unsupported or opted out."""
    current = environ.get("GLIBC_TUNABLES", "")
    if OPT_OUT in environ or "glibc.malloc.hugetlb" in current:
        return None
    if not sys.platform.startswith("linux") or not _glibc_at_least(2, 35) or not _thp_available():
        return None
    return {**environ, "GLIBC_TUNABLES": f"{current}:{TUNABLE}" if current else TUNABLE}


def use_hugepage_malloc() -> None:
    """Restart this script with huge-page malloc (CLI entry points only; call before any work; no-op if unneeded)."""
    env = hugepage_env(dict(os.environ))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with blocked():  # Ctrl-C or SIGTERM from here on waits, pending, for the restarted process's handlers
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def hugepage_malloc_active() -> bool:
    """Whether this process was started with the huge-page malloc tunable."""
    return "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")
