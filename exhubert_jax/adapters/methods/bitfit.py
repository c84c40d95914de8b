"""BitFit (Ben Zaken et al., 2022): only the bias terms (and the head) train; no new parameters.

Biases of the transformer, the feature projection, the positional conv and the LayerNorms train; the CNN feature
encoder stays frozen as in every ExHuBERT stage. Mergeable trivially: the trained biases already are base weights.
"""

from __future__ import annotations

from exhubert_jax.adapters.core import Method, register

NAME = "bitfit"

METHOD = register(Method(NAME, trains=lambda name: name.endswith("/bias"), merge=lambda params, options: params))
