"""The root scripts' commands, over the library: train.py's parser and main (train), evaluate.py's (evaluate) and
the evaluations it runs (evaluate_runs). Every command's one entry point (error lines, Ctrl-C) is
process.commands."""
