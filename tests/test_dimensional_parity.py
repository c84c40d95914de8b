"""A mixed round (two categorical corpora and one dimensional corpus) trains like PyTorch: 3 AdamW updates of a
both-heads model against transformers' HubertForSequenceClassification holding the exported layout (classes, then
arousal / valence / dominance in one classifier Linear), with the loss written out in torch: per corpus its task
weights times cross-entropy plus 1 - CCC over the labelled dimensions, averaged over the round's corpora. Float64 on
both sides, the tolerance of test_train_parity.py. The three corpora share one batch shape and differ only in their
task weights and masks, so the round step compiles once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from converters.mapping import params_to_state_dict
from exhubert_jax.data.loading.devices import to_device
from exhubert_jax.model.hubert import HubertForSequenceClassification
from exhubert_jax.model.param_labels import param_labels
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.step import RoundStep, create_state
from hf_models import padded_batch, save_tiny
from test_train_parity import BETAS, DETERMINISTIC, EPS, LR, TOL, WEIGHT_DECAY, converted

jax.config.update("jax_default_matmul_precision", "highest")
torch.set_num_threads(2)

STEPS = 3
DIMS = ("arousal", "valence", "dominance")
LENGTHS = ((4000, 3100, 2207), (2600, 4000, 1900), (3300, 2500, 4000))  # one padded shape (3, 4000)
# per corpus: (categorical weight, dimensional weight) and whether it has dimensional labels
TASKS = ((1.0, 0.5, False), (1.0, 0.5, False), (0.0, 0.5, True))


@pytest.fixture(autouse=True)
def float64():
    """64-bit JAX for every test here."""
    with jax.enable_x64(True):
        yield


def corpus_batches(c: int) -> list[dict]:
    """STEPS batches of corpus c as numpy dicts: audio, mask, classes, dims with a mask (one rating missing)."""
    rng = np.random.default_rng(20 + c)
    out = []
    for i in range(STEPS):
        x, mask = padded_batch(LENGTHS[c], seed=100 * c + i)
        n = len(LENGTHS[c])
        has_dims = TASKS[c][2]
        dims_mask = np.ones((n, 3)) if has_dims else np.zeros((n, 3))
        if has_dims:
            dims_mask[1, 2] = 0.0  # one utterance without a dominance rating
        out.append(dict(input_values=x.astype(np.float64), attention_mask=mask.astype(np.int32),
                        targets=rng.integers(0, 6, n).astype(np.int32), weights=np.ones(n),
                        dims=rng.uniform(0, 1, (n, 3)) * dims_mask, dims_mask=dims_mask,
                        task_weights=np.tile(np.asarray(TASKS[c][:2]), (n, 1))))
    return out


def torch_ccc_loss(pred, target, mask):
    """1 - CCC per dimension over its labelled rows, averaged over the dimensions that have any (0 when none)."""
    n = mask.sum(0).clamp(min=1.0)
    mp, mt = (mask * pred).sum(0) / n, (mask * target).sum(0) / n
    dp, dt = mask * (pred - mp), mask * (target - mt)
    ccc = 2 * (dp * dt).sum(0) / n / ((dp * dp).sum(0) / n + (dt * dt).sum(0) / n + (mp - mt) ** 2 + 1e-8)
    labelled = (mask.sum(0) > 0).double()
    return ((1 - ccc) * labelled).sum() / labelled.sum().clamp(min=1.0)


def train_torch(model, rounds):
    """torch.optim.AdamW, one update per round from the mean of the corpora's task-weighted losses."""
    model.double().train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY)
    losses = []
    for batches in rounds:
        opt.zero_grad()
        per_corpus = []
        for b in batches:
            t = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
            out = model(t["input_values"], attention_mask=t["attention_mask"]).logits
            wc, wd = t["task_weights"][0]
            loss = wc * F.cross_entropy(out[:, :6], t["targets"].long()) + \
                wd * torch_ccc_loss(out[:, 6:], t["dims"], t["dims_mask"])
            per_corpus.append(loss)
        torch.stack(per_corpus).mean().backward()
        opt.step()
        losses.append([float(l.detach()) for l in per_corpus])
    return losses, {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.slow  # ~8-18 s on 2 cores (float64 forward and backward of both frameworks), like the two-corpus rounds
def test_mixed_round_equals_pytorch_and_compiles_once(tmp_path):
    torch_model = save_tiny(tmp_path, "large", num_labels=9, exhubert_dimensions=list(DIMS), **DETERMINISTIC)
    torch_model.freeze_feature_encoder()
    config, params = converted(tmp_path)
    assert (config.num_labels, config.dimensions) == (6, DIMS)
    labels = param_labels(params, config)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    rounds = [list(r) for r in zip(*(corpus_batches(c) for c in range(3)))]

    model = HubertForSequenceClassification(config, dtype=jnp.float64)
    tx = make_optimizer(labels, LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)
    state = create_state(jax.tree.map(lambda p: np.asarray(p, np.float64), params), tx, seed=0)
    step, sums, our_losses = RoundStep(model, tx, labels), None, []
    for batches in rounds:
        state, sums, metrics = step(state, [to_device(b, None) for b in batches], sums)
        our_losses.append([float(x) for x in metrics["losses"]])
    ours = params_to_state_dict(jax.device_get(state.params), config)
    torch_losses, theirs = train_torch(torch_model, rounds)

    assert step.counter.count == 1  # one batch shape, three task mixes: one compilation
    loss_diff = float(np.max(np.abs(np.array(our_losses) - np.array(torch_losses))))
    diffs = {k: float(np.max(np.abs(ours[k] - v))) for k, v in theirs.items()}
    moved = {k: float(np.max(np.abs(initial[k] - v))) for k, v in theirs.items()}
    worst = max(diffs, key=diffs.get)
    print(f"loss diff {loss_diff:.2e}, worst param diff {diffs[worst]:.2e} ({worst}), head moved "
          f"{moved['classifier.weight']:.2e}")
    assert loss_diff <= TOL and diffs[worst] <= TOL, (loss_diff, worst, diffs[worst])
    assert moved["classifier.weight"] > 100 * TOL and moved["hubert.encoder.layers.0.attention.q_proj.weight"] > 100 * TOL
