"""The round-robin trainer: step, maybe evaluate, maybe checkpoint, stop early or on interrupt; resumes exactly.

A step is one round over every training corpus by default (one batch each, gradients averaged, one AdamW update:
paper section 4.1); `update="per-corpus"` makes one update per corpus batch instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import optax
from jax.sharding import Mesh

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.data.loading.batching import RoundRobin
from exhubert_jax.data.loading.devices import batch_arrays, data_shard, local_size, pad_rows, to_device
from exhubert_jax.data.loading.input_protocol import CardProtocol
from exhubert_jax.data.loading.prefetch import Prefetch
from exhubert_jax.evaluation.predict import Predictor, validation_uar
from exhubert_jax.evaluation.reports import RunLog, plot_uar_curve
from exhubert_jax.evaluation.scoring import model_class_names
from exhubert_jax.evaluation.split_caveats import MARK, split_caveats
from exhubert_jax.process.interrupts import Interrupted, checkpoint_requests, held
from exhubert_jax.process.run_folders import BEST, FINAL
from exhubert_jax.process.workdir_lock import workdir_lock
from exhubert_jax.training import run_record as runconfig
from exhubert_jax.training.augmentation import augmentation_for
from exhubert_jax.training.checkpoints import RunCheckpoints
from exhubert_jax.training.imbalance import BatchWeights
from exhubert_jax.training.monitor import StepMonitor
from exhubert_jax.training.optimizer import make_optimizer, make_schedule
from exhubert_jax.training.options import TrainOptions, run_options
from exhubert_jax.training.step import TrainError, TrainState, check_batch_size, create_state
from exhubert_jax.training.update_rules import UPDATE_RULES


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
    val_caveats: dict[str, str] = dataclasses.field(default_factory=dict)  # corpus -> why its UAR says little


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
        check_devices(opts.batch_size, mesh)
        self.lead = jax.process_index() == 0  # writes run.json, logs, exports; prints
        self.model, self.labels, self.opts, self.mesh, self.val_sources = model, labels, opts, mesh, val_sources
        self.say = say if self.lead else (lambda message: None)
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if tx is None:
            tx, schedule = default_optimizer(labels, opts), schedule_for(opts)
        self.schedule = schedule  # what the logs show (a caller's optimiser may give none: then no lr is logged)
        augment = augmentation_for(opts, mesh, say=None if opts.quiet else self.say)  # --augment: inside the step
        self.update = UPDATE_RULES[opts.update](model, tx, labels, len(train_sources), mesh=mesh, loss=opts,
                                                augment=augment)
        self.predictor = Predictor(model, mesh)
        self.state = create_state(params, tx, opts.seed, mesh)
        self.ckpts = RunCheckpoints(self.workdir, opts.keep, say=self.say)
        self.weights = BatchWeights.of(opts, train_sources)  # --class-weights, --corpus-weights: a batch's arrays
        self.stream = training_stream(train_sources, opts, mesh)  # batches made ahead while the device runs
        self.data_pos = self.stream.state()  # the data position of the last finished step (saved with it)
        self.run_document = run_document(opts, model.config, train_sources, run_info)
        self.val_caveats = (split_caveats(val_sources, opts.label_space, model_class_names(model.config))
                            if model.config.num_labels else {})
        self.best: dict | None = None
        self.history: list[dict] = []
        self.resumed_from: int | None = None
        self.early_stopped = False
        self.final_uar: dict[str, float] = {}
        self.monitor: StepMonitor | None = None  # made by run(), once the step to start from is known

    def run(self) -> TrainResult:
        """Train to opts.steps (or the early stop), resuming from the newest checkpoint of the workdir."""
        start = self._resume()
        if self.lead or self.resumed_from is not None:  # every process refuses a resume with other settings
            runconfig.write_or_check(self.workdir, self.run_document, resuming=self.resumed_from is not None)
        opts = self.opts
        self.monitor = StepMonitor(RunLog(self.workdir, active=self.lead), opts, self.update.unit, self.schedule,
                                   start, self.ckpts)
        for corpus, caveat in sorted(self.val_caveats.items()):
            self.say(f"warning: {corpus}, validation split: {caveat} ({MARK} beside its UAR)")
        last_saved = self.resumed_from
        try:
            with checkpoint_requests(enabled=jax.process_count() == 1) as requested:
                for step in range(start + 1, opts.steps + 1):
                    if self.early_stopped:
                        break
                    self._train_step(step)
                    if step % opts.eval_every == 0 or step == opts.steps:
                        self._evaluate(step)
                    asked = requested()  # SIGUSR1: a scheduler's warning; checkpoint now and go on
                    if step % (opts.checkpoint_every or opts.eval_every) == 0 or self.early_stopped or asked \
                            or step in (opts.steps, opts.stop_after):
                        self._checkpoint(step)
                        last_saved = step
                    if asked:
                        self.say(f"step {step}: checkpoint saved in {self.ckpts.directory} on request (SIGUSR1); "
                                 "training goes on")
                    if step == opts.stop_after:
                        break
                self.monitor.settle()
        except KeyboardInterrupt:
            raise self._on_interrupt(last_saved) from None
        finally:
            self.stream.close()
            self.monitor.close()
            self.ckpts.close()
        return self._finish()

    def _resume(self) -> int:
        """Restore state, data position, best and history from the newest checkpoint; the step to continue from."""
        latest = self.ckpts.latest_step()
        if latest is not None:
            restored, meta = self.ckpts.restore(self.state.as_dict(), latest)
            self.state = TrainState.from_dict(restored)
            latest = int(jax.device_get(self.state.step))  # the step restored: older when the newest was damaged
            self.stream.load_state(meta["data"])
            self.data_pos = self.stream.state()
            self.best, self.history = meta.get("best"), list(meta.get("history", []))
            self.early_stopped = bool(meta.get("early_stopped", False))
            self.resumed_from = latest
            self.say(f"resuming from {self.ckpts.directory}/{latest} (step {latest} of {self.opts.steps})")
        return int(jax.device_get(self.state.step))

    def _train_step(self, step: int) -> None:
        """Run one step (a round, or one corpus batch) and queue its metrics."""
        batches, wait = take_batches(self.stream, self.update.batches_per_step)
        n_before = self.update.compiles.count
        with held():  # a stop waits for the step's result: its input state was donated, so it would be lost
            self.state, metrics = self.update(self.state, device_batches(batches, self.opts, self.model.config,
                                                                         self.mesh, self.weights))
            self.data_pos = self.stream.state()
        self.monitor.compiled(step, self.update.compiles, n_before)
        self.monitor.queue(step, metrics, batches, wait)

    def _validate(self) -> dict[str, float]:
        """Mean and per-corpus validation UAR of the current parameters."""
        return validation_uar(self.predictor, self.state.params, self.val_sources, batch_size=self.opts.batch_size,
                              max_seconds=self.opts.max_seconds, label_space=self.opts.label_space,
                              input_mode=self.opts.input_mode)

    def _evaluate(self, step: int) -> None:
        """Validate; export best/ on a new best mean UAR; decide an early stop."""
        self.monitor.settle()
        uars = self._validate()
        self.history.append(dict(step=step, **uars))
        self.monitor.log.write("eval", step, {(f"ccc/{k[:-4]}" if k.endswith(" ccc") else f"uar/{k}"): v
                                              for k, v in uars.items()})
        if not self.opts.quiet:  # quiet: the results at the end, not every evaluation
            self.say(f"step {step}: validation {score_name(self.model.config, '/')} "
                     + ", ".join(f"{k} {v:.3f}{f' {MARK}' if k in self.val_caveats else ''}"
                                 for k, v in uars.items()))
        if self.best is None or uars["mean"] > self.best["mean"]:
            self.best = dict(step=step, **uars)
            if self.lead:
                self.ckpts.export(BEST, self.model, self.state.params, self.best)
        self.final_uar = uars
        if step < self.opts.steps and patience_spent(self.history, self.best, self.opts.patience):
            self.early_stopped = True
            self.say(f"early stop at step {step}: no better mean validation UAR in {self.opts.patience} evaluations "
                     f"(best {self.best['mean']:.4f} at step {self.best['step']})")

    def _checkpoint(self, step: int) -> None:
        """Save state, data position, best, history and the early-stop flag."""
        self.monitor.settle()
        self.ckpts.save(step, self.state.as_dict(), dict(data=self.data_pos, best=self.best, history=self.history,
                                                         early_stopped=self.early_stopped))

    def _on_interrupt(self, last_saved: int | None) -> Interrupted:
        """Ctrl-C: checkpoint the last finished step if it is not saved yet; what was kept, for the one line."""
        try:
            with held(drop=True):  # the checkpoint is written whole; a second Ctrl-C or SIGTERM changes nothing
                step_now = int(jax.device_get(self.state.step))
                if step_now != last_saved and step_now > 0:
                    self._checkpoint(step_now)
        except RuntimeError:  # interrupted inside the step: its donated input is gone, keep the last checkpoint
            step_now = None
        return Interrupted(interrupt_message(step_now, last_saved, self.ckpts.directory))

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
                           compiles=self.update.compiles.count, eval_compiles=len(self.predictor.compiled_shapes),
                           bucket_shapes=list(self.update.compiles.shapes), resumed_from=self.resumed_from,
                           finished=finished, early_stopped=self.early_stopped, val_caveats=self.val_caveats)


def take_batches(stream: Prefetch, n: int) -> tuple[list, float]:
    """The next n batches of the stream, and how long the loop waited for them."""
    batches, wait = [], 0.0
    for _ in range(n):
        batches.append(next(stream))
        wait += stream.wait_s
    return batches, wait


def device_batches(batches: list, opts: TrainOptions, config: Any, mesh: Mesh | None,
                   weights: BatchWeights = BatchWeights()) -> list[dict]:
    """The batches as the step's device arrays, with their corpus's class and round weights where set, their rows
    padded to a multiple of this process's devices."""
    soft = config.num_labels if opts.targets == "soft" else 0  # --targets soft: (B, classes) soft_targets
    arrays = [weights.add(batch_arrays(b, opts.label_space, opts.input_mode, config.dimensions, opts.task_weights,
                                       soft), b.corpus) for b in batches]
    return [to_device(pad_rows(a, local_size(mesh)), mesh) for a in arrays]


