"""Training: options, stages, the optimiser, the jitted step, update rules, the round-robin loop and its monitor, run
checkpoints and the run record (run.json)."""
