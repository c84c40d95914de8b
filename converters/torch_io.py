"""Checkpoint file I/O, kept at this name for scripts that import it: it lives in exhubert_jax.hub.torch_io, since
from_pretrained reads Hub checkpoints itself and the library never imports converters."""

from exhubert_jax.hub.torch_io import (  # noqa: F401
    WEIGHT_FILES,
    LazyTensor,
    SourceError,
    open_weight_file,
    read_hf_directory,
    read_source,
    read_weight_file,
    tensor_bytes,
    write_safetensors,
)
