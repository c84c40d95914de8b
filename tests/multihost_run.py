"""train.py for the multi-process test: `python tests/multihost_run.py STOP RESULT.json TRAIN.PY-FLAGS...` stops
(checkpointed) after step STOP ('-': never) and writes this process's validation history and step times."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

import exhubert_jax.training.stages as stages  # noqa: E402
import exhubert_jax.training.loop as train_loop  # noqa: E402
import train  # noqa: E402


def main() -> int:
    stop, out, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    options, fit, step = stages.train_options, train_loop.train, train_loop.Trainer._train_step
    if stop != "-":
        stages.train_options = lambda *a, **k: dataclasses.replace(options(*a, **k), stop_after=int(stop))
    step_s: list[float] = []

    def timed_step(self, n):
        t = time.perf_counter()
        step(self, n)
        jax.block_until_ready(self.state.params)
        step_s.append(time.perf_counter() - t)

    def recorded(*a, **k):
        result = fit(*a, **k)
        out.write_text(json.dumps(dict(process=jax.process_index(), history=result.history,
                                       final_uar=result.final_uar, step_s=step_s)))
        return result

    train_loop.Trainer._train_step, train_loop.train = timed_step, recorded
    return train.main(argv)


if __name__ == "__main__":
    sys.exit(main())
