"""Building blocks shared by the HuBERT model: layer norm, activations, attention, masks, SpecAugment."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from exhubert_jax.model.config import HubertConfig

Array = jax.Array
normal_init = nn.initializers.normal(0.02)
NEG_INF = -1e30


def activation(name: str) -> Callable[[Array], Array]:
    """The activation transformers calls `name` (gelu is the exact erf form)."""
    return {
        "gelu": partial(jax.nn.gelu, approximate=False),
        "gelu_new": partial(jax.nn.gelu, approximate=True),
        "gelu_pytorch_tanh": partial(jax.nn.gelu, approximate=True),
        "relu": jax.nn.relu,
        "silu": jax.nn.silu,
        "swish": jax.nn.silu,
    }[name]


def at_least_f32(dtype: Any) -> Any:
    """The dtype statistics, softmax and losses are computed in: float32, or wider if the model computes wider."""
    return jnp.promote_types(dtype, jnp.float32)


def layer_norm(eps: float, dtype: Any, name: str) -> nn.LayerNorm:
    """LayerNorm with PyTorch's eps and two-pass variance, statistics in float32."""
    return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32, use_fast_variance=False, name=name)


def conv_output_lengths(config: HubertConfig, lengths: Array) -> Array:
    """Frames produced by the feature encoder for inputs of `lengths` samples: floor((L - k) / s) + 1 per layer."""
    for k, s in zip(config.conv_kernel, config.conv_stride):
        lengths = (lengths - k) // s + 1
    return lengths


def frame_mask(lengths: Array, frames: int) -> Array:
    """Boolean (B, frames) mask of valid frames."""
    return jnp.arange(frames)[None, :] < lengths[:, None]


def dense(features: int, dtype: Any, name: str) -> nn.Dense:
    """A projection of the layer (adapters intercept it by name: exhubert_jax.adapters.interceptors)."""
    return nn.Dense(features, dtype=dtype, kernel_init=normal_init, name=name)


ATTENTION_IMPLEMENTATIONS = (None, "xla", "cudnn")


def fused_attention(q: Array, k: Array, v: Array, mask: Array | None, scale: float,
                    implementation: str | None) -> Array:
    """jax.nn.dot_product_attention over (B, T, heads, head_dim) with a (B, T) prefix padding mask.

    None/'xla' apply the mask as a boolean key mask. 'cudnn' (fused flash attention on NVIDIA GPUs, bf16/fp16)
    takes it as key lengths instead; the two agree because frame masks are prefixes (frame_mask).
    """
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "cudnn":
        lengths = None if mask is None else mask.sum(-1).astype(jnp.int32)
        return jax.nn.dot_product_attention(q, k, v, scale=scale, key_value_seq_lengths=lengths,
                                            implementation="cudnn")
    key_mask = None if mask is None else mask[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=key_mask, scale=scale, implementation=implementation)


