"""Class imbalance: --class-weights (scikit-learn's balanced weights, torch's weighted cross-entropy), --corpus-weights
(a round weighs corpora by size), their weight files and the refusals (the round's arithmetic: test_round_math.py;
float64 training parity: test_train_parity.py; --sampling balanced: test_data_batching.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

import train as cli
from exhubert_jax.data.demo.synthetic import prepare_demo
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.model.config import EMOTION_CLASSES
from exhubert_jax.training import run_record as runconfig, stages
from exhubert_jax.training.imbalance import (BatchWeights, WeightsError, class_weight_table, corpus_weight_table,
                                             parse_class_weights)
from exhubert_jax.training.loop import device_batches, train
from exhubert_jax.training.options import TrainOptions, run_options
from exhubert_jax.training.step import LossOptions, TrainError, batch_loss
from toys import NO_DROPOUT, ToySource, opts, tiny


class Skewed(ToySource):
    """A toy corpus whose classes are skewed as `labels` says (native labels named after them), with tones of the
    classes as ToySource makes them."""

    def __init__(self, labels: list[int], seed: int = 0):
        super().__init__(len(labels), seed)
        for item, label in zip(self.items, labels):
            item["label"], item["native_index"] = label, label % 3
        self.native_labels = ("calm", "cross", "glad")


SKEW = [0] * 9 + [3] * 4 + [4] * 2 + [5]  # no 1 or 2: absent classes get no weight and are not counted


def test_balanced_weights_are_scikit_learns_over_the_classes_present():
    sources = {"a": Skewed(SKEW), "b": Skewed([2, 2, 1, 0, 0, 0, 0, 5], 1)}
    table = class_weight_table("balanced", sources, "emotion")
    for name, source in sources.items():
        y = np.array([item["label"] for item in source.items])
        present = np.unique(y)
        expected = compute_class_weight("balanced", classes=present, y=y)
        np.testing.assert_allclose(table[name][present], expected, rtol=1e-15)
        assert table[name].shape == (6,) and not table[name][np.setdiff1d(np.arange(6), present)].any()
    native = class_weight_table("balanced", sources, "native")["a"]  # the classes of --labels native
    y = np.array(SKEW) % 3
    np.testing.assert_allclose(native, compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-15)


def test_balanced_weights_come_from_the_prepared_training_split(tmp_path):
    prepare_demo(tmp_path, n_per_class=2, n_speakers=3, log=lambda m: None)
    corpus = open_prepared("demo-a", tmp_path)
    split = corpus.split("train")
    counts = corpus.info["splits"]["train"]["classes"]  # what the prepare record counted
    weights = class_weight_table("balanced", {"demo-a": split}, "emotion")["demo-a"]
    expected = compute_class_weight("balanced", classes=np.unique(split.labels), y=split.labels)
    np.testing.assert_allclose(weights[np.unique(split.labels)], expected)
    assert [c for c, n in counts.items() if n] == [EMOTION_CLASSES[i] for i in np.unique(split.labels)]
    np.testing.assert_allclose(weights[weights > 0], [len(split) / (len(expected) * counts[EMOTION_CLASSES[i]])
                                                      for i in np.flatnonzero(weights)])


def test_the_weighted_loss_is_torchs_cross_entropy_with_class_weights_in_float64():
    """sum of w[y_i] x ce_i over sum of w[y_i] (torch.nn.CrossEntropyLoss(weight=w)), value and gradient; padding
    rows weigh nothing, and a batch of one row with a weight below 1 is not clipped."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        logits, targets = rng.standard_normal((7, 6)), np.array([0, 3, 3, 5, 0, 4, 1])
        rows = np.array([1.0, 1, 1, 1, 1, 0, 0])  # two padding rows
        w = np.array([0.3, 2.0, 1.0, 0.7, 5.0, 1.4])
        weights = BatchWeights(classes={"c": w})
        config = SimpleNamespace(num_labels=6, dimensions=())

        def ours(z, rows, targets):
            batch = {k: jnp.asarray(v) for k, v in weights.add(dict(targets=targets, weights=rows), "c").items()}
            return batch_loss(SimpleNamespace(logits=z), batch, config, LossOptions(class_weights="balanced"))

        loss = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(w))
        for keep in (slice(0, 5), slice(0, 1)):
            r = rows.copy()
            r[keep.stop:] = 0
            z = torch.from_numpy(logits[keep]).requires_grad_()
            theirs = loss(z, torch.from_numpy(targets[keep]))
            theirs.backward()
            value, grad = jax.value_and_grad(ours)(jnp.asarray(logits), jnp.asarray(r), targets)
            assert abs(float(value) - theirs.item()) < 1e-13
            np.testing.assert_allclose(np.asarray(grad)[keep], z.grad.numpy(), atol=1e-13)
            assert not np.asarray(grad)[keep.stop:].any()


