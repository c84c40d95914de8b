"""Training equals PyTorch step by step: our train step against transformers + torch.optim.AdamW on the same batches.

Both sides start from the same converted weights, with dropout, LayerDrop and masking off, and the CNN frozen. The
optimizer is the paper's AdamW (beta1 0.9, beta2 0.999, eps 1e-8; the paper names no weight decay, so a plain
`torch.optim.AdamW(model.parameters())` has its default 0.01 on every trainable parameter, biases and LayerNorms
included, which is what make_optimizer does). Losses (cross-entropy, mean over the batch) at every step and every
parameter after the last step agree to TOL.

Both sides compute in float64. In float32, Adam divides each gradient by the root of its own second moment, so on a
leaf whose true gradient is near zero (attention key projections, whose bias gradient is exactly zero) it turns the
two frameworks' different float32 rounding into parameter differences of 1e-5 to 1e-4 that vary between machines.
In float64 the rounding is ~1e-16 and falls far below Adam's eps, so the comparison checks the arithmetic itself,
on every leaf, with a bound that no machine's kernel choice comes near. Float32 forward parity is tested elsewhere
(test_parity.py, test_expanded_export.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from converters.flax_to_torch import export
from converters.mapping import params_to_state_dict
from converters.modeling_exhubert import ExHubertForSequenceClassification
from converters.torch_io import read_source
from converters.torch_to_flax import config_for, convert
from exhubert_jax.data.loading.devices import to_device
from exhubert_jax.model.expansion import expand
from exhubert_jax.model.hubert import HubertForSequenceClassification
from exhubert_jax.model.param_labels import param_labels
from exhubert_jax.training.imbalance import BatchWeights
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.step import LossOptions, RoundStep, create_state, make_train_step
from hf_models import padded_batch, save_tiny

jax.config.update("jax_default_matmul_precision", "highest")
torch.set_num_threads(2)

TOL = 1e-9  # float64 on both sides: measured differences are ~1e-13
STEPS = 5
LR, BETAS, EPS, WEIGHT_DECAY = 2e-3, (0.9, 0.999), 1e-8, 0.01  # the demo's lr: large enough that decay matters
DETERMINISTIC = dict(hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
                     final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0, mask_feature_prob=0.0)
# two "corpora" for the round variant: different padded lengths, one batch each per update
CORPUS_LENGTHS = ((4000, 3100, 2207), (2600, 1900, 2600, 1500))


def batches(lengths: tuple[int, ...], steps: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`steps` padded batches (audio, attention mask, targets) of one corpus."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(steps):
        x, mask = padded_batch(lengths, seed=seed * 100 + i)
        out.append((x.astype(np.float64), mask, rng.integers(0, 6, len(lengths))))
    return out


@pytest.fixture(autouse=True)
def float64():
    """Every test here runs JAX with 64-bit types enabled (the model then computes in float64 when asked to)."""
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------------------------------------------- ours


def our_arrays(batch) -> dict:
    """The train step's batch dict (all rows weighted 1: the loss is the plain batch mean)."""
    x, mask, y = batch
    return dict(input_values=x, attention_mask=mask.astype(np.int32), targets=y.astype(np.int32),
                weights=np.ones(len(y), np.float64))


def train_ours(config, params, labels, rounds: list[list], weights: BatchWeights = BatchWeights()
               ) -> tuple[list[list[float]], dict]:
    """Our training over `rounds` (each a list of one batch per corpus): the per-corpus step for one-batch rounds,
    the round step (gradients averaged over the round's batches, one AdamW update) otherwise; (per-batch losses per
    round, params). `weights`: the class and round weights of corpus c0, c1, ... (the round's batches in order)."""
    model = HubertForSequenceClassification(config, dtype=jnp.float64)
    params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    tx = make_optimizer(labels, LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)
    state = create_state(params, tx, seed=0)
    loss = LossOptions(class_weights="balanced" if weights.classes is not None else "none")
    step, _ = make_train_step(model, tx, labels, loss=loss)
    round_step, sums = RoundStep(model, tx, labels, loss=loss), None
    losses = []
    for batches_of_round in rounds:
        device = [to_device(weights.add(our_arrays(batch), f"c{i}"), None) for i, batch in enumerate(batches_of_round)]
        if len(device) == 1:
            state, metrics = step(state, device[0])
            losses.append([float(metrics["loss"])])
        else:
            state, sums, metrics = round_step(state, device, sums)
            losses.append([float(x) for x in metrics["losses"]])
    return losses, params_to_state_dict(jax.device_get(state.params), config)


