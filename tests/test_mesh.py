"""Data parallelism on CPU: 4 host devices give the same training result as 1 (subprocess with forced devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from exhubert_jax import HubertForSequenceClassification, init_params, preset
    from exhubert_jax.data.loading.devices import make_mesh, to_device
    from exhubert_jax.model.param_labels import param_labels
    from exhubert_jax.training.optimizer import make_optimizer
    from exhubert_jax.training.step import TrainError, check_batch_size, create_state, make_train_step

    assert len(jax.devices()) == 4, jax.devices()
    config = preset("tiny", hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, final_dropout=0.0,
                    layerdrop=0.0, mask_time_prob=0.0)
    model = HubertForSequenceClassification(config)
    params = init_params(config, 0)
    labels = param_labels(params, config)
    rng = np.random.default_rng(0)
    batches = []
    for width in (1600, 2400, 1600):
        mask = np.ones((8, width), np.int32)
        mask[1, width // 2:] = 0
        batches.append(dict(input_values=rng.standard_normal((8, width)).astype(np.float32), attention_mask=mask,
                            targets=rng.integers(0, 6, 8).astype(np.int32),
                            weights=np.array([1, 1, 1, 1, 1, 1, 1, 0], np.float32)))

    def run(devices):
        mesh = make_mesh(devices)
        tx = make_optimizer(labels, 1e-3)
        step, counter = make_train_step(model, tx, labels, mesh=mesh)
        state = create_state(params, tx, 0, mesh)
        for b in batches:
            state, metrics = step(state, to_device(b, mesh))
        placed = to_device(batches[0], mesh)["input_values"]
        return (jax.device_get(state.params), counter.count, len(state.params["classifier"]["kernel"].devices()),
                len(placed.addressable_shards), float(metrics["loss"]))

    p4, c4, d4, shards4, loss4 = run(jax.devices())
    p1, c1, d1, shards1, loss1 = run(jax.devices()[:1])
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p4), jax.tree.leaves(p1))]
    moved = float(np.max(np.abs(p4["classifier"]["kernel"] - params["classifier"]["kernel"])))
    try:
        check_batch_size(6, make_mesh())
        error = None
    except TrainError as e:
        error = str(e)
    print(json.dumps(dict(max_diff=max(diffs), compiles=[c4, c1], devices=[d4, d1], shards=[shards4, shards1],
                          losses=[loss4, loss1], moved=moved, error=error)))
""")


def test_four_host_devices_match_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == [4, 1]  # params replicated on every device of the mesh
    assert out["shards"] == [4, 1]  # the batch is split over the data axis
    assert out["compiles"] == [2, 2]  # two distinct widths, each compiled once per mesh
    assert out["moved"] > 1e-4  # training changed the params
    assert out["max_diff"] < 1e-5, out
    assert abs(out["losses"][0] - out["losses"][1]) < 1e-5
    assert out["error"] and "not divisible by the 4 devices" in out["error"]