def test_size_weighs_corpora_by_their_training_split_and_equal_adds_nothing():
    sources = {"big": ToySource(24, 0), "small": ToySource(8, 1), "mid": ToySource(16, 2)}
    assert corpus_weight_table("size", sources) == {"big": 1.5, "small": 0.5, "mid": 1.0}  # size / mean size
    assert BatchWeights.of(TrainOptions(), sources) == BatchWeights()  # the paper's: nothing added to a batch
    batch = SimpleNamespace(corpus="small", attention_mask=np.ones((2, 4)), input_values=np.zeros((2, 4)),
                            labels=np.array([0, 5]), native_labels=np.array([0, 2]), weights=np.ones(2), dims=None)
    plain, = device_batches([batch], TrainOptions(), SimpleNamespace(dimensions=()), None)
    assert set(plain) == {"input_values", "attention_mask", "targets", "weights", "task_weights"}
    weighted, = device_batches([batch], TrainOptions(), SimpleNamespace(dimensions=()), None,
                               BatchWeights.of(TrainOptions(corpus_weights="size"), sources))
    assert np.asarray(weighted["corpus_weight"]).tolist() == [0.5, 0.5]


def test_training_with_class_weights_balanced_sampling_and_size_weights(tmp_path):
    model, params, labels = tiny(**NO_DROPOUT)
    tr = {"toy-a": Skewed(SKEW), "toy-b": Skewed([0, 1, 2, 3, 4, 5] * 2, 1)}
    va = {"toy-a": ToySource(6, 2), "toy-b": ToySource(6, 3)}
    settings = dict(class_weights="balanced", sampling="balanced", corpus_weights="size")
    result = train(model, params, labels, tr, va, tmp_path, opts(steps=2, eval_every=2, **settings),
                   say=lambda s: None)
    assert result.finished and int(result.state.skipped) == 0
    assert {k: v for k, v in json.loads((tmp_path / "run.json").read_text())["options"].items()
            if k in settings} == settings


# ------------------------------------------------------------------------------------------------- weight files


