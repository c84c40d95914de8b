"""Training: the jitted train step (trainable-only grads, NaN guard, data parallel) and the round-robin train loop."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .metrics import uar
from .optim import full_gradients, make_optimizer, merge_params, split_params
from .run_checkpoints import BEST, FINAL, RunCheckpoints
from .errors import ExhubertError

LABEL_KEYS = ("labels", "native_labels")


class TrainError(ExhubertError, RuntimeError):
    """A training run that cannot go on (bad options, too many non-finite steps)."""


# ----------------------------------------------------------------------------------------------------- state & mesh


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training: step, params, optimizer state, base rng, skipped-step count."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    skipped: jax.Array

    def as_dict(self) -> dict:
        """Plain dict (what is checkpointed)."""
        return dict(step=self.step, params=self.params, opt_state=self.opt_state, rng=self.rng, skipped=self.skipped)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainState":
        """Inverse of as_dict."""
        return cls(**{k: d[k] for k in ("step", "params", "opt_state", "rng", "skipped")})


def create_state(params: Any, tx: optax.GradientTransformation, seed: int, mesh: Mesh | None = None) -> TrainState:
    """A fresh TrainState (float32 params copied, replicated over the mesh if given)."""
    params = jax.tree.map(lambda p: jnp.array(p, dtype=jnp.float32), params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.PRNGKey(seed), skipped=jnp.zeros((), jnp.int32))
    return jax.device_put(state, replicated(mesh)) if mesh is not None else state


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ('data',) mesh over all (or the given) devices."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that replicates an array on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh | None) -> None:
    """The global batch must split evenly over the data axis."""
    n = mesh.size if mesh is not None else 1
    if batch_size % n:
        raise TrainError(f"--batch-size {batch_size} is not divisible by the {n} devices of the data mesh; "
                         f"use a multiple of {n}")


def batch_arrays(batch: Any, label_key: str = "labels") -> dict[str, np.ndarray]:
    """The arrays of a data.batching.Batch that the step needs (targets from `label_key`)."""
    return dict(input_values=np.asarray(batch.input_values, np.float32),
                attention_mask=np.asarray(batch.attention_mask, np.int32),
                targets=np.asarray(getattr(batch, label_key), np.int32),
                weights=np.asarray(batch.weights, np.float32))


def pad_rows(arrays: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    """Pad the batch dimension to a multiple (padding rows get weight 0 and an all-ones mask)."""
    b = arrays["weights"].shape[0]
    extra = (-b) % multiple
    if not extra:
        return arrays
    out = {}
    for k, v in arrays.items():
        fill = 1 if k == "attention_mask" else 0
        out[k] = np.concatenate([v, np.full((extra, *v.shape[1:]), fill, v.dtype)])
    return out


def to_device(arrays: dict[str, np.ndarray], mesh: Mesh | None) -> dict[str, jax.Array]:
    """Place host arrays on the devices, split along the batch axis over the mesh."""
    if mesh is None:
        return jax.device_put(arrays)
    sharding = NamedSharding(mesh, P("data"))
    if jax.process_count() > 1:
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in arrays.items()}
    return jax.device_put(arrays, sharding)


# ------------------------------------------------------------------------------------------------------- the step


class CompileCounter:
    """Counts traces of a jitted function (one per compilation) and the input shapes that caused them."""

    def __init__(self, name: str):
        self.name, self.count, self.shapes = name, 0, []

    def hit(self, shape: tuple) -> None:
        """Called from inside the traced function."""
        self.count += 1
        self.shapes.append(tuple(shape))


def weighted_cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    """Softmax cross-entropy in float32, averaged with per-row weights (0 = padding row)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def make_train_step(model: Any, tx: optax.GradientTransformation, labels: Any, *,
                    mesh: Mesh | None = None) -> tuple[Callable, CompileCounter]:
    """(step(state, batch) -> (state, metrics), compile counter); state is donated; non-finite steps are skipped."""
    counter = CompileCounter("train_step")

    def loss_fn(trainable, frozen, batch, key):
        params = merge_params(trainable, frozen)
        out = model.apply({"params": params}, batch["input_values"], batch["attention_mask"], deterministic=False,
                          rngs={"dropout": key})
        return weighted_cross_entropy(out.logits, batch["targets"], batch["weights"])

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        counter.hit(batch["input_values"].shape)  # Python side effect: runs once per compilation
        key = jax.random.fold_in(state.rng, state.step)
        trainable, frozen = split_params(state.params, labels)
        loss, grads = jax.value_and_grad(loss_fn)(trainable, frozen, batch, key)
        grad_norm = optax.global_norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def update(operands):
            """The AdamW step on trainable leaves."""
            params, opt_state = operands
            updates, opt_state = tx.update(full_gradients(grads, frozen), opt_state, params)
            trainable_new = optax.apply_updates(trainable, split_params(updates, labels)[0])
            return merge_params(trainable_new, frozen), opt_state

        # a non-finite step leaves params and optimizer state untouched (cond, not a tree-wide select: no extra pass)
        params, opt_state = jax.lax.cond(ok, update, lambda operands: operands, (state.params, state.opt_state))
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            skipped=state.skipped + jnp.where(ok, 0, 1).astype(jnp.int32))
        return new, dict(loss=loss, grad_norm=grad_norm, ok=ok)

    kwargs = dict(out_shardings=replicated(mesh)) if mesh is not None else {}
    return jax.jit(step, donate_argnums=0, **kwargs), counter


