"""`python -m exhubert_jax.data.synthetic`, the command's earlier name, kept working:
it runs exhubert_jax.data.demo.synthetic and lends its names."""

from exhubert_jax.process.commands import earlier_name

__getattr__ = earlier_name(__name__, "exhubert_jax.data.demo.synthetic")