def softmax_attention(q: Array, k: Array, v: Array, mask: Array | None, scale: float,
                      dropout: Callable[[Array], Array] | None = None) -> Array:
    """Attention written out: logits and softmax in float32 (or wider), optional dropout on the probabilities."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=at_least_f32(q.dtype)) * scale
    if mask is not None:
        logits = jnp.where(mask[:, None, None, :], logits, NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


class Attention(nn.Module):
    """Multi-head self-attention with a key padding mask; scale head_dim ** -0.5.

    `implementation` picks jax.nn.dot_product_attention's backend (None: XLA's choice; 'cudnn': fused attention on
    a GPU); it has no attention dropout, so it needs attention_dropout == 0 when training.
    """

    config: HubertConfig
    dtype: Any = jnp.float32
    implementation: str | None = None

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, deterministic: bool) -> Array:
        cfg = self.config
        proj = lambda name: dense(cfg.hidden_size, self.dtype, name)
        heads, head_dim = cfg.num_attention_heads, cfg.head_dim
        split = lambda t: t.reshape(*t.shape[:-1], heads, head_dim)
        q, k, v = (split(proj(f"{t}_proj")(x)) for t in ("q", "k", "v"))
        scale = head_dim ** -0.5
        if not deterministic and cfg.attention_dropout > 0.0:
            if self.implementation is not None:
                raise ValueError(f"attention implementation {self.implementation!r} has no attention dropout; "
                                 f"set attention_dropout=0 (it is {cfg.attention_dropout}) or use the default")
            drop = nn.Dropout(cfg.attention_dropout)
            out = softmax_attention(q, k, v, mask, scale, lambda p: drop(p, deterministic=False))
        elif jnp.finfo(q.dtype).bits > 32:  # the fused kernels compute in float32; keep a float64 model float64
            out = softmax_attention(q, k, v, mask, scale)
        else:
            out = fused_attention(q, k, v, mask, scale, self.implementation)
        out = out.reshape(*out.shape[:-2], cfg.hidden_size)
        return proj("out_proj")(out)


class FeedForward(nn.Module):
    """Linear D -> intermediate, activation, dropout, Linear back, dropout."""

    config: HubertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        cfg = self.config
        x = dense(cfg.intermediate_size, self.dtype, "intermediate_dense")(x)
        x = activation(cfg.hidden_act)(x)
        x = nn.Dropout(cfg.activation_dropout)(x, deterministic=deterministic)
        x = dense(cfg.hidden_size, self.dtype, "output_dense")(x)
        return nn.Dropout(cfg.hidden_dropout)(x, deterministic=deterministic)


class EncoderLayer(nn.Module):
    """One transformer layer: pre-LN (stable layer norm, large) or post-LN (base).

    Adapters (exhubert_jax.adapters) wrap the model from outside and intercept its projections and `branch`, each
    sub-layer's output before its residual addition.
    """

    config: HubertConfig
    dtype: Any = jnp.float32
    attention_implementation: str | None = None

    def branch(self, name: str, h: Array) -> Array:
        """The output of sub-layer `name` ('attention', 'feed_forward') before its residual addition: h itself."""
        return h

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, deterministic: bool) -> Array:
        cfg = self.config
        attention = Attention(cfg, self.dtype, self.attention_implementation, name="attention")
        ln1 = layer_norm(cfg.layer_norm_eps, self.dtype, "layer_norm")
        ffn = FeedForward(cfg, self.dtype, name="feed_forward")
        ln2 = layer_norm(cfg.layer_norm_eps, self.dtype, "final_layer_norm")
        drop = nn.Dropout(cfg.hidden_dropout)
        attend = lambda h: self.branch("attention", drop(attention(h, mask, deterministic),
                                                         deterministic=deterministic))
        feed = lambda h: self.branch("feed_forward", ffn(h, deterministic))
        if cfg.do_stable_layer_norm:
            x = x + attend(ln1(x))
            return x + feed(ln2(x))
        x = ln1(x + attend(x))
        return ln2(x + feed(x))


def _num_spans(prob: float, length: Array, span: int, min_masks: int, epsilon: Array, axis_len: int) -> Array:
    """transformers' compute_num_masked_span, vectorised."""
    n = jnp.floor(prob * length / span + epsilon).astype(jnp.int32)
    n = jnp.maximum(n, min_masks)
    n = jnp.where(n * span > axis_len, axis_len // span, n)
    return jnp.minimum(n, jnp.maximum(length - (span - 1), 0))


def _span_mask(rng: Array, lengths: Array, axis_len: int, prob: float, span: int, min_masks: int) -> Array:
    """Boolean (B, axis_len) mask of `span`-long spans with starts drawn without replacement inside each length."""
    if span > axis_len:
        raise ValueError(f"mask length {span} is longer than the axis it masks ({axis_len})")
    k_eps, k_starts = jax.random.split(rng)
    epsilon = jax.random.uniform(k_eps)
    counts = _num_spans(prob, lengths, span, min_masks, epsilon, axis_len)
    max_spans = max(min(int(prob * axis_len / span + 1), axis_len // span), min_masks, 1)
    starts_ok = jnp.arange(axis_len)[None, :] < (lengths - (span - 1))[:, None]
    scores = jnp.where(starts_ok, jax.random.uniform(k_starts, (lengths.shape[0], axis_len)), -1.0)
    _, starts = jax.lax.top_k(scores, max_spans)
    use = jnp.arange(max_spans)[None, :] < counts[:, None]
    pos = jnp.arange(axis_len)[None, None, :]
    covered = (pos >= starts[..., None]) & (pos < starts[..., None] + span) & use[..., None]
    return covered.any(axis=1)


def spec_augment_time_mask(rng: Array, lengths: Array, frames: int, prob: float, span: int, min_masks: int) -> Array:
    """SpecAugment time mask (B, frames); spans start inside each utterance's valid frames."""
    return _span_mask(rng, lengths, frames, prob, span, min_masks)


def spec_augment_feature_mask(rng: Array, batch: int, dim: int, prob: float, span: int, min_masks: int) -> Array:
    """SpecAugment feature mask (B, dim)."""
    return _span_mask(rng, jnp.full((batch,), dim), dim, prob, span, min_masks)


def _grouped_conv(x: Array, kernel: Array, groups: int) -> Array:
    """Conv1d over (B, T, Cin) with kernel (k, Cin/groups, Cout), zero padding k//2 on both sides."""
    pad = kernel.shape[0] // 2
    return jax.lax.conv_general_dilated(x, kernel, (1,), [(pad, pad)], dimension_numbers=("NWC", "WIO", "NWC"),
                                        feature_group_count=groups)


def _grouped_conv_kernel_grad(x: Array, dy: Array, kernel_shape: tuple, groups: int) -> Array:
    """d(loss)/d(kernel) as one einsum over the K shifted input windows (XLA's CPU kernel gradient is ~10x slower)."""
    k, cin, cout = kernel_shape
    pad = k // 2
    xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0)))
    t_out = dy.shape[1]
    windows = jnp.stack([xp[:, j:j + t_out] for j in range(k)], axis=2)  # (B, T_out, k, C)
    windows = windows.reshape(*windows.shape[:3], groups, cin)
    dy = dy.reshape(*dy.shape[:2], groups, cout // groups)
    grad = jnp.einsum("btkgc,btgo->kcgo", windows, dy, preferred_element_type=at_least_f32(x.dtype))
    return grad.reshape(k, cin, cout).astype(x.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def grouped_conv(x: Array, kernel: Array, groups: int) -> Array:
    """The positional embedding's grouped 'same' conv, with a fast kernel gradient."""
    return _grouped_conv(x, kernel, groups)


def _grouped_conv_fwd(x, kernel, groups):
    return _grouped_conv(x, kernel, groups), (x, kernel)


def _grouped_conv_bwd(groups, residuals, dy):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda v: _grouped_conv(v, kernel, groups), x)
    (dx,) = input_vjp(dy)
    return dx, _grouped_conv_kernel_grad(x, dy, kernel.shape, groups).astype(kernel.dtype)


grouped_conv.defvjp(_grouped_conv_fwd, _grouped_conv_bwd)