def write(tmp_path, text: str, name: str = "w.csv"):
    """A weights file holding text."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_weights_file_is_recorded_by_value_so_a_resume_with_other_weights_is_refused(tmp_path):
    path = write(tmp_path, "corpus,class,weight\ndemo-a,high_negative,2\n\ndemo-a,low_neutral,0.5\ndemo-b,joy,3\n")
    args = cli.parse_args(["--class-weights", str(path), "--corpus-weights", str(write(
        tmp_path, "corpus,weight\ndemo-b,2\n", "c.csv"))])
    options = stages.train_options(args, demo=True)
    assert options.class_weights == {"demo-a": {"high_negative": 2.0, "low_neutral": 0.5}, "demo-b": {"joy": 3.0}}
    assert options.corpus_weights == {"demo-b": 2.0}
    before = runconfig.build(run_options(options), {}, {})
    write(tmp_path, "corpus,class,weight\ndemo-a,high_negative,4\n")
    after = stages.train_options(cli.parse_args(["--class-weights", str(path)]), demo=True)
    diffs = runconfig.differences(before, runconfig.build(run_options(after), {}, {}))
    assert diffs[0].startswith("--class-weights (was {'demo-a': {'high_negative': 2.0, 'low_neutral': 0.5}, ")
    (tmp_path / "run.json").write_text(json.dumps(dict(before, stage="finetune", corpora={"demo-a": "x"})))
    again = stages.train_options(cli.parse_args(["--config", str(tmp_path / "run.json")]), demo=True)
    assert (again.class_weights, again.corpus_weights) == (options.class_weights, options.corpus_weights)
    write(tmp_path, "class_weights:\n  demo-a: {high_negative: 2}\nsampling: balanced\n", "c.yaml")
    mapped = stages.train_options(cli.parse_args(["--config", str(tmp_path / "c.yaml")]), demo=True)
    assert (mapped.class_weights, mapped.sampling) == ({"demo-a": {"high_negative": 2.0}}, "balanced")


@pytest.mark.parametrize("text, message", [
    (None, "no such file (give none or balanced, or a CSV file of corpus,class,weight rows)"),
    ("", ":1: the header must be corpus,class,weight, got nothing"),
    ("corpus,label,weight\n", ":1: the header must be corpus,class,weight, got corpus,label,weight"),
    ("corpus,class,weight\n", ": no weights in it (expected corpus,class,weight rows)"),
    ("corpus,class,weight\ndemo-a,sad\n", ":2: 2 field(s), expected 3 (corpus,class,weight)"),
    ("corpus,class,weight\ndemo-a,sad,heavy\n",
     ":2: the weight of corpus demo-a class sad must be a positive number, got 'heavy'"),
    ("corpus,class,weight\n\ndemo-a,sad,-1\n", ":3: the weight of corpus demo-a class sad must be a positive number"),
    ("corpus,class,weight\ndemo-a,sad,nan\n", ":2: the weight of corpus demo-a class sad must be a positive number"),
    ("corpus,class,weight\ndemo-a,sad,0\n", ":2: the weight of corpus demo-a class sad must be a positive number"),
    ("corpus,class,weight\n,sad,1\n", ":2: empty corpus or class"),
    ("corpus,class,weight\ndemo-a,sad,1\ndemo-a,sad,2\n",
     ":3: a second weight for corpus demo-a class sad (the first: --class-weights "),
])
def test_a_bad_class_weights_file_is_one_line_naming_the_file_and_row(tmp_path, text, message):
    """Refused as the flag is parsed, before anything is built or read."""
    path = tmp_path / "w.csv" if text is None else write(tmp_path, text)
    with pytest.raises(WeightsError) as error:
        cli.parse_args(["--class-weights", str(path)])
    assert str(error.value).startswith(f"--class-weights {path}") and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value, message", [
    ({"demo-a": 2}, "--class-weights: corpus demo-a must map class names to weights, got 2"),
    ({"demo-a": {"sad": True}}, "--class-weights: the weight of corpus demo-a class sad must be a positive number"),
    (["demo-a"], "--class-weights must be none or balanced, a CSV file of corpus,class,weight rows or a mapping"),
])
def test_a_bad_mapping_in_a_config_file_is_named(value, message):
    with pytest.raises(WeightsError, match=message.replace("(", r"\(")):
        parse_class_weights(value)


def test_a_bad_corpus_weights_file_is_named_and_per_corpus_updates_refuse_weights(tmp_path):
    path = write(tmp_path, "corpus,weight\ndemo-a,1\ndemo-b,inf\n")
    with pytest.raises(WeightsError, match=rf"^--corpus-weights {path}:3: the weight of corpus demo-b must be a "
                                           r"positive number, got 'inf'$"):
        cli.parse_args(["--corpus-weights", str(path)])
    with pytest.raises(TrainError, match="--corpus-weights weighs the corpora of a round; with --update per-corpus"):
        TrainOptions(corpus_weights="size", update="per-corpus").validate()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The prepared demo corpora, as a stage opens them."""
    data = tmp_path_factory.mktemp("demo")
    prepare_demo(data, n_per_class=1, n_speakers=3, log=lambda m: None)
    return {n: open_prepared(n, data) for n in ("demo-a", "demo-b", "demo-c")}


