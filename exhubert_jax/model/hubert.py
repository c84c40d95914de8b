"""HuBERT encoder and sequence-classification head in Flax, numerically equal to transformers' PyTorch model."""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from exhubert_jax.data.audio import SAMPLE_RATE
from exhubert_jax.model.config import ConfigError, HubertConfig
from exhubert_jax.model.expansion_layout import initial_linears
from exhubert_jax.model.layers import (EncoderLayer, activation, at_least_f32, conv_output_lengths, frame_mask,
                                       grouped_conv, layer_norm, normal_init, spec_augment_feature_mask,
                                       spec_augment_time_mask)
from exhubert_jax.model.stack import layer_stack

Array = jax.Array


class EncoderOutput(NamedTuple):
    """The bare encoder's outputs: the last hidden state (B, T', D), optional stacked hidden states, the frame mask."""

    last_hidden_state: Array
    hidden_states: Array | None = None
    frame_mask: Array | None = None


class HubertOutput(NamedTuple):
    """Classifier outputs: logits, optional stacked hidden states, the frame mask, and the regression head's values
    (B, len(config.dimensions)) when the config has dimensions."""

    logits: Array
    hidden_states: Array | None = None
    frame_mask: Array | None = None
    values: Array | None = None


class StridedConv(nn.Module):
    """Conv1d without padding; kernel stored as (k, in, out)."""

    features: int
    kernel_size: int
    stride: int
    use_bias: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=(0, 1)),
                            (self.kernel_size, x.shape[-1], self.features), jnp.float32)
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (self.stride,), "VALID",
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


class ConvLayer(nn.Module):
    """One feature-encoder layer: conv, optional group/layer norm, activation."""

    config: HubertConfig
    index: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        dim = cfg.conv_dim[self.index]
        x = StridedConv(dim, cfg.conv_kernel[self.index], cfg.conv_stride[self.index], cfg.conv_bias,
                        self.dtype, name="conv")(x)
        if cfg.feat_extract_norm == "layer":
            x = layer_norm(1e-5, self.dtype, "layer_norm")(x)
        elif self.index == 0:
            x = GroupNormPerChannel(self.dtype, name="layer_norm")(x)
        return activation(cfg.feat_extract_activation)(x)


