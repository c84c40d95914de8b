"""The round-robin trainer: step, maybe evaluate, maybe checkpoint, stop early or on interrupt; resumes exactly.

A step is one round over every training corpus by default (one batch each, gradients averaged, one AdamW update:
paper section 4.1); `update="per-corpus"` makes one update per corpus batch instead.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import optax
from jax.sharding import Mesh

from . import runconfig
from .data.batching import RoundRobin
from .data.card import CardProtocol
from .data.prefetch import Prefetch
from .data.audio import SAMPLE_RATE
from .interrupts import Interrupted, held
from .optim import make_optimizer, make_schedule
from .options import TrainOptions
from .predict import Predictor, validation_uar
from .reporting import RunLog, plot_uar_curve
from .run_checkpoints import BEST, FINAL, RunCheckpoints
from .workdir_lock import workdir_lock
from .training import (RoundStep, TrainError, TrainState, batch_arrays, check_batch_size, create_state, data_shard,
                       local_size, make_train_step, pad_rows, to_device)

@dataclasses.dataclass
class TrainResult:
    """What train() returns."""

    state: TrainState
    final_uar: dict[str, float]
    best: dict | None
    history: list[dict]
    compiles: int
    eval_compiles: int
    bucket_shapes: list[tuple]
    resumed_from: int | None
    finished: bool
    early_stopped: bool = False


def schedule_for(opts: TrainOptions) -> Any:
    """The learning rate per optimizer update: with gradient accumulation, --steps train steps make
    ceil(steps / accumulate) updates, so the schedule (and its warm-up) spans those updates, not the steps."""
    updates = -(-opts.steps // opts.accumulate)
    return make_schedule(opts.schedule, opts.lr, updates, opts.warmup_steps // opts.accumulate)


def default_optimizer(labels: Any, opts: TrainOptions) -> optax.GradientTransformation:
    """The paper's AdamW over schedule_for(opts), with the options' weight decay, clipping and accumulation."""
    return make_optimizer(labels, schedule_for(opts), weight_decay=opts.weight_decay, clip_norm=opts.clip_norm,
                          accumulate=opts.accumulate)


def card_buckets(max_seconds: float) -> tuple[int, ...]:
    """The model card's input protocol: every clip padded or cropped to exactly max_seconds."""
    return (int(round(max_seconds * SAMPLE_RATE)),)


