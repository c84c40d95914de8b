"""The declared command lines and run.json's option keys, as tests/options_snapshot.json records them.

    python tests/options_snapshot.py        # rewrite the snapshot after changing an option on purpose

tests/test_options.py compares the live declarations with the snapshot, so a flag renamed, dropped or given
another default by accident fails there, and the diff of this file shows what changed on purpose."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("options_snapshot.json")


def parser_rows(parser) -> list[dict]:
    """One row per flag: what a user types and what it parses into (help text aside)."""
    rows = []
    for action in parser._actions:
        if not action.option_strings or "--help" in action.option_strings:
            continue
        rows.append({"flags": list(action.option_strings), "dest": action.dest, "action": type(action).__name__,
                     "default": action.default, "choices": list(action.choices) if action.choices else None,
                     "type": getattr(action.type, "__name__", None), "metavar": action.metavar})
    return rows


def current() -> dict:
    """The live declarations: train.py's and evaluate.py's flags, and the option keys every run.json holds."""
    sys.path.insert(0, str(ROOT))
    from exhubert_jax.cli import evaluate, train
    from exhubert_jax.training.options import TrainOptions, run_options

    return json.loads(json.dumps({"train.py": parser_rows(train.build_parser()),
                                  "evaluate.py": parser_rows(evaluate.build_parser()),
                                  "run.json options": sorted(run_options(TrainOptions()))}, default=str))


def dumps(snapshot: dict) -> str:
    """The snapshot as JSON with one flag per line, so its diff reads flag by flag."""
    parts = []
    for name, rows in snapshot.items():
        items = ",\n".join(f"  {json.dumps(row)}" for row in rows)
        parts.append(f" {json.dumps(name)}: [\n{items}\n ]")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    """Rewrite the snapshot from the live declarations."""
    SNAPSHOT.write_text(dumps(current()))
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
