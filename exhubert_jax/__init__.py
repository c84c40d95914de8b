"""exhubert-jax: ExHuBERT (HuBERT + Backbone Block Expansion) for speech emotion recognition in JAX/Flax."""

import importlib

# Imported on first use, so that a command (exhubert_jax.cli) starts without JAX and answers Ctrl-C at once.
_LAZY = {
    "from_pretrained": "hub.repos", "save_pretrained": "pretrained",  # from_pretrained takes Hub ids too
    **dict.fromkeys(("HubertConfig", "from_hf_config", "preset", "to_hf_config"), "model.config"),
    **dict.fromkeys(("EncoderOutput", "HubertForSequenceClassification", "HubertModel", "HubertOutput"),
                    "model.hubert"),
    # an adapted config's leaves come from its adapters, so these two go through adapters.wrapper
    **dict.fromkeys(("init_params", "param_shapes", "build", "wrap"), "adapters.wrapper"),
    "expand": "model.expansion",
}


def __getattr__(name: str):
    """The public names above, and submodules as attributes, imported when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = sorted(_LAZY)