class Trainer:
    """One training run over round-robin corpora in a workdir (checkpoints/, best/, final/, run.json, logs).

    Multi-process (a mesh over the devices of several processes, after jax.distributed.initialize): every process
    plans the same global batches and reads only its rows; all write the Orbax checkpoints together; process 0 alone
    writes run.json, logs, exports and messages.
    """

    def __init__(self, model: Any, params: Any, labels: Any, train_sources: Mapping[str, Any],
                 val_sources: Mapping[str, Any], workdir: str | Path, opts: TrainOptions, *,
                 mesh: Mesh | None = None, say: Callable[[str], None] = print, run_info: Mapping | None = None,
                 tx: optax.GradientTransformation | None = None, schedule: Callable | float | None = None):
        opts.validate()
        check_batch_size(opts.batch_size, mesh)
        if jax.process_count() > 1 and data_shard(mesh) is None:
            raise TrainError(f"{jax.process_count()} processes need a mesh over the devices of all of them "
                             "(training.make_mesh())")
        self.lead = jax.process_index() == 0  # writes run.json, logs, exports; prints
        say = say if self.lead else (lambda message: None)
        self.model, self.labels, self.opts, self.mesh, self.say = model, labels, opts, mesh, say
        self.val_sources = val_sources
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if tx is None:
            tx, schedule = default_optimizer(labels, opts), schedule_for(opts)
        self.schedule = schedule  # what the logs show (a caller's optimiser may give none: then no lr is logged)
        if opts.update == "round":
            self.round = RoundStep(model, tx, labels, mesh=mesh, dim_loss=opts.dim_loss)
            self.compiles = self.round.counter
        else:
            self.step_fn, self.compiles = make_train_step(model, tx, labels, mesh=mesh, dim_loss=opts.dim_loss)
        self.predictor = Predictor(model, mesh)
        self.state = create_state(params, tx, opts.seed, mesh)
        self.ckpts = RunCheckpoints(self.workdir, opts.keep, say=say)
        buckets = card_buckets(opts.max_seconds) if opts.input_mode == "card" else None
        card = CardProtocol(max_length=buckets[0]) if buckets else None
        self.n_corpora = len(train_sources)
        # batches are made ahead in a thread while the device runs the step; state() stays exact for resume
        self.stream = Prefetch(RoundRobin(dict(train_sources), opts.batch_size, opts.max_seconds, opts.seed, buckets,
                                          shard=data_shard(mesh), card=card), depth=2)
        self.run_document = runconfig.build(
            {**dataclasses.asdict(opts), "task_weights": list(opts.task_weights)}, model.config.to_dict(),
            {n: getattr(s, "fingerprint", None) for n, s in sorted(train_sources.items())}, **dict(run_info or {}))
        self.best: dict | None = None
        self.history: list[dict] = []
        self.resumed_from: int | None = None
        self.early_stopped = False
        self.final_uar: dict[str, float] = {}
        self.sums = None  # the round step's gradient sums, reused across rounds
        self.pending = None  # metrics of the previous step, read one step late so the host does not stall the device
        self.bad_in_row = 0
        self.seconds = self.data_wait = 0.0

    # ---------------------------------------------------------------------------------------------------- run
    def run(self) -> TrainResult:
        """Train to opts.steps (or the early stop), resuming from the newest checkpoint of the workdir."""
        start = self._resume()
        if self.lead or self.resumed_from is not None:  # every process refuses a resume with other settings
            runconfig.write_or_check(self.workdir, self.run_document, resuming=self.resumed_from is not None)
        opts = self.opts
        self.log = RunLog(self.workdir, active=self.lead)
        self.t0, self.start = time.perf_counter(), start
        self.data_pos = self.stream.state()
        last_saved = self.resumed_from
        bar = self._progress(start)
        ckpt_every = opts.checkpoint_every or opts.eval_every
        try:
            for step in range(start + 1, opts.steps + 1):
                if self.early_stopped:
                    break
                self._train_step(step)
                bar.update(1)
                if step % opts.eval_every == 0 or step == opts.steps:
                    self._evaluate(step)
                if (step % ckpt_every == 0 or step in (opts.steps, opts.stop_after) or self.early_stopped):
                    self._checkpoint(step)
                    last_saved = step
                if step == opts.stop_after:
                    break
            self._settle()
        except KeyboardInterrupt:
            raise self._on_interrupt(last_saved) from None
        finally:
            self.stream.close()
            bar.close()
            self.log.close()
            self.ckpts.close()
        return self._finish()

    # ------------------------------------------------------------------------------------------------- pieces
    def _resume(self) -> int:
        """Restore state, data position, best and history from the newest checkpoint; the step to continue from."""
        latest = self.ckpts.latest_step()
        if latest is not None:
            restored, meta = self.ckpts.restore(self.state.as_dict(), latest)
            self.state = TrainState.from_dict(restored)
            latest = int(jax.device_get(self.state.step))  # the step restored: older when the newest was damaged
            self.stream.load_state(meta["data"])
            self.best, self.history = meta.get("best"), list(meta.get("history", []))
            self.early_stopped = bool(meta.get("early_stopped", False))
            self.resumed_from = latest
            self.say(f"resuming from {self.ckpts.directory}/{latest} (step {latest} of {self.opts.steps})")
        return int(jax.device_get(self.state.step))

    def _next_batches(self) -> list:
        """One batch per corpus (a round) or the next corpus's batch (per-corpus updates); counts the time the loop
        waited for them."""
        batches = []
        for _ in range(self.n_corpora if self.opts.update == "round" else 1):
            batches.append(next(self.stream))
            self.data_wait += self.stream.wait_s
        return batches

    def _train_step(self, step: int) -> None:
        """Run one step (round or corpus batch) and queue its metrics."""
        batches = self._next_batches()
        multiple = local_size(self.mesh)
        arrays = [batch_arrays(b, self.opts.label_space, self.opts.input_mode, self.model.config.dimensions,
                               self.opts.task_weights) for b in batches]
        device = [to_device(pad_rows(a, multiple), self.mesh) for a in arrays]
        n_before = self.compiles.count
        if self.opts.update == "round":
            self.state, self.sums, metrics = self.round(self.state, device, self.sums)
        else:
            self.state, metrics = self.step_fn(self.state, device[0])
            metrics = dict(metrics, losses=[metrics["loss"]])
        self.data_pos = self.stream.state()
        if self.compiles.count != n_before:
            self.log.write("compile", step, dict(shapes=[list(s) for s in self.compiles.shapes[n_before:]],
                                                 compiles=self.compiles.count))
        self.seconds += sum(float(b.n_seconds) for b in batches)
        self._settle()
        self.pending = (step, metrics, [b.corpus for b in batches])

    def _learning_rate(self, step: int) -> dict[str, float]:
        """{'lr': the learning rate of the update made at `step`}, or {} when the caller's optimiser gave none."""
        if self.schedule is None:
            return {}
        if not callable(self.schedule):
            return {"lr": float(self.schedule)}
        return {"lr": float(self.schedule((step - 1) // self.opts.accumulate))}

    def _settle(self) -> None:
        """Read the queued step's metrics: count non-finite steps, log."""
        if self.pending is None:
            return
        (step, metrics, corpora), self.pending = self.pending, None
        m = jax.device_get(metrics)
        loss, grad_norm = float(m["loss"]), float(m["grad_norm"])
        per_corpus = {f"loss/{c}": float(v) for c, v in zip(corpora, m["losses"])}
        if not bool(m["ok"]):
            self.bad_in_row += 1
            self.log.write("skip", step, dict(corpora=corpora, loss=loss, grad_norm=grad_norm, **per_corpus))
            if self.bad_in_row >= self.opts.max_bad_steps:
                raise TrainError(f"{self.bad_in_row} consecutive steps had a non-finite loss or gradient (last at "
                                 f"step {step}, corpora {', '.join(corpora)}); stopping. The latest good checkpoint "
                                 f"is in {self.ckpts.directory}. Lower --lr, set --clip-norm, or check the data.")
        else:
            self.bad_in_row = 0
        if step % self.opts.log_every == 0 or step == self.opts.steps:
            elapsed = max(time.perf_counter() - self.t0, 1e-9)
            unit = "rounds" if self.opts.update == "round" else "steps"
            rates = {f"{unit}_per_s": (step - self.start) / elapsed, "audio_s_per_s": self.seconds / elapsed,
                     "data_wait_s_per_step": self.data_wait / max(step - self.start, 1)}
            self.log.write("train", step, dict(loss=loss, grad_norm=grad_norm, **self._learning_rate(step),
                                               **per_corpus, **rates))
            self.bar.set_postfix(loss=f"{loss:.3f}", **{f"{unit}_s": f"{rates[f'{unit}_per_s']:.2f}"},
                                 audio_s_s=f"{rates['audio_s_per_s']:.1f}")

    def _validate(self) -> dict[str, float]:
        """Mean and per-corpus validation UAR of the current parameters."""
        return validation_uar(self.predictor, self.state.params, self.val_sources, batch_size=self.opts.batch_size,
                              max_seconds=self.opts.max_seconds, label_space=self.opts.label_space,
                              input_mode=self.opts.input_mode)

    def _evaluate(self, step: int) -> None:
        """Validate; export best/ on a new best mean UAR; decide an early stop."""
        self._settle()
        uars = self._validate()
        self.history.append(dict(step=step, **uars))
        self.log.write("eval", step, {(f"ccc/{k[:-4]}" if k.endswith(" ccc") else f"uar/{k}"): v
                                      for k, v in uars.items()})
        what = "UAR" if not self.model.config.dimensions else "CCC" if not self.model.config.num_labels else "UAR/CCC"
        self.say(f"step {step}: validation {what} " + ", ".join(f"{k} {v:.3f}" for k, v in uars.items()))
        if self.best is None or uars["mean"] > self.best["mean"]:
            self.best = dict(step=step, **uars)
            if self.lead:
                self.ckpts.export(BEST, self.model, self.state.params, self.best)
        self.final_uar = uars
        since_best = sum(h["step"] > self.best["step"] for h in self.history)
        if self.opts.patience is not None and since_best >= self.opts.patience and step < self.opts.steps:
            self.early_stopped = True
            self.say(f"early stop at step {step}: no better mean validation UAR in {since_best} evaluations "
                     f"(best {self.best['mean']:.4f} at step {self.best['step']})")

    def _checkpoint(self, step: int) -> None:
        """Save state, data position, best, history and the early-stop flag."""
        self._settle()
        self.ckpts.save(step, self.state.as_dict(), dict(data=self.data_pos, best=self.best, history=self.history,
                                                         early_stopped=self.early_stopped))

    def _on_interrupt(self, last_saved: int | None) -> Interrupted:
        """Ctrl-C: checkpoint the last finished step if it is not saved yet; what was kept, for the one line."""
        try:
            with held():  # the checkpoint is written whole, whatever Ctrl-C follows
                step_now = int(jax.device_get(self.state.step))
                if step_now != last_saved and step_now > 0:
                    self._checkpoint(step_now)
        except RuntimeError:  # interrupted inside the step: its donated input is gone, keep the last checkpoint
            step_now = None
        if step_now == 0 or (step_now is None and last_saved is None):
            return Interrupted(f"before the first step; no checkpoint in {self.ckpts.directory}, the same command "
                               "starts afresh")
        if step_now is None:
            return Interrupted(f"during a step; resuming will start from the last checkpoint (step {last_saved}) "
                               f"in {self.ckpts.directory}")
        return Interrupted(f"at step {step_now}; checkpoint saved in {self.ckpts.directory}. Run the same command "
                           "to resume")

    def _finish(self) -> TrainResult:
        """Export final/ (and the UAR curve) once the run has finished."""
        step = int(jax.device_get(self.state.step))
        finished = step >= self.opts.steps or self.early_stopped
        if finished:
            if not self.final_uar:
                last = self.history[-1] if self.history else dict(self._validate())
                self.final_uar = {k: v for k, v in last.items() if k != "step"}
            if self.lead:
                self.ckpts.export(FINAL, self.model, self.state.params, dict(step=step, **self.final_uar))
            if self.lead and self.opts.curve_png and self.history:
                plot_uar_curve(self.history, self.workdir / "uar_curve.png")
        return TrainResult(state=self.state, final_uar=self.final_uar, best=self.best, history=self.history,
                           compiles=self.compiles.count, eval_compiles=len(self.predictor.compiled_shapes),
                           bucket_shapes=list(self.compiles.shapes), resumed_from=self.resumed_from,
                           finished=finished, early_stopped=self.early_stopped)

    def _progress(self, start: int):
        """A tqdm bar (disabled when quiet or not on a TTY)."""
        from tqdm import tqdm

        disable = self.opts.quiet or not sys.stderr.isatty()
        unit = "round" if self.opts.update == "round" else "step"
        self.bar = tqdm(total=self.opts.steps, initial=start, desc="train", unit=unit, disable=disable,
                        dynamic_ncols=True)
        return self.bar


def train(model: Any, params: Any, labels: Any, train_sources: Mapping[str, Any], val_sources: Mapping[str, Any],
          workdir: str | Path, opts: TrainOptions, *, mesh: Mesh | None = None,
          say: Callable[[str], None] = print, run_info: Mapping | None = None,
          tx: optax.GradientTransformation | None = None,
          schedule: Callable | float | None = None) -> TrainResult:
    """Round-robin training with validation, best/latest checkpoints, and exact resume from {workdir}/checkpoints.
    `tx` replaces the default optimiser (default_optimizer: the paper's AdamW); `schedule`, its learning rate per
    update, is only logged. The workdir is locked for the run: a second run in it is refused while this one lives."""
    with workdir_lock(workdir, active=jax.process_index() == 0):
        return Trainer(model, params, labels, train_sources, val_sources, workdir, opts, mesh=mesh, say=say,
                       run_info=run_info, tx=tx, schedule=schedule).run()
