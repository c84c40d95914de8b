"""The training loop's view of its steps: metrics read one step late (so the host never stalls the device),
non-finite steps counted, losses, learning rate and throughput logged, the progress bar moved."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax

from exhubert_jax.evaluation.reports import RunLog
from exhubert_jax.process.progress import progress
from exhubert_jax.training.step import TrainError


def progress_bar(total: int, start: int, unit: str, quiet: bool):
    """The run's progress over its steps (process.progress: a bar on a terminal, periodic lines in a log or a pipe),
    shown by the first process only, nothing when quiet."""
    return progress(total, "train", unit, initial=start, quiet=quiet or jax.process_index() != 0)


class StepMonitor:
    """Queues each step's metrics and settles the previous step's: skip or log, stop after too many bad steps."""

    def __init__(self, log: RunLog, opts: Any, unit: str, schedule: Callable | float | None, start: int,
                 checkpoints: Any):
        self.log, self.opts, self.unit, self.schedule = log, opts, unit, schedule
        self.start, self.t0, self.checkpoints = start, time.perf_counter(), checkpoints
        self.bar = progress_bar(opts.steps, start, unit, opts.quiet)
        self.pending: tuple | None = None
        self.bad_in_row = 0
        self.seconds = self.data_wait = 0.0

    def compiled(self, step: int, compiles: Any, count_before: int) -> None:
        """Log the shapes the step compiled for, if it compiled."""
        if compiles.count != count_before:
            self.log.write("compile", step, dict(shapes=[list(s) for s in compiles.shapes[count_before:]],
                                                 compiles=compiles.count))

    def queue(self, step: int, metrics: dict, batches: list, data_wait: float) -> None:
        """Settle the previous step, then hold this one's metrics until the next call."""
        self.seconds += sum(float(b.n_seconds) for b in batches)
        self.data_wait += data_wait
        self.settle()
        self.pending = (step, metrics, [b.corpus for b in batches])
        self.bar.update(1)

    def learning_rate(self, step: int) -> dict[str, float]:
        """{'lr': the learning rate of the update made at `step`}, or {} when the caller's optimiser gave none."""
        if self.schedule is None:
            return {}
        if not callable(self.schedule):
            return {"lr": float(self.schedule)}
        return {"lr": float(self.schedule((step - 1) // self.opts.accumulate))}

    def settle(self) -> None:
        """Read the queued step's metrics: count non-finite steps, log."""
        if self.pending is None:
            return
        (step, metrics, corpora), self.pending = self.pending, None
        m = jax.device_get(metrics)
        loss, grad_norm = float(m["loss"]), float(m["grad_norm"])
        per_corpus = {f"loss/{c}": float(v) for c, v in zip(corpora, m["losses"])}
        if bool(m["ok"]):
            self.bad_in_row = 0
        else:
            self._skipped(step, corpora, dict(loss=loss, grad_norm=grad_norm, **per_corpus))
        if step % self.opts.log_every == 0 or step == self.opts.steps:
            self._log_train(step, loss, grad_norm, per_corpus)

    def _skipped(self, step: int, corpora: list[str], values: dict) -> None:
        """Log a skipped step; too many in a row stop the run."""
        self.bad_in_row += 1
        self.log.write("skip", step, dict(corpora=corpora, **values))
        if self.bad_in_row >= self.opts.max_bad_steps:
            latest = self.checkpoints.latest_step()
            kept = (f"no checkpoint was saved before it in {self.checkpoints.directory}" if latest is None else
                    f"the latest good checkpoint is step {latest} in {self.checkpoints.directory}")
            raise TrainError(f"{self.bad_in_row} consecutive steps had a non-finite loss or gradient (last at "
                             f"step {step}, corpora {', '.join(corpora)}); stopping: {kept}. Lower --lr, set "
                             "--clip-norm, or check the data.")

    def _log_train(self, step: int, loss: float, grad_norm: float, per_corpus: dict) -> None:
        """One 'train' log line with the rates since the run (or its resume) began, and the bar's postfix."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        done = step - self.start
        rate = f"{self.unit}s_per_s"
        rates = {rate: done / elapsed, "audio_s_per_s": self.seconds / elapsed,
                 "data_wait_s_per_step": self.data_wait / max(done, 1)}
        self.log.write("train", step, dict(loss=loss, grad_norm=grad_norm, **self.learning_rate(step),
                                           **per_corpus, **rates))
        self.bar.set_postfix(loss=f"{loss:.3f}", **{f"{self.unit}s_s": f"{rates[rate]:.2f}"},
                             audio_s_s=f"{rates['audio_s_per_s']:.1f}")

    def close(self) -> None:
        """Close the bar and the log."""
        self.bar.close()
        self.log.close()
