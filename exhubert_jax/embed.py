"""`python -m exhubert_jax.embed`, the command's earlier name, kept working:
it runs exhubert_jax.inference.embedding_files and lends its names."""

from exhubert_jax.process.commands import earlier_name

__getattr__ = earlier_name(__name__, "exhubert_jax.inference.embedding_files")
