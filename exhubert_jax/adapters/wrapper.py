"""Adapters wrap the model from outside: `Adapted` runs a plain model with its config's adapters installed as flax
interceptors, its parameters exactly the wrapped model's (one shared scope, as gemma's LoRA wrapper does).

    model = build(config)                  # plain HuBERT, or Adapted(...) when the config records adapters
    params = init_params(config, seed)     # the adapters' leaves included
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from exhubert_jax.adapters.interceptors import installed
from exhubert_jax.adapters.registry import check_specs
from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.model import hubert
from exhubert_jax.model.config import HubertConfig


class Adapted(nn.Module):
    """`model` with the adapters its config records installed around every call; attributes read through."""

    model: nn.Module

    def __post_init__(self):
        super().__post_init__()
        if self.scope is not None:  # the wrapper adds no level to the parameter tree
            nn.share_scope(self, self.model)

    def __call__(self, *args, **kwargs):
        with installed(self.model.config.adapters):
            return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside an Adapted one (the model itself otherwise), adapters no longer marked installed."""
    inner = model.model if isinstance(model, Adapted) else model
    return inner.clone(adapters_installed=False) if getattr(inner, "adapters_installed", False) else inner


def wrap(model: nn.Module) -> nn.Module:
    """The model with its config's adapters installed: Adapted(model), or the model itself if it records none."""
    model = unwrap(model)
    if not model.config.adapters:
        return model
    check_specs(model.config)
    return Adapted(model.clone(adapters_installed=True))


def with_config(model: nn.Module, config: HubertConfig) -> nn.Module:
    """The same kind of model (dtype, remat, attention) for another config, wrapped as that config needs."""
    return wrap(unwrap(model).clone(config=config))


def build(config: HubertConfig, **model_options: Any) -> nn.Module:
    """HubertForSequenceClassification(config, **model_options), wrapped as the config's adapters need."""
    return wrap(hubert.HubertForSequenceClassification(config, **model_options))


def param_shapes(config: HubertConfig, samples: int = SAMPLE_RATE) -> dict:
    """Parameter shapes of build(config), adapters' leaves included; nothing allocated."""
    return hubert.param_shapes(config, samples, model=build(config))


def init_params(config: HubertConfig, rng: jax.Array | int = 0, samples: int = SAMPLE_RATE) -> dict:
    """Randomly initialised parameters of build(config), adapters' leaves included."""
    return hubert.init_params(config, rng, samples, model=build(config))
