"""`python -m exhubert_jax.data.audit`: a leakage audit of prepared corpora (exact and near-duplicate audio, where
they sit, speaker overlap, per-split statistics), and the cheap exact-duplicate check that train.py runs."""
