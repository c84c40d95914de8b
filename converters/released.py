"""The released ExHuBERT's key layout, kept at this name for scripts that import it: it lives in
exhubert_jax.hub.released, since from_pretrained converts the released checkpoint itself and the library never imports
converters."""

from exhubert_jax.hub.released import (  # noqa: F401
    ARCHITECTURE,
    STYLE,
    ReleasedLayoutError,
    check_exportable,
    from_ours,
    is_released,
    layer_count,
    to_ours,
)