def check_devices(batch_size: int, mesh: Mesh | None) -> None:
    """The batch divides over the mesh, and several processes train over one mesh spanning all their devices."""
    check_batch_size(batch_size, mesh)
    if jax.process_count() > 1 and data_shard(mesh) is None:
        raise TrainError(f"{jax.process_count()} processes need a mesh over the devices of all of them "
                         "(placement.make_mesh())")


def run_document(opts: TrainOptions, config: Any, train_sources: Mapping[str, Any], run_info: Mapping | None) -> dict:
    """run.json of a run: its options, model config and the training corpora's fingerprints and preparation
    times, with `run_info`."""
    return runconfig.build(run_options(opts), config.to_dict(),
                           {n: getattr(s, "fingerprint", None) for n, s in sorted(train_sources.items())},
                           prepared={n: getattr(s, "prepared_at", None) for n, s in sorted(train_sources.items())},
                           **dict(run_info or {}))


def patience_spent(history: list[dict], best: dict, patience: int | None) -> bool:
    """True when `patience` evaluations have passed since the best one (never without a patience)."""
    return patience is not None and sum(h["step"] > best["step"] for h in history) >= patience


def training_stream(train_sources: Mapping[str, Any], opts: TrainOptions, mesh: Mesh | None) -> Prefetch:
    """The round-robin batches of the training corpora, made ahead in a thread (its state() stays exact for
    resume); with the model card's input protocol every clip is padded or cropped to exactly max_seconds; with
    --sampling balanced each corpus's batches draw the classes trained on equally often."""
    buckets = card_buckets(opts.max_seconds) if opts.input_mode == "card" else None
    card = CardProtocol(max_length=buckets[0]) if buckets else None
    return Prefetch(RoundRobin(dict(train_sources), opts.batch_size, opts.max_seconds, opts.seed, buckets,
                               shard=data_shard(mesh), card=card, sampling=opts.sampling,
                               label_space=opts.label_space), depth=2)


def score_name(config: Any, joiner: str = " and ") -> str:
    """What validation scores: UAR (classes), CCC (dimensions only), or both."""
    return "UAR" if not config.dimensions else "CCC" if not config.num_labels else f"UAR{joiner}CCC"


def interrupt_message(step_now: int | None, last_saved: int | None, directory: Path) -> str:
    """What a Ctrl-C kept: nothing yet, the last checkpoint (interrupted inside a step), or the step just saved."""
    if step_now == 0 or (step_now is None and last_saved is None):
        return f"before the first step; no checkpoint in {directory}, the same command starts afresh"
    if step_now is None:
        return f"during a step; resuming will start from the last checkpoint (step {last_saved}) in {directory}"
    return f"at step {step_now}; checkpoint saved in {directory}. Run the same command to resume"


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