def make_eval_fn(model: Any, *, mesh: Mesh | None = None) -> tuple[Callable, CompileCounter]:
    """(predict(params, batch) -> argmax classes, compile counter), deterministic forward pass."""
    counter = CompileCounter("eval")

    def predict(params, batch):
        counter.hit(batch["input_values"].shape)
        out = model.apply({"params": params}, batch["input_values"], batch["attention_mask"], deterministic=True)
        return jnp.argmax(out.logits, axis=-1)

    kwargs = dict(out_shardings=replicated(mesh)) if mesh is not None else {}
    return jax.jit(predict, **kwargs), counter


def evaluate_sources(predict: Callable, params: Any, sources: Mapping[str, Any], *, batch_size: int,
                     max_seconds: float | None, num_classes: int, label_key: str = "labels",
                     mesh: Mesh | None = None) -> dict[str, float]:
    """Validation UAR per corpus plus 'mean' (the unweighted mean over corpora)."""
    from .data.batching import eval_batches

    multiple = mesh.size if mesh is not None else 1
    result = {}
    for name in sorted(sources):
        trues, preds = [], []
        for batch in eval_batches(sources[name], batch_size, max_seconds=max_seconds):
            arrays = pad_rows(batch_arrays(batch, label_key), multiple)
            pred = np.asarray(jax.device_get(predict(params, to_device(arrays, mesh))))
            keep = arrays["weights"] > 0
            trues.append(arrays["targets"][keep])
            preds.append(pred[keep])
        result[name] = (float(uar(np.concatenate(trues), np.concatenate(preds), num_classes)) if trues
                        else float("nan"))
    result["mean"] = float(np.mean([result[n] for n in sorted(sources)])) if sources else float("nan")
    return result


# ------------------------------------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainOptions:
    """Knobs of one training run (CLI flags map onto these)."""

    steps: int = 3000
    batch_size: int = 8
    max_seconds: float = 3.0
    lr: float = 1e-5
    weight_decay: float = 0.01
    clip_norm: float | None = None
    accumulate: int = 1
    eval_every: int = 500
    checkpoint_every: int | None = None  # default: eval_every
    keep: int = 3
    seed: int = 0
    label_key: str = "labels"
    max_bad_steps: int = 10
    log_every: int = 10
    quiet: bool = False
    curve_png: bool = False
    stop_after: int | None = None  # stop (checkpointed) after this step, as if interrupted; for tests


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


class RunLog:
    """metrics.jsonl + TensorBoard (tensorboardX) in the workdir."""

    def __init__(self, workdir: Path):
        from tensorboardX import SummaryWriter

        self.jsonl = open(workdir / "metrics.jsonl", "a")
        self.tb = SummaryWriter(str(workdir / "tb"))

    def write(self, event: str, step: int, values: Mapping[str, Any]) -> None:
        """One JSON line and scalars under '{event}/{name}'."""
        self.jsonl.write(json.dumps({"event": event, "step": int(step), "time": time.time(), **values}) + "\n")
        self.jsonl.flush()
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.tb.add_scalar(f"{event}/{k}", v, int(step))
        self.tb.flush()

    def close(self) -> None:
        """Flush and close both sinks."""
        self.jsonl.close()
        self.tb.close()


def _batch_stream(train_sources: Mapping[str, Any], opts: TrainOptions) -> Any:
    """The round-robin iterator over the training corpora (one Batch per corpus per round)."""
    from .data.batching import RoundRobin

    return RoundRobin(dict(train_sources), opts.batch_size, opts.max_seconds, opts.seed + jax.process_index())


def _restore_stream(stream: Any, data_state: dict) -> None:
    """Put the round-robin iterator back at a saved position."""
    stream.load_state(data_state)


