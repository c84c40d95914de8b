"""--targets soft: the loss against label distributions is PyTorch's cross_entropy with probability targets (float64,
weighted rows included), the train step trains like transformers + torch.optim.AdamW on soft targets, a one-hot
distribution gives the hard loss, a run without distributions is refused, and evaluation scores the model against
the distributions (soft-label cross-entropy, agreement 1 - TV) where the split has them, never scoring a turn
without a hard label on hard labels."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evaluate
import train as cli
from converters.mapping import params_to_state_dict
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.loading.devices import to_device
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.evaluation.reports import soft_label_table
from exhubert_jax.evaluation.scoring import evaluate_corpus
from exhubert_jax.evaluation.soft_scores import soft_label_scores
from exhubert_jax.model.hubert import HubertForSequenceClassification
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.stages import UsageError, check_targets
from exhubert_jax.training.step import (LossOptions, create_state, make_train_step, soft_cross_entropy,
                                        weighted_cross_entropy)
from hf_models import padded_batch
from test_train_parity import BETAS, EPS, LR, WEIGHT_DECAY, compare, plain_setup
from tests.test_data_prepare import make_corpus
from tests.test_soft_labels import QUIET, soft_corpus
from toys import NO_DROPOUT, tiny

jax.config.update("jax_default_matmul_precision", "highest")
torch.set_num_threads(2)

STEPS = 3
LENGTHS = (4000, 3100, 2207, 2600)


def test_the_soft_loss_is_torchs_cross_entropy_with_probability_targets():
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((5, 6))
    probs = rng.dirichlet(np.ones(6), 5)
    probs[1] = np.eye(6)[2]  # one row one-hot: its own label
    weights = np.array([1.0, 1.0, 0.0, 1.0, 0.5])  # a padding row (0) and a half-weighted one
    per_row = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(probs), reduction="none").numpy()
    with jax.enable_x64(True):
        ours = float(soft_cross_entropy(jnp.asarray(logits), jnp.asarray(probs), jnp.asarray(weights)))
        plain = float(soft_cross_entropy(jnp.asarray(logits), jnp.asarray(probs), jnp.ones(5)))
        targets = np.array([0, 2, 5, 1, 3])
        hard = float(weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights)))
        one_hot = float(soft_cross_entropy(jnp.asarray(logits), jnp.asarray(np.eye(6)[targets]),
                                           jnp.asarray(weights)))
    assert abs(ours - float((per_row * weights).sum() / weights.sum())) <= 1e-12
    assert abs(plain - float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(probs)))) <= 1e-12
    assert abs(hard - one_hot) <= 1e-12  # a one-hot distribution is the hard label


def soft_batches(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """STEPS padded batches (audio, mask, label distributions); the last row of each is one-hot."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(STEPS):
        x, mask = padded_batch(LENGTHS, seed=seed * 100 + i)
        probs = rng.dirichlet(0.5 * np.ones(6), len(LENGTHS))
        probs[-1] = np.eye(6)[i]
        out.append((x.astype(np.float64), mask, probs))
    return out


def test_soft_targets_train_like_pytorch(tmp_path):
    """3 per-corpus AdamW updates on soft targets, float64 on both sides, to test_train_parity.py's tolerance."""
    torch_model, config, params, labels = plain_setup(tmp_path)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    batches = soft_batches(seed=3)
    with jax.enable_x64(True):
        model = HubertForSequenceClassification(config, dtype=jnp.float64)
        tx = make_optimizer(labels, LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)
        state = create_state(jax.tree.map(lambda p: np.asarray(p, np.float64), params), tx, seed=0)
        step, _ = make_train_step(model, tx, labels, loss=LossOptions(targets="soft"))
        our_losses = []
        for x, mask, probs in batches:
            batch = dict(input_values=x, attention_mask=mask.astype(np.int32), weights=np.ones(len(x)),
                         targets=np.full(len(x), -1, np.int32), soft_targets=probs)  # targets unused
            state, metrics = step(state, to_device(batch, None))
            our_losses.append([float(metrics["loss"])])
        ours = params_to_state_dict(jax.device_get(state.params), config)

    torch_model.double().train()
    opt = torch.optim.AdamW([p for p in torch_model.parameters() if p.requires_grad], lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY)
    torch_losses = []
    for x, mask, probs in batches:
        opt.zero_grad()
        out = torch_model(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).logits
        loss = F.cross_entropy(out, torch.from_numpy(probs))
        loss.backward()
        opt.step()
        torch_losses.append([float(loss.detach())])
    theirs = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    print(compare((our_losses, ours), (torch_losses, theirs), initial))  # losses and parameters within TOL


