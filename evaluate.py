"""Evaluate exhubert-jax checkpoints: UAR, WA, macro-F1 with intervals, Table-2 comparisons, audio files, timelines.

The command is exhubert_jax.cli.evaluate (its parser and main); `python evaluate.py --help` lists every option.
"""

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.cli.evaluate", hugepages=True))

from exhubert_jax.cli.evaluate import main, parse_args  # noqa: E402,F401 - `import evaluate` as before
