"""Degenerate validation and test splits: a UAR on one class, or on classes with fewer than MIN_PER_CLASS examples,
is shown with its caveat (a mark beside the score, the reason under the table, a warning line), never bare."""

from __future__ import annotations

import numpy as np

from exhubert_jax.evaluation.reports import markdown_table, uar_table
from exhubert_jax.evaluation.split_caveats import MARK, MIN_PER_CLASS, class_counts, split_caveat
from exhubert_jax.training.loop import train
from toys import ToySource, opts, sources, tiny


def test_one_class_few_examples_and_enough():
    assert split_caveat({"anger": 40}) == ("one class only (anger: 40): its UAR is that class's recall, 100 % for a "
                                           "model that always answers it")
    assert split_caveat({"anger": 40, "sadness": 0}).startswith("one class only (anger: 40)")
    assert split_caveat({"anger": 3, "sadness": 3}) == ("fewer than 5 examples of each of its 2 classes (3 each): one "
                                                        "utterance moves a class's recall by up to 33 points")
    assert split_caveat({"anger": 40, "sadness": 2, "fear": 4}).startswith("fewer than 5 examples of sadness: 2, "
                                                                            "fear: 4: one utterance moves")
    assert split_caveat({"anger": MIN_PER_CLASS, "sadness": 90}) is None
    assert split_caveat({}) is None
    assert class_counts(np.array([0, 0, 2, -1]), ["a", "b", "c"]) == {"a": 2, "c": 1}  # -1: unlabelled


def test_the_evaluation_table_marks_the_score_and_says_why():
    result = {"corpus": "toneclass", "split": "test", "n": 40, "uar": 1.0, "wa": 1.0, "f1": 1.0, "kappa": 0.0,
              "class_names": ["anger"], "per_class_recall": {"anger": 1.0}, "caveat": split_caveat({"anger": 40})}
    table = markdown_table([result])
    assert f"| toneclass {MARK} | 40 |" in table
    assert f"{MARK} toneclass, test split: one class only (anger: 40)" in table
    plain = markdown_table([dict(result, caveat=None)])
    assert MARK not in plain and "one class only" not in plain


def test_the_validation_table_marks_the_score_and_says_why():
    table = uar_table({"a": 1.0, "b": 0.5, "mean": 0.75}, caveats={"a": "one class only (x: 3): ..."})
    assert f"| a {MARK} | 1.0000 |" in table and "| b | 0.5000 |" in table
    assert table.endswith(f"{MARK} a, validation split: one class only (x: 3): ...")


class OneClassSource(ToySource):
    """A toy validation split whose utterances all carry class 0, listing its labels as a prepared split does."""

    def __init__(self, n: int, seed: int):
        super().__init__(n, seed)
        for item in self.items:
            item.update(label=0, native_index=0)
        self.labels = self.native_indices = np.zeros(n, np.int32)


def test_training_warns_of_a_one_class_validation_split_beside_every_uar(tmp_path):
    model, params, labels = tiny()
    train_sources, val = sources()
    val = dict(val, **{"toy-b": OneClassSource(12, 3)})
    said: list[str] = []
    result = train(model, params, labels, train_sources, val, tmp_path, opts(quiet=False), say=said.append)
    assert "warning: toy-b, validation split: one class only (low_negative: 12)" in "\n".join(said)
    steps = [line for line in said if line.startswith("step ") and "validation UAR" in line]
    assert steps and all(f"toy-b {line.split('toy-b ')[1][:5]} {MARK}" in line for line in steps)
    assert "toy-a" in steps[0] and f"toy-a {steps[0].split('toy-a ')[1][:5]} {MARK}" not in steps[0]
    assert list(result.val_caveats) == ["toy-b"]
