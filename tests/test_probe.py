"""The linear probe: C picked on validation, standardisation, a known separable case."""

import numpy as np
import pytest

from exhubert_jax.inference import probe


def _blobs(rng, n, k=3, d=8, spread=1.0, scale=1.0):
    """Gaussian blobs: class c centred at 2 * e_c, features scaled by `scale`."""
    y = rng.integers(0, k, n)
    x = rng.normal(0, spread, (n, d))
    x[np.arange(n), y] += 2.0
    return x * scale, y


def test_probe_learns_separable_classes_and_reports_the_grid():
    rng = np.random.default_rng(0)
    (xt, yt), (xv, yv), (xs, ys) = (_blobs(rng, 300), _blobs(rng, 150), _blobs(rng, 150))
    model, c, scores = probe.fit_probe(xt, yt, xv, yv, 3)
    assert set(scores) == set(probe.C_GRID) and scores[c] == max(scores.values())
    assert (model.predict(xs) == ys).mean() > 0.8


def test_standardisation_makes_the_probe_scale_free():
    rng = np.random.default_rng(1)
    (xt, yt), (xv, yv) = _blobs(rng, 200), _blobs(rng, 100)
    _, c1, s1 = probe.fit_probe(xt, yt, xv, yv, 3)
    _, c2, s2 = probe.fit_probe(1e4 * xt, yt, 1e4 * xv, yv, 3)
    assert c1 == c2 and s1 == pytest.approx(s2)


def test_c_is_chosen_on_validation_with_ties_to_the_smaller_c():
    rng = np.random.default_rng(2)
    x, y = _blobs(rng, 100, spread=0.01)  # trivially separable: every C scores 1.0 on validation
    _, c, scores = probe.fit_probe(x, y, x, y, 3, grid=(10.0, 0.1, 1.0))
    assert set(scores.values()) == {1.0} and c == 0.1
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        probe.fit_probe(x, np.zeros(100, int), x, y, 3)