def _progress(opts: TrainOptions, start: int):
    """A tqdm bar (disabled when quiet or not on a TTY)."""
    from tqdm import tqdm

    disable = opts.quiet or not sys.stderr.isatty()
    return tqdm(total=opts.steps, initial=start, desc="train", unit="step", disable=disable, dynamic_ncols=True)


def train(model: Any, params: Any, labels: Any, train_sources: Mapping[str, Any], val_sources: Mapping[str, Any],
          workdir: str | Path, opts: TrainOptions, *, mesh: Mesh | None = None,
          say: Callable[[str], None] = print) -> TrainResult:
    """Round-robin training with validation, best/latest checkpoints, and exact resume from {workdir}/checkpoints."""
    # ---- setup
    workdir = Path(workdir).absolute()
    if opts.label_key not in LABEL_KEYS:
        raise TrainError(f"label_key must be one of {LABEL_KEYS}, got {opts.label_key!r}")
    if opts.steps < 1 or opts.batch_size < 1 or opts.eval_every < 1 or opts.accumulate < 1:
        raise TrainError("--steps, --batch-size, --eval-every and --accumulate must be positive")
    check_batch_size(opts.batch_size, mesh)
    workdir.mkdir(parents=True, exist_ok=True)
    tx = make_optimizer(labels, opts.lr, weight_decay=opts.weight_decay, clip_norm=opts.clip_norm,
                        accumulate=opts.accumulate)
    step_fn, compiles = make_train_step(model, tx, labels, mesh=mesh)
    predict, eval_compiles = make_eval_fn(model, mesh=mesh)
    num_classes = model.config.num_labels
    state = create_state(params, tx, opts.seed, mesh)
    ckpts = RunCheckpoints(workdir, opts.keep)
    stream = _batch_stream(train_sources, opts)
    best, history, resumed_from = None, [], None

    # ---- resume
    latest = ckpts.latest_step()
    if latest is not None:
        restored, meta = ckpts.restore(state.as_dict(), latest)
        state = TrainState.from_dict(restored)
        _restore_stream(stream, meta["data"])
        best, history, resumed_from = meta.get("best"), list(meta.get("history", [])), latest
        say(f"resuming from {ckpts.directory}/{latest} (step {latest} of {opts.steps})")
    start = int(jax.device_get(state.step))

    def evaluate() -> dict[str, float]:
        return evaluate_sources(predict, state.params, val_sources, batch_size=opts.batch_size,
                                max_seconds=opts.max_seconds, num_classes=num_classes, label_key=opts.label_key,
                                mesh=mesh)

    def checkpoint(step: int) -> None:
        ckpts.save(step, state.as_dict(), dict(data=data_pos, best=best, history=history))

    log = RunLog(workdir)
    bar = _progress(opts, start)
    ckpt_every = opts.checkpoint_every or opts.eval_every
    bad_in_row, seconds, t0, last_saved, final_uar = 0, 0.0, time.perf_counter(), latest, {}
    pending = None  # metrics of the previous step, read one step late so the host does not stall the device
    multiple = mesh.size if mesh is not None else 1
    data_pos = stream.state()  # the data position that goes with `state` (kept in step for exact resume)

    def settle(pending) -> None:
        """Read a finished step's metrics: count non-finite steps, log."""
        nonlocal bad_in_row
        step, metrics, corpus = pending
        m = jax.device_get(metrics)
        if not bool(m["ok"]):
            bad_in_row += 1
            log.write("skip", step, dict(corpus=corpus, loss=float(m["loss"]), grad_norm=float(m["grad_norm"])))
            if bad_in_row >= opts.max_bad_steps:
                raise TrainError(f"{bad_in_row} consecutive steps had a non-finite loss or gradient (last at step "
                                 f"{step}, corpus {corpus}); stopping. The latest good checkpoint is in "
                                 f"{ckpts.directory}. Lower --lr, set --clip-norm, or check the data.")
        else:
            bad_in_row = 0
        if step % opts.log_every == 0 or step == opts.steps:
            elapsed = max(time.perf_counter() - t0, 1e-9)
            rates = dict(steps_per_s=(step - start) / elapsed, audio_s_per_s=seconds / elapsed)
            log.write("train", step, dict(loss=float(m["loss"]), grad_norm=float(m["grad_norm"]), corpus=corpus,
                                          **rates))
            bar.set_postfix(loss=f"{float(m['loss']):.3f}", steps_s=f"{rates['steps_per_s']:.2f}",
                            audio_s_s=f"{rates['audio_s_per_s']:.1f}")

    # ---- loop
    try:
        for step in range(start + 1, opts.steps + 1):
            batch = next(stream)
            arrays = pad_rows(batch_arrays(batch, opts.label_key), multiple)
            n_before = compiles.count
            state, metrics = step_fn(state, to_device(arrays, mesh))
            data_pos = stream.state()
            if compiles.count != n_before:
                log.write("compile", step, dict(shape=list(arrays["input_values"].shape), compiles=compiles.count))
            seconds += float(batch.n_seconds)
            if pending is not None:
                settle(pending)
            pending = (step, metrics, batch.corpus)
            bar.update(1)
            if step % opts.eval_every == 0 or step == opts.steps:
                settle(pending)
                pending = None
                uars = evaluate()
                history.append(dict(step=step, **uars))
                log.write("eval", step, {f"uar/{k}": v for k, v in uars.items()})
                say(f"step {step}: validation UAR " + ", ".join(f"{k} {v:.3f}" for k, v in uars.items()))
                if best is None or uars["mean"] > best["mean"]:
                    best = dict(step=step, **uars)
                    ckpts.export(BEST, model, state.params, best)
                final_uar = uars
            if step % ckpt_every == 0 or step == opts.steps or step == opts.stop_after:
                if pending is not None:
                    settle(pending)
                    pending = None
                checkpoint(step)
                last_saved = step
            if step == opts.stop_after:
                break
        if pending is not None:
            settle(pending)
    except KeyboardInterrupt:
        try:
            step_now = int(jax.device_get(state.step))
            if step_now != last_saved and step_now > 0:
                checkpoint(step_now)
            say(f"interrupted at step {step_now}; checkpoint saved in {ckpts.directory}. "
                "Run the same command to resume.")
        except RuntimeError:  # interrupted inside the step: its donated input is gone, keep the last checkpoint
            say(f"interrupted; resuming will start from the last checkpoint (step {last_saved}) in {ckpts.directory}")
        raise
    finally:
        bar.close()
        log.close()
        ckpts.close()

    # ---- finish
    finished = int(jax.device_get(state.step)) >= opts.steps
    if finished:
        if not final_uar:
            final_uar = history[-1] if history else evaluate()
            final_uar = {k: v for k, v in final_uar.items() if k != "step"}
        ckpts.export(FINAL, model, state.params, dict(step=opts.steps, **final_uar))
        if opts.curve_png and history:
            plot_uar_curve(history, workdir / "uar_curve.png")
    return TrainResult(state=state, final_uar=final_uar, best=best, history=history, compiles=compiles.count,
                       eval_compiles=eval_compiles.count, bucket_shapes=list(compiles.shapes),
                       resumed_from=resumed_from, finished=finished)


