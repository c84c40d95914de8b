"""Process-level plumbing every layer may use: every command's entry point (commands), all-or-nothing file writes,
Ctrl-C at safe points, the workdir lock, huge-page malloc, output folders, and how a run's folder is read."""
