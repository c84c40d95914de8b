"""Protocols end to end (k-fold, EmoBox folds, leave-one-corpus-out): one training run per fold, each evaluated, and
their summary."""
