"""Scoring checkpoints: metrics, bootstrap intervals, paired tests, calibration, continuous emotion, the one forward
pass, per-corpus evaluation, reports and the evaluation runs behind evaluate.py."""