# ---------------------------------------------------------------------------------------- the run and evaluation


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The soft corpus with its turn without a majority kept (toy), and a corpus without votes (plain)."""
    root = tmp_path_factory.mktemp("soft")
    prepare_corpus("toy", out=root / "out", manifest=soft_corpus(root / "src"), split_method="speaker",
                   keep_no_majority=True, **QUIET)
    prepare_corpus("plain", out=root / "out", manifest=make_corpus(root / "plain"), **QUIET)
    return root / "out"


def test_soft_targets_need_distributions_and_a_classifier(prepared):
    toy, plain = open_prepared("toy", prepared), open_prepared("plain", prepared)
    check_targets({"plain": plain}, "hard", "categorical")
    check_targets({"plain": plain, "toy": toy}, "soft", "both")  # one corpus with distributions is enough
    with pytest.raises(UsageError, match=r"--targets soft: none of the training corpora \(plain\) carries label "
                                         "distributions"):
        check_targets({"plain": plain}, "soft", "categorical")
    with pytest.raises(UsageError, match="--task dimensional has none"):
        check_targets({"toy": toy}, "soft", "dimensional")


def test_soft_label_scores_by_hand():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])  # the last row has no distribution
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, 0.0]])
    scores = soft_label_scores(logits, p)
    assert scores["n"] == 2
    assert scores["cross_entropy"] == pytest.approx((math.log(2) + 0.5 * (-math.log(0.75) - math.log(0.25))) / 2)
    assert scores["agreement"] == pytest.approx((0.5 + 0.75) / 2)  # 1 - TV: TV 0.5, then 0.25
    assert soft_label_scores(logits, np.zeros((3, 2))) is None and soft_label_scores(logits, None) is None


def test_evaluation_scores_the_distributions_and_hard_labels_apart(prepared):
    model, params, _ = tiny(**NO_DROPOUT)
    toy = open_prepared("toy", prepared)
    train = toy.split("train")
    result = evaluate_corpus(model, params, toy, "train", batch_size=4)
    hard = int((train.labels >= 0).sum())
    assert len(train) == hard + 1 and result["n"] == hard == len(result["utterances"])  # the kept turn: soft only
    assert result["soft_labels"]["n"] == int((train.dists.sum(1) > 0).sum())
    assert np.isfinite(result["soft_labels"]["cross_entropy"]) and 0 <= result["soft_labels"]["agreement"] <= 1
    assert "| toy | " in soft_label_table([result]) and soft_label_table([{"corpus": "x"}]) == ""
    plain = evaluate_corpus(model, params, open_prepared("plain", prepared), "train", batch_size=4)
    assert "soft_labels" not in plain


FAST = ["--random-init", "--preset", "tiny", "--steps", "4", "--batch-size", "4", "--max-seconds", "0.5",
        "--eval-every", "2", "--quiet"]


def test_train_py_refuses_soft_targets_without_distributions_before_building_a_model(prepared, tmp_path, capsys):
    code = cli.main(["--corpora", "plain", "--targets", "soft", "--data-dir", str(prepared), "--workdir",
                     str(tmp_path / "w"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if not line.startswith("warning: ")]  # toy and plain share audio: a leak warning
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: --targets soft: none of the training corpora")
    assert not (tmp_path / "w").exists()


@pytest.mark.slow  # ~60 s on 2 busy cores: a tiny model trained 4 rounds, then evaluated
def test_train_py_soft_then_evaluate_py_reports_the_distributions(prepared, tmp_path, capsys):
    work = tmp_path / "w"
    assert cli.main(["--corpora", "toy", "--targets", "soft", "--data-dir", str(prepared), "--workdir", str(work),
                     *FAST]) == 0
    assert json.loads((work / "run.json").read_text())["options"]["targets"] == "soft"
    capsys.readouterr()
    assert evaluate.main(["--corpus", "toy", "--checkpoint", str(work), "--data-dir", str(prepared), "--split",
                          "train"]) == 0
    out = capsys.readouterr().out
    assert "Against the annotators' label distributions" in out and "| toy | 6 |" in out
