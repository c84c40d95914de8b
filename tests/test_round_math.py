"""The paper's step against a hand-made reference: one round averages the corpora's gradients into one update, and
a round of one corpus is the per-corpus step."""

from __future__ import annotations

import jax
import numpy as np
import optax

from exhubert_jax.data.loading.devices import to_device
from exhubert_jax.model.param_labels import merge_params, split_params
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.step import RoundStep, create_state, make_train_step, weighted_cross_entropy
from toys import NO_DROPOUT, tiny


def toy_batch(width: int, seed: int, rows: int = 2) -> dict:
    """A device batch of noise with random targets."""
    rng = np.random.default_rng(seed)
    return to_device(dict(input_values=rng.standard_normal((rows, width)).astype(np.float32),
                          attention_mask=np.ones((rows, width), np.int32),
                          targets=rng.integers(0, 6, rows).astype(np.int32), weights=np.ones(rows, np.float32)), None)


def test_round_is_one_update_with_gradients_averaged_over_corpora():
    model, params, labels = tiny(**NO_DROPOUT, mask_time_prob=0.0, mask_feature_prob=0.0)  # deterministic training
    tx = make_optimizer(labels, 1e-3)
    batches = [toy_batch(1600, 0), toy_batch(2400, 1, rows=3)]  # corpora weigh the same whatever their shapes
    state, _, metrics = RoundStep(model, tx, labels)(create_state(params, tx, 0), batches)

    def loss(trainable, batch):
        out = model.apply({"params": merge_params(trainable, frozen)}, batch["input_values"], batch["attention_mask"])
        return weighted_cross_entropy(out.logits, batch["targets"], batch["weights"])

    trainable, frozen = split_params(params, labels)
    grads = [jax.jit(jax.grad(loss))(trainable, b) for b in batches]
    mean = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
    ref_state = create_state(params, tx, 0)
    updates, _ = tx.update(merge_params(mean, jax.tree.map(np.zeros_like, frozen)), ref_state.opt_state,
                           ref_state.params)
    expected = optax.apply_updates(ref_state.params, updates)
    assert int(state.step) == 1 and bool(metrics["ok"])
    assert len(metrics["losses"]) == 2
    np.testing.assert_allclose(float(metrics["loss"]), np.mean([float(x) for x in metrics["losses"]]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_round_of_one_corpus_equals_the_per_corpus_step():
    model, params, labels = tiny(**NO_DROPOUT, mask_time_prob=0.0, mask_feature_prob=0.0)
    tx = make_optimizer(labels, 1e-3)
    batch = toy_batch(1600, 0)
    step, _ = make_train_step(model, tx, labels)
    per, _ = step(create_state(params, tx, 0), batch)
    rnd, _, _ = RoundStep(model, tx, labels)(create_state(params, tx, 0), [batch])
    for a, b in zip(jax.tree.leaves(per.params), jax.tree.leaves(rnd.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)


def with_corpus_weights(batches: list[dict], weights: list[float]) -> list[dict]:
    """The batches with their corpus's round weight on every row, as training.imbalance.BatchWeights adds it."""
    return [dict(b, corpus_weight=jax.numpy.full(b["weights"].shape, w, b["weights"].dtype))
            for b, w in zip(batches, weights)]


def test_corpus_weights_weigh_each_corpus_gradient_and_weights_of_one_change_nothing():
    """--corpus-weights: the round's gradient is sum(w_c x g_c) / sum(w_c) and its loss the same mean of the losses;
    weights of 1 (what equal means) give the paper's round bit for bit."""
    model, params, labels = tiny(**NO_DROPOUT, mask_time_prob=0.0, mask_feature_prob=0.0)
    tx = make_optimizer(labels, 1e-3)
    batches = [toy_batch(1600, 0), toy_batch(1600, 1)]  # one shape: one compilation with and one without weights
    step = RoundStep(model, tx, labels)
    plain, _, _ = step(create_state(params, tx, 0), batches)
    ones, _, _ = step(create_state(params, tx, 0), with_corpus_weights(batches, [1.0, 1.0]))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(ones.params)))
    state, _, metrics = step(create_state(params, tx, 0), with_corpus_weights(batches, [3.0, 1.0]))

    def loss(trainable, batch):
        out = model.apply({"params": merge_params(trainable, frozen)}, batch["input_values"], batch["attention_mask"])
        return weighted_cross_entropy(out.logits, batch["targets"], batch["weights"])

    trainable, frozen = split_params(params, labels)
    grads = [jax.jit(jax.grad(loss))(trainable, b) for b in batches]
    mean = jax.tree.map(lambda a, b: (3 * a + b) / 4, *grads)
    ref_state = create_state(params, tx, 0)
    updates, _ = tx.update(merge_params(mean, jax.tree.map(np.zeros_like, frozen)), ref_state.opt_state,
                           ref_state.params)
    expected = optax.apply_updates(ref_state.params, updates)
    losses = [float(x) for x in metrics["losses"]]  # each corpus's own loss, unweighted
    np.testing.assert_allclose(float(metrics["loss"]), (3 * losses[0] + losses[1]) / 4, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(jax.tree.leaves(state.params),
                                                                  jax.tree.leaves(plain.params)))
