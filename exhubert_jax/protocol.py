"""`python -m exhubert_jax.protocol`, the command's earlier name, kept working:
it runs exhubert_jax.protocols.runner and lends its names."""

from exhubert_jax.process.commands import earlier_name

__getattr__ = earlier_name(__name__, "exhubert_jax.protocols.runner", hugepages=True)