@pytest.mark.parametrize("rows, argv, message", [
    ("demo-a,low_positive,2\ndemo-d,sad,1\n", [],
     ":3: corpus 'demo-d' is not among the corpora trained on (nearest known: demo-c, demo-b, demo-a)"),
    ("demo-a,high_negativ,2\n", [],
     (":2: corpus demo-a has no emotion class 'high_negativ' "
      "(nearest known: high_negative, low_negative, high_neutral)")),
    ("demo-b,joy,2\ndemo-b,angry,2\n", ["--stage", "transfer", "--corpus", "demo-b"],
     (":3: corpus demo-b has no native class 'angry' "
      "(none is close; known: bored, fear, joy, neutral, surprise, tender)")),
])
def test_unknown_corpora_and_classes_are_named_with_their_row_before_a_model_is_built(tmp_path, corpora, rows,
                                                                                      argv, message):
    path = write(tmp_path, "corpus,class,weight\n" + rows)
    args = cli.parse_args([*argv, "--class-weights", str(path)])
    chosen = {n: c for n, c in corpora.items() if args.stage == "finetune" or n == args.corpus}
    with pytest.raises(WeightsError) as error:
        stages.check_balance(args, chosen, demo=True)
    assert str(error.value) == f"--class-weights {path}{message}"


def test_a_dimensional_task_refuses_class_balancing(corpora, tmp_path):
    stages.check_balance(cli.parse_args(["--class-weights", "balanced", "--task", "both"]), corpora, demo=True)
    with pytest.raises(stages.UsageError, match=r"^--task dimensional trains no classes, so --sampling balanced has "
                                                r"nothing to balance"):
        stages.check_balance(cli.parse_args(["--sampling", "balanced", "--task", "dimensional"]), corpora, demo=True)
    path = write(tmp_path, "corpus,weight\ndemo-x,2\n")
    with pytest.raises(WeightsError, match=r":2: corpus 'demo-x' is not among the corpora trained on \(nearest"):
        stages.check_balance(cli.parse_args(["--corpus-weights", str(path)]), corpora, demo=True)


def test_train_py_says_one_line_and_builds_nothing(tmp_path, corpora, capsys):
    path = write(tmp_path, "corpus,class,weight\ndemo-a,hig_negative,2\n")
    data_dir = corpora["demo-a"].directory.parent
    code = cli.main(["--data-dir", str(data_dir), "--class-weights", str(path), "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: --class-weights {path}:2: corpus demo-a has no emotion class "
                                 "'hig_negative' (nearest known: high_negative, low_negative, high_positive)"]
    assert not (tmp_path / "run").exists()


def test_rows_without_a_hard_label_are_not_counted_and_weigh_one():
    """Utterances kept for their label distribution alone (label -1, prepare --keep-no-majority) neither count in the
    balanced weights nor take another class's weight in the loss."""
    from exhubert_jax.training.imbalance import balanced_weights

    y = np.array([0, 0, 0, 3, -1, -1])
    present = np.array([0, 3])
    expected = compute_class_weight("balanced", classes=present, y=y[y >= 0])
    np.testing.assert_allclose(balanced_weights(y, 6)[present], expected, rtol=1e-15)
    weights = BatchWeights(classes={"a": np.array([1.0, 2, 3, 4, 5, 6])})
    arrays = {"targets": np.array([0, 5, -1], np.int32), "weights": np.ones(3, np.float32)}
    np.testing.assert_array_equal(weights.add(arrays, "a")["class_weights"], [1.0, 6.0, 1.0])
