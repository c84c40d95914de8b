"""`python -m exhubert_jax.data.audit`: audit prepared corpora for leakage (exhubert_jax.data.audit.command)."""

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("exhubert_jax.data.audit.command"))
