"""What every command's process needs, below everything else: its entry point (commands), its declared options and
config files (options), Ctrl-C at safe points, files written whole, the workdir lock, huge-page malloc, output
folders, and how a training run's folder is read."""
