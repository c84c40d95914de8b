"""The PyTorch key table, kept at this name for scripts that import it: it lives in exhubert_jax.hub.mapping, since
from_pretrained converts Hub checkpoints itself and the library never imports converters."""

from exhubert_jax.hub.mapping import (  # noqa: F401
    KEY_RULES,
    KNOWN_DROPS,
    STACKS,
    CheckpointMismatch,
    ConversionReport,
    Leaf,
    canonical_key,
    fold_heads,
    leaves,
    params_to_state_dict,
    refuse_unknown_leaves,
    split_heads,
    state_dict_to_params,
    to_flax_array,
    to_torch_array,
    torch_name,
    torch_tensors,
)
