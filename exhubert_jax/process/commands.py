"""The one entry point of every command: a user error is `error: ...` (exit 2), Ctrl-C or SIGTERM at any moment is
`interrupted: ...; nothing half-written` (exit 130, or 143 for SIGTERM), each one line without a traceback.

Every command's `main` is decorated with `command`; its file starts with `if __name__ == "__main__": ...
run_command(...)`, so Ctrl-C is answered from the first line on, even while its heavy imports run."""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Callable

from exhubert_jax.errors import ExhubertError
from exhubert_jax.process import interrupts

USER_ERROR = 2
_depth = [0]  # commands running in this process (protocol runs train.py's main inside its own)


# Commands whose documented name is not their module's: the root scripts, and the short -m names kept for them.
PROGS = {
    "exhubert_jax.cli.train": "train.py", "exhubert_jax.cli.evaluate": "evaluate.py",
    "exhubert_jax.protocols.runner": "python -m exhubert_jax.protocol",
    "exhubert_jax.inference.embedding_files": "python -m exhubert_jax.embed",
    "exhubert_jax.model.expansion": "python -m exhubert_jax.expansion",
    "exhubert_jax.data.prepare.command": "python -m exhubert_jax.data.prepare",
}


def prog(module: str) -> str:
    """How a user starts the command in `module`: train.py, evaluate.py, or python -m PACKAGE.MODULE."""
    module = module.removesuffix(".__main__")
    return PROGS.get(module, f"python -m {module}")


def interrupted_line(error: BaseException, name: str) -> str:
    """The one line for a Ctrl-C or SIGTERM: what it stopped (an Interrupted's words, else that the command stopped),
    naming the signal when it was not Ctrl-C."""
    what = str(error) if isinstance(error, interrupts.Interrupted) and str(error) else f"{name} stopped"
    by = "" if interrupts.stop_name() == "Ctrl-C" else f" by {interrupts.stop_name()}"
    return f"interrupted{by}: {what}; nothing half-written"


def interrupted_status() -> int:
    """The exit status of a stopped command: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM), as a shell reports."""
    return 128 + interrupts.stop_signal()


def settle() -> None:
    """Wait for XLA work already dispatched (exiting while it runs can crash the process)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return
    for array in jax.live_arrays():
        try:
            array.block_until_ready()
        except Exception:  # noqa: BLE001 - a deleted or donated buffer has nothing left to wait for
            pass


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a command's main(argv) -> exit code: Ctrl-C is deferred to safe points while it runs, and a user
    error or Ctrl-C becomes its one line and exit code. Inside another command a Ctrl-C goes on to that one."""
    name = prog(main.__module__)

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        _depth[0] += 1
        try:
            with interrupts.deferred():
                try:
                    return main(*args, **kwargs)
                except ExhubertError as e:
                    print(f"error: {e}", file=sys.stderr, flush=True)
                    return USER_ERROR
                except KeyboardInterrupt as e:
                    if _depth[0] > 1:
                        raise
                    with interrupts.held(drop=True):  # a second Ctrl-C changes nothing now
                        settle()
                        print(interrupted_line(e, name), file=sys.stderr, flush=True)
                    return interrupted_status()
        finally:
            _depth[0] -= 1

    return run


def run_command(module: str, hugepages: bool = False) -> int:
    """`python -m MODULE` (or `python MODULE.py`): import it with Ctrl-C and SIGTERM deferred, run its main, and
    ignore both while the interpreter shuts down. hugepages: restart once with huge-page malloc first
    (process.huge_pages; a stop signal that arrives meanwhile is held back and answered by the restarted process)."""
    try:
        with interrupts.deferred(then_ignore=True):
            if hugepages:
                from exhubert_jax.process.huge_pages import use_hugepage_malloc

                use_hugepage_malloc()
            return importlib.import_module(module).main()
    except KeyboardInterrupt as e:  # during the restart or the imports, before main ran
        print(interrupted_line(e, prog(module)), file=sys.stderr, flush=True)
        return interrupted_status()


def earlier_name(name: str, target: str, hugepages: bool = False) -> Callable[[str], object]:
    """For a module kept at a command's earlier name: run `target` when started as `python -m` (name '__main__'),
    else a module __getattr__ that lends the target's names, so earlier imports still resolve."""
    if name == "__main__":
        sys.exit(run_command(target, hugepages=hugepages))

    def lend(attribute: str) -> object:
        return getattr(importlib.import_module(target), attribute)

    return lend
