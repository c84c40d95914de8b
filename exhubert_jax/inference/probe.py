"""The linear probe of frozen embeddings (SUPERB, EmoBox): standardised multinomial logistic regression fitted on
the train split, its inverse regularisation C picked by validation UAR."""

from __future__ import annotations

import numpy as np

from exhubert_jax.evaluation import metrics

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def make_probe(c: float):
    """StandardScaler + LogisticRegression(C=c) (lbfgs, multinomial), deterministic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def fit_probe(x_train, y_train, x_val, y_val, num_classes: int, grid=C_GRID) -> tuple[object, float, dict]:
    """(probe fitted on train with the best C, that C, {C: validation UAR}); ties go to the smaller C (the
    stronger regularisation)."""
    x_train, x_val = np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)
    if len(np.unique(y_train)) < 2:
        raise ValueError("the train split has fewer than 2 classes; a probe cannot be fitted")
    scores, fitted = {}, {}
    for c in grid:
        fitted[c] = make_probe(c).fit(x_train, y_train)
        scores[c] = metrics.uar(y_val, fitted[c].predict(x_val), num_classes)
    best = max(grid, key=lambda c: (scores[c], -c))
    return fitted[best], float(best), {float(c): float(v) for c, v in scores.items()}