# ----------------------------------------------------------------------------------------------------- PyTorch


def logits_of(out):
    """The logits of a transformers SequenceClassifierOutput."""
    return out.logits


def train_torch(model: torch.nn.Module, rounds: list[list], no_decay=(), weights: BatchWeights = BatchWeights()
                ) -> tuple[list[list[float]], dict]:
    """torch.optim.AdamW over the model's parameters (frozen ones have requires_grad=False); one update per round
    from the mean of the round's batch losses (= the average of their gradients). `weights`: corpus c_i's class
    weights go to torch's own cross-entropy (weight=...), its round weight w_i makes the round's loss
    sum(w_i x loss_i) / sum(w_i)."""
    model.double().train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [dict(params=[p for n, p in trainable if not n.endswith(no_decay) or not no_decay]),
              dict(params=[p for n, p in trainable if no_decay and n.endswith(no_decay)], weight_decay=0.0)]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY)
    losses = []
    for batches_of_round in rounds:
        opt.zero_grad()
        round_losses = []
        for i, (x, mask, y) in enumerate(batches_of_round):
            out = model(torch.from_numpy(x), attention_mask=torch.from_numpy(mask))
            w = torch.from_numpy(weights.classes[f"c{i}"]) if weights.classes is not None else None
            round_losses.append(F.cross_entropy(logits_of(out), torch.from_numpy(y), weight=w))
        if weights.corpora is None:
            torch.stack(round_losses).mean().backward()
        else:
            w = torch.tensor([weights.corpora[f"c{i}"] for i in range(len(round_losses))], dtype=torch.float64)
            (torch.stack(round_losses) @ w / w.sum()).backward()
        opt.step()
        losses.append([float(l.detach()) for l in round_losses])
    return losses, {k: v.detach().numpy() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------------ checks


def compare(ours: tuple, theirs: tuple, initial: dict) -> dict[str, float]:
    """Max loss and parameter differences (and how far the parameters moved); asserts the 1e-5 agreement."""
    (our_losses, our_params), (torch_losses, torch_params) = ours, theirs
    loss_diff = float(np.max(np.abs(np.array(our_losses) - np.array(torch_losses))))
    assert set(torch_params) <= set(our_params)
    assert set(our_params) - set(torch_params) <= {"hubert.masked_spec_embed"}  # absent in torch without masking
    diffs = {k: float(np.max(np.abs(our_params[k] - v))) for k, v in torch_params.items()}
    worst = max(diffs, key=diffs.get)
    moved = max(float(np.max(np.abs(initial[k] - v))) for k, v in torch_params.items())
    result = dict(loss=loss_diff, params=diffs[worst], worst=worst, moved=moved)
    assert loss_diff <= TOL and diffs[worst] <= TOL, result
    assert moved > 100 * TOL, result  # the comparison is between trained parameters, not two copies of the start
    return result


def converted(path):
    """(config, params) of a saved HF model, through our converter."""
    state, hf = read_source(path)
    config = config_for(hf, state, None)
    return config, convert(state, config)[0]


def plain_setup(tmp_path):
    """A tiny HF HuBERT (large layout) with its CNN frozen, and the same weights on our side."""
    torch_model = save_tiny(tmp_path, "large", **DETERMINISTIC)
    torch_model.freeze_feature_encoder()
    config, params = converted(tmp_path)
    return torch_model, config, params, param_labels(params, config)


def zll_setup(tmp_path):
    """The tiny model expanded with ZLLs (one copy per layer), originals and CNN frozen, on both sides."""
    save_tiny(tmp_path / "hf", "large", **DETERMINISTIC)
    config, params = converted(tmp_path / "hf")
    params, config, labels = expand(params, config, copies=1, style="zll", freeze="original")
    # ZLLs as during training, not at their zero start: with zero ZLLs the copies' first gradients are exactly zero
    # and then tiny, where Adam's normalisation turns float32 rounding into steps of up to lr in either framework
    rng = np.random.default_rng(0)
    zll = params["hubert"]["encoder"]["expansion"]["zll"]
    params["hubert"]["encoder"]["expansion"]["zll"] = jax.tree.map(
        lambda x: 0.05 * rng.standard_normal(x.shape).astype(np.float32), zll)
    torch_model = ExHubertForSequenceClassification.from_pretrained(export(params, config, tmp_path / "pt"))
    originals = set(range(torch_model.hubert.config.num_hidden_layers)) - set(torch_model.config.zll_layers)
    for name, p in torch_model.named_parameters():
        layer = name.split(".")[3] if name.startswith("hubert.encoder.layers.") else None
        if name.startswith("hubert.feature_extractor.") or (layer is not None and int(layer) in originals):
            p.requires_grad = False
    return torch_model, config, jax.tree.map(np.asarray, params), labels


SETUPS = dict(plain=plain_setup, zll=zll_setup)


@pytest.mark.parametrize("kind", sorted(SETUPS))
def test_five_steps_equal_pytorch(tmp_path, kind):
    torch_model, config, params, labels = SETUPS[kind](tmp_path)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    rounds = [[b] for b in batches(CORPUS_LENGTHS[0], STEPS, seed=1)]
    ours = train_ours(config, params, labels, rounds)
    theirs = train_torch(torch_model, rounds)
    print(kind, compare(ours, theirs, initial))
    if kind == "zll":  # the frozen originals and the CNN did not move on either side
        frozen = [k for k in initial if k.startswith("hubert.feature_extractor.")
                  or k.startswith(tuple(f"hubert.encoder.layers.{j}." for j in (0, 2)))]
        assert frozen and all(np.array_equal(ours[1][k], initial[k]) for k in frozen)


@pytest.mark.slow  # ~15 s each on 2 CPU cores: two compilations (one per corpus length) per framework
@pytest.mark.parametrize("kind", sorted(SETUPS))
def test_rounds_over_two_corpora_equal_pytorch(tmp_path, kind):
    """Each update averages the gradients of one batch per corpus (two corpora, different lengths)."""
    torch_model, config, params, labels = SETUPS[kind](tmp_path)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    per_corpus = [batches(lengths, STEPS, seed=10 + c) for c, lengths in enumerate(CORPUS_LENGTHS)]
    rounds = [list(r) for r in zip(*per_corpus)]
    print(kind, "rounds", compare(train_ours(config, params, labels, rounds), train_torch(torch_model, rounds),
                                  initial))


def test_decay_semantics_are_what_the_comparison_checks(tmp_path):
    """Against HF Trainer's default (no decay on biases and LayerNorm) the same comparison fails: it sees decay."""
    torch_model, config, params, labels = plain_setup(tmp_path)
    rounds = [[b] for b in batches(CORPUS_LENGTHS[0], STEPS, seed=1)]
    _, ours = train_ours(config, params, labels, rounds)
    _, theirs = train_torch(torch_model, rounds, no_decay=("bias", "layer_norm.weight"))
    assert max(float(np.max(np.abs(ours[k] - v))) for k, v in theirs.items()) > 1000 * TOL


# corpus c0's and c1's class weights (any positive weights: torch's semantics hold for all) and round weights
WEIGHTS = BatchWeights(classes={"c0": np.array([0.5, 2.0, 1.0, 3.0, 0.25, 1.5]),
                                "c1": np.array([1.0, 0.2, 4.0, 1.0, 1.0, 0.7])},
                       corpora={"c0": 1.5, "c1": 0.5})


def test_class_weighted_steps_equal_pytorch(tmp_path):
    """--class-weights: each step's loss is torch.nn.CrossEntropyLoss(weight=w), sum of w[y_i] x ce_i over sum of
    w[y_i], and so are the parameters its gradients make."""
    torch_model, config, params, labels = plain_setup(tmp_path)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    rounds = [[b] for b in batches(CORPUS_LENGTHS[0], STEPS, seed=1)]
    weights = BatchWeights(classes=WEIGHTS.classes)
    ours = train_ours(config, params, labels, rounds, weights)
    print("class weights", compare(ours, train_torch(torch_model, rounds, weights=weights), initial))


@pytest.mark.slow  # two compilations (one per corpus length) per framework, as the rounds test above
def test_weighted_rounds_equal_pytorch(tmp_path):
    """--class-weights with --corpus-weights: a round's gradient is that of sum(w_c x loss_c) / sum(w_c), each
    loss_c torch's class-weighted cross-entropy."""
    torch_model, config, params, labels = plain_setup(tmp_path)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    per_corpus = [batches(lengths, STEPS, seed=10 + c) for c, lengths in enumerate(CORPUS_LENGTHS)]
    rounds = [list(r) for r in zip(*per_corpus)]
    print("weighted rounds", compare(train_ours(config, params, labels, rounds, WEIGHTS),
                                     train_torch(torch_model, rounds, weights=WEIGHTS), initial))
