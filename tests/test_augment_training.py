"""Training with --augment: a resumed run is bit-identical to an uninterrupted one, a resume with other augmentation
is refused, the step compiles as often as without it, and validation never sees it.

Its own file, so that a test run's workers can run it beside the other training tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from toys import leaves_equal, opts, sources, tiny

from exhubert_jax.training.augmentation import pipeline
from exhubert_jax.training.loop import train
from exhubert_jax.training.run_record import RunConfigError

KINDS = ("noise", "reverb", "speed", "gain")


def quiet(message: str) -> None:
    """A trainer's `say` that prints nothing."""


def test_augmented_training_resumes_bit_identical_compiles_as_plain_and_never_reaches_validation(tmp_path,
                                                                                                 monkeypatch):
    """One augmented run against a plain one (compiles, bucket shapes, traced only in the step, never in
    validation), the same run stopped at step 2 and resumed (bit-identical), and a resume with other augmentation
    refused."""
    model, params, labels = tiny()
    tr, va = sources()
    traced = []
    apply = pipeline.Augmentation.apply
    monkeypatch.setattr(pipeline.Augmentation, "apply", lambda self, banks, x, mask, key: (
        traced.append(x.shape), apply(self, banks, x, mask, key))[1])
    short = {"steps": 4, "eval_every": 2}
    plain = train(model, params, labels, tr, va, tmp_path / "plain", opts(**short), say=quiet)
    assert traced == []
    full = train(model, params, labels, tr, va, tmp_path / "full", opts(augment=KINDS, **short), say=quiet)
    assert full.compiles == plain.compiles == len(set(full.bucket_shapes))
    assert full.bucket_shapes == plain.bucket_shapes
    assert sorted(traced) == sorted(full.bucket_shapes)  # traced once per compiled step shape, never in eval
    assert full.eval_compiles == plain.eval_compiles and len(full.history) == 2
    assert not leaves_equal(plain.state.params, full.state.params)
    half = train(model, params, labels, tr, va, tmp_path / "split", opts(augment=KINDS, stop_after=2, **short),
                 say=quiet)
    assert not half.finished and int(half.state.step) == 2
    resumed = train(model, params, labels, tr, va, tmp_path / "split", opts(augment=KINDS, **short), say=quiet)
    assert resumed.resumed_from == 2 and resumed.finished
    assert leaves_equal(full.state.params, resumed.state.params)
    assert leaves_equal(full.state.opt_state, resumed.state.opt_state)
    assert json.loads((tmp_path / "split" / "run.json").read_text())["options"]["augment"] == list(KINDS)
    for other in (KINDS[:3], ("noise:snr=0-5",) + KINDS[1:], ()):
        with pytest.raises(RunConfigError, match=r"started with other settings: --augment \(was \["):
            train(model, params, labels, tr, va, tmp_path / "split", opts(augment=other, steps=12), say=quiet)


MESH_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from exhubert_jax import HubertForSequenceClassification, init_params, preset
    from exhubert_jax.data.loading.devices import make_mesh, replicated, to_device
    from exhubert_jax.model.param_labels import param_labels
    from exhubert_jax.training.augmentation import Augmentation, parse_all
    from exhubert_jax.training.optimizer import make_optimizer
    from exhubert_jax.training.step import create_state, make_train_step

    assert len(jax.devices()) == 4, jax.devices()
    config = preset("tiny", hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, final_dropout=0.0,
                    layerdrop=0.0, mask_time_prob=0.0)
    model, params = HubertForSequenceClassification(config), init_params(config, 0)
    labels = param_labels(params, config)
    rng = np.random.default_rng(0)
    mask = np.ones((8, 2400), np.int32)
    mask[1, 1200:] = 0
    batch = dict(input_values=rng.standard_normal((8, 2400)).astype(np.float32), attention_mask=mask,
                 targets=rng.integers(0, 6, 8).astype(np.int32), weights=np.ones(8, np.float32))
    bank = rng.standard_normal((5, 3000)).astype(np.float32)

    def run(devices):
        mesh = make_mesh(devices)
        tx = make_optimizer(labels, 1e-3)
        aug = Augmentation(parse_all(["noise:p=1", "reverb:p=1", "speed:p=1", "gain"]),
                           {"noise": jax.device_put(bank, replicated(mesh))})
        step, counter = make_train_step(model, tx, labels, mesh=mesh, augment=aug)
        state = create_state(params, tx, 0, mesh)
        for _ in range(2):
            state, metrics = step(state, to_device(batch, mesh), aug.banks)
        return jax.device_get(state.params), float(metrics["loss"]), counter.count

    (p4, loss4, c4), (p1, loss1, c1) = run(jax.devices()), run(jax.devices()[:1])
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p4), jax.tree.leaves(p1)))
    print(json.dumps(dict(max_diff=diff, losses=[loss4, loss1], compiles=[c4, c1])))
""")


@pytest.mark.slow  # ~15 s: a 4-device process; fast: every draw comes from the key (test_augment.py) and a plain
# step over 4 host devices matches one (test_mesh.py)
def test_augmentation_over_four_host_devices_matches_one(tmp_path):
    """The draws do not depend on how the batch is split over the mesh; the banks are replicated."""
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", MESH_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["compiles"] == [1, 1] and abs(out["losses"][0] - out["losses"][1]) < 1e-5
    assert out["max_diff"] < 1e-5, out