class GroupNormPerChannel(nn.Module):
    """GroupNorm with one group per channel: normalise each channel over time (PyTorch GroupNorm(C, C))."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        x32 = x.astype(at_least_f32(x.dtype))
        mean = x32.mean(axis=1, keepdims=True)
        var = jnp.square(x32 - mean).mean(axis=1, keepdims=True)
        return ((x32 - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias).astype(self.dtype)


class FeatureEncoder(nn.Module):
    """The CNN that turns 16 kHz samples into 50 Hz frames."""

    config: HubertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_values: Array) -> Array:
        x = input_values[..., None].astype(self.dtype)
        for i in range(len(self.config.conv_dim)):
            x = ConvLayer(self.config, i, self.dtype, name=f"conv_layers_{i}")(x)
        return x


class FeatureProjection(nn.Module):
    """Optional LayerNorm, then Linear conv_dim[-1] -> hidden_size, then dropout."""

    config: HubertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        cfg = self.config
        if cfg.feat_proj_layer_norm:
            x = layer_norm(cfg.layer_norm_eps, self.dtype, "layer_norm")(x)
        x = nn.Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init, name="projection")(x)
        return nn.Dropout(cfg.feat_proj_dropout)(x, deterministic=deterministic)


class PositionalConvEmbedding(nn.Module):
    """Grouped Conv1d with weight norm over the kernel axis, 'same' padding minus the last frame, then activation."""

    config: HubertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        k, groups, dim = cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups, cfg.hidden_size
        v = self.param("weight_v", nn.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=(0, 1)),
                       (k, dim // groups, dim), jnp.float32)
        g = self.param("weight_g", lambda rng, shape: jnp.sqrt(jnp.sum(jnp.square(v), axis=(1, 2), keepdims=True)),
                       (k, 1, 1))
        bias = self.param("bias", nn.initializers.zeros, (dim,), jnp.float32)
        kernel = g * v * jax.lax.rsqrt(jnp.sum(jnp.square(v), axis=(1, 2), keepdims=True))
        y = grouped_conv(x.astype(self.dtype), kernel.astype(self.dtype), groups)
        y = y + bias.astype(self.dtype)
        if k % 2 == 0:
            y = y[:, :-1]
        return activation(cfg.feat_extract_activation)(y)


class Encoder(nn.Module):
    """Positional conv + the stack of transformer layers, run as bound submodules in one loop (exhubert_jax.model.stack),
    compiled once whatever the depth.

    Parameters follow exhubert_jax.model.expansion_layout: `layers` holds the original layers stacked on a leading axis
    (L, ...); an expanded model adds `expansion/layers` (L, copies, ...) and the Linears its layout places after
    the layers. Each loop step runs one group (an original, then its copies) by the layout's slot rules.
    """

    config: HubertConfig
    dtype: Any = jnp.float32
    remat: bool = False
    attention_implementation: str | None = None
    scan_unroll: int = 1  # layer groups per loop iteration (lax.scan unroll); XLA cost analysis counts a loop once

    def _stacked_layer_params(self, rng: Array, leading: tuple[int, ...]) -> Any:
        """Initialise independent layers and stack them on the leading axes."""
        layer = EncoderLayer(self.config, self.dtype)
        dummy = jnp.zeros((1, 1, self.config.hidden_size), jnp.float32)
        n = 1
        for d in leading:
            n *= d
        init_one = lambda r: layer.init(r, dummy, None, True)["params"]
        params = jax.vmap(init_one)(jax.random.split(rng, n))
        return jax.tree.map(lambda p: p.reshape(*leading, *p.shape[1:]), params)

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, deterministic: bool, output_hidden_states: bool):
        cfg = self.config
        if mask is not None:
            x = jnp.where(mask[..., None], x, 0.0).astype(x.dtype)
        x = x + PositionalConvEmbedding(cfg, self.dtype, name="pos_conv_embed")(x)
        final_norm = layer_norm(cfg.layer_norm_eps, self.dtype, "layer_norm")
        if not cfg.do_stable_layer_norm:
            x = final_norm(x)
        x = nn.Dropout(cfg.hidden_dropout)(x, deterministic=deterministic)

        layers = self.param("layers", lambda rng: self._stacked_layer_params(rng, (cfg.num_hidden_layers,)))
        expansion = self.param("expansion", lambda rng: self._init_expansion(rng)) if cfg.expansion_copies else {}
        keys = None
        if not deterministic:  # one key per slot, in execution order
            slots = cfg.expansion_copies + 1
            keys = jax.random.split(self.make_rng("dropout"), cfg.num_hidden_layers * slots)
            keys = keys.reshape(cfg.num_hidden_layers, slots, *keys.shape[1:])
        stack = layer_stack(cfg, layers, expansion, self.remat, self.scan_unroll)
        x_in = x
        x, stacked = stack(cfg, self.dtype, self.attention_implementation, output_hidden_states, name="stack")(
            x, mask, keys)
        hidden = None
        if output_hidden_states:
            stacked = stacked.reshape(-1, *stacked.shape[2:])
            hidden = jnp.concatenate([x_in[None], stacked], axis=0)
        if cfg.do_stable_layer_norm:
            x = final_norm(x)
        return x, hidden

    def _init_expansion(self, rng: Array) -> dict:
        """Fresh expansion parameters (normally made by exhubert_jax.model.expansion.expand from the originals)."""
        cfg = self.config
        n_layers, copies = cfg.num_hidden_layers, cfg.expansion_copies
        linears = initial_linears(n_layers, copies, cfg.expansion_style, cfg.hidden_size)
        return {"layers": self._stacked_layer_params(rng, (n_layers, copies)),
                **{path[-1]: value for path, value in linears.items()}}


class HubertModel(nn.Module):
    """The bare HuBERT encoder: returns the last hidden state (B, T', D), all hidden states on request."""

    config: HubertConfig
    dtype: Any = jnp.float32
    remat: bool = False
    attention_implementation: str | None = None  # jax.nn.dot_product_attention backend: None, 'xla' or 'cudnn'
    scan_unroll: int = 1
    adapters_installed: bool = False  # set by exhubert_jax.adapters.wrap, which runs the config's adapters around it

    @nn.compact
    def __call__(self, input_values: Array, attention_mask: Array | None = None, deterministic: bool = True,
                 output_hidden_states: bool = False) -> EncoderOutput:
        cfg = self.config
        refuse_unwrapped(cfg, self.adapters_installed)
        if input_values.ndim != 2:
            raise ValueError(f"input_values must have shape (batch, samples), got {input_values.shape}")
        features = FeatureEncoder(cfg, self.dtype, name="feature_extractor")(input_values)
        mask = None
        if attention_mask is not None:
            lengths = conv_output_lengths(cfg, attention_mask.sum(-1))
            mask = frame_mask(lengths, features.shape[1])
        x = FeatureProjection(cfg, self.dtype, name="feature_projection")(features, deterministic)
        if cfg.mask_time_prob > 0.0 or cfg.mask_feature_prob > 0.0:
            embed = self.param("masked_spec_embed", nn.initializers.uniform(1.0), (cfg.hidden_size,), jnp.float32)
            if not deterministic and cfg.apply_spec_augment:
                x = self._spec_augment(x, mask, embed)
        encoder = Encoder(cfg, self.dtype, self.remat, self.attention_implementation, self.scan_unroll, name="encoder")
        x, hidden = encoder(x, mask, deterministic, output_hidden_states)
        return EncoderOutput(x, hidden, mask)

    def _spec_augment(self, x: Array, mask: Array | None, embed: Array) -> Array:
        """SpecAugment: time spans replaced by masked_spec_embed, feature spans zeroed (training only)."""
        cfg = self.config
        batch, frames, dim = x.shape
        lengths = mask.sum(-1) if mask is not None else jnp.full((batch,), frames)
        if cfg.mask_time_prob > 0:
            time_mask = spec_augment_time_mask(self.make_rng("dropout"), lengths, frames, cfg.mask_time_prob,
                                               cfg.mask_time_length, cfg.mask_time_min_masks)
            x = jnp.where(time_mask[..., None], embed.astype(x.dtype), x)
        if cfg.mask_feature_prob > 0:
            feat_mask = spec_augment_feature_mask(self.make_rng("dropout"), batch, dim, cfg.mask_feature_prob,
                                                  cfg.mask_feature_length, cfg.mask_feature_min_masks)
            x = jnp.where(feat_mask[:, None, :], 0.0, x).astype(x.dtype)
        return x


class HubertForSequenceClassification(nn.Module):
    """HuBERT + projector + masked mean pooling + classifier, as transformers' HubertForSequenceClassification;
    with config.dimensions, a regression Linear (`regressor`) on the same pooled features."""

    config: HubertConfig
    dtype: Any = jnp.float32
    remat: bool = False
    attention_implementation: str | None = None  # jax.nn.dot_product_attention backend: None, 'xla' or 'cudnn'
    scan_unroll: int = 1
    adapters_installed: bool = False  # set by exhubert_jax.adapters.wrap, which runs the config's adapters around it

    @nn.compact
    def __call__(self, input_values: Array, attention_mask: Array | None = None, deterministic: bool = True,
                 output_hidden_states: bool = False) -> HubertOutput:
        cfg = self.config
        need_hidden = output_hidden_states or cfg.use_weighted_layer_sum
        out = HubertModel(cfg, self.dtype, self.remat, self.attention_implementation, self.scan_unroll,
                          self.adapters_installed, name="hubert")(input_values, attention_mask, deterministic,
                                                                  need_hidden)
        if cfg.use_weighted_layer_sum:
            n = out.hidden_states.shape[0]
            weights = self.param("layer_weights", nn.initializers.constant(1.0 / n), (n,), jnp.float32)
            norm = jax.nn.softmax(weights)
            h = jnp.einsum("l,lbtd->btd", norm, out.hidden_states.astype(at_least_f32(self.dtype))).astype(self.dtype)
        else:
            h = out.last_hidden_state
        h = nn.Dense(cfg.classifier_proj_size, dtype=self.dtype, kernel_init=normal_init, name="projector")(h)
        h = h.astype(at_least_f32(self.dtype))
        if out.frame_mask is None:
            pooled = h.mean(axis=1)
        else:
            m = out.frame_mask[..., None]
            pooled = jnp.where(m, h, 0.0).sum(axis=1) / m.sum(axis=1)
        head = lambda n, name: nn.Dense(n, dtype=at_least_f32(self.dtype), kernel_init=normal_init, name=name)(pooled)
        logits = head(cfg.num_labels, "classifier") if cfg.num_labels else pooled[:, :0]
        values = head(len(cfg.dimensions), "regressor") if cfg.dimensions else None
        return HubertOutput(logits, out.hidden_states if output_hidden_states else None, out.frame_mask, values)


def refuse_unwrapped(config: HubertConfig, installed: bool) -> None:
    """A config that records adapters runs only with them installed: never silently as plain HuBERT."""
    if config.adapters and not installed:
        raise ConfigError(f"the config records adapters ({', '.join(config.adapters)}) that this plain model does not "
                          "run: build it with exhubert_jax.adapters.build(config) (or wrap(model)); "
                          "from_pretrained does so")


def init_params(config: HubertConfig, rng: Array | int = 0, samples: int = SAMPLE_RATE,
                model: nn.Module | None = None) -> dict:
    """Randomly initialised parameters for `model` (default HubertForSequenceClassification(config))."""
    if isinstance(rng, int):
        rng = jax.random.PRNGKey(rng)
    model = model or HubertForSequenceClassification(config)
    dummy = jnp.zeros((1, samples), jnp.float32)
    return jax.jit(lambda r: model.init(r, dummy)["params"])(rng)


def param_shapes(config: HubertConfig, samples: int = SAMPLE_RATE, model: nn.Module | None = None) -> dict:
    """Parameter shapes and dtypes of `model` (default HubertForSequenceClassification(config)), nothing
    allocated (jax.eval_shape)."""
    model = model or HubertForSequenceClassification(config)
    dummy = jax.ShapeDtypeStruct((1, samples), jnp.float32)
    return jax.eval_shape(lambda r, x: model.init(r, x)["params"], jax.random.PRNGKey(0), dummy)