# --------------------------------------------------------------------------------------------------- reporting


def uar_table(uars: Mapping[str, float], title: str = "validation UAR") -> str:
    """A Markdown table: one row per corpus, then the mean."""
    rows = [f"| corpus | {title} |", "|---|---|"]
    rows += [f"| {k} | {v:.4f} |" for k, v in sorted(uars.items()) if k not in ("mean", "step")]
    if "mean" in uars:
        rows.append(f"| **mean** | **{uars['mean']:.4f}** |")
    return "\n".join(rows)


def plot_uar_curve(history: list[dict], path: str | Path) -> Path:
    """Validation UAR over steps, one line per corpus (the paper's Figure 3), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    names = sorted(k for k in history[0] if k not in ("step", "mean"))
    for name in names:
        ax.plot(steps, [h[name] for h in history], marker="o", label=name)
    if len(names) > 1:
        ax.plot(steps, [h["mean"] for h in history], color="black", linestyle="--", label="mean")
    ax.set_xlabel("step")
    ax.set_ylabel("validation UAR")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------------------------ the head


def with_head(params: Any, config: Any, num_labels: int, label_names: tuple[str, ...] | None,
              seed: int = 0) -> tuple[Any, Any]:
    """(params, config) with a fresh classifier when the number or names of classes differ; projector is kept.

    A head of the right size without names (e.g. a converted checkpoint's LABEL_i) is kept and named.
    """
    label_names = tuple(label_names) if label_names is not None else None
    if config.num_labels == num_labels and config.label_names in (None, label_names):
        return params, (config if config.label_names == label_names else config.replace(label_names=label_names))
    import flax.linen as nn

    from .layers import normal_init

    dense = nn.Dense(num_labels, kernel_init=normal_init)
    fresh = dense.init(jax.random.PRNGKey(seed), jnp.zeros((1, config.classifier_proj_size)))["params"]
    return {**params, "classifier": jax.device_get(fresh)}, config.replace(num_labels=num_labels,
                                                                           label_names=label_names)
