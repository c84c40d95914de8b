"""Train ExHuBERT: `--stage finetune` (round-robin over corpora), `--stage expand` (BBE), `--stage transfer`.

The command is exhubert_jax.cli.train (its parser and main); `python train.py --help` lists every option.
"""

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.cli.train", hugepages=True))

from exhubert_jax.cli.train import build_parser, main, parse_args  # noqa: E402,F401 - `import train` as before
