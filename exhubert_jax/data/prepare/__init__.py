"""Preparing corpora as TFDS datasets: splits and folds, decoding, the builders, planning and writing, and the
command (python -m exhubert_jax.data.prepare)."""
