"""Running an exported ONNX model in onnxruntime, and the JAX outputs it is checked against (logits, embedding)."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from exhubert_jax.errors import ExhubertError

INPUTS = ("input_values", "attention_mask")
LOGITS, EMBEDDING = "logits", "embedding"


class OnnxInputError(ExhubertError, ValueError):
    """Inputs that do not fit an exported ONNX model."""


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU InferenceSession for `path` (`threads` intra-op threads; None: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feed(sess, input_values: np.ndarray, attention_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The session's input dict; a graph with a mask input gets all ones when no mask is given."""
    names = [i.name for i in sess.get_inputs()]
    x = np.ascontiguousarray(input_values, np.float32)
    out = {INPUTS[0]: x}
    if INPUTS[1] in names:
        out[INPUTS[1]] = np.ones(x.shape, np.int64) if attention_mask is None else np.asarray(attention_mask, np.int64)
    elif attention_mask is not None:
        raise OnnxInputError("this ONNX model has no attention_mask input (it was exported with --no-mask); pass "
                             "input_values alone, cropped or padded as the model was trained")
    return out


def run(sess, input_values: np.ndarray, attention_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{output name: array} of one onnxruntime call."""
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed(sess, input_values, attention_mask))))


def jax_outputs(model, compiler_options: dict | None = None) -> Callable:
    """A jitted fn(params, input_values, attention_mask or None) -> (logits, pooled embedding) of our Flax model;
    the embedding is what its classifier reads (the masked mean of the projector's output). A model with dimensions
    gives its regression values after the class logits, as its export's classifier does. `compiler_options` go
    to XLA (tests compile many one-off shapes with {"xla_backend_optimization_level": 0})."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    def forward(params, input_values, attention_mask):
        captured = {}

        def keep(next_fun, args, kwargs, context):
            if context.module.name in ("classifier", "regressor") and context.method_name == "__call__":
                captured["pooled"] = args[0]
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(keep):
            out = model.apply({"params": params}, input_values, attention_mask)
        if out.values is None:
            return out.logits, captured["pooled"]
        return jnp.concatenate([out.logits, out.values.astype(out.logits.dtype)], -1), captured["pooled"]

    return jax.jit(forward, compiler_options=compiler_options)
