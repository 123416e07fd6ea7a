"""Parameter scope and a small layer set: ``transform(fn)`` gives pure ``init`` / ``apply``.

Inside a function passed to :func:`transform`, layers and :func:`get_parameter`
create parameters by name; :func:`transform` turns that function into two pure
functions (haiku's model, our own code)::

    def forward(x, training):
        with nn.scope("dnn"):
            x = nn.Dense(64, activation="relu", name="hiddenlayer_0")(x)
            x = nn.Dropout(0.1)(x, training=training)
        return nn.Dense(1, name="logits")(x)

    model = nn.transform(forward)
    params, state = model.init(jax.random.key(0), x, training=True)
    out, new_state = model.apply(params, state, rng, x, training=True)

``params`` and ``state`` are nested dicts keyed by scope names
(``{"dnn": {"hiddenlayer_0": {"kernel": ..., "bias": ...}}}``); the path of a
leaf (``"dnn/hiddenlayer_0/kernel"``) is its name (:func:`flatten_names`).
Layers use tf.keras's default names (``dense``, ``dense_1``, ... per enclosing
scope) and initialisers (glorot-uniform kernels, zero biases). The same name
means the same parameter. Each initial value is drawn from the init key folded
with a CRC-32 of the parameter's path, so adding a parameter never changes the
initial values of the others.
"""

from estimator.nn.core import (
    InvalidNameError,
    MissingParameterError,
    Module,
    NNError,
    ParameterShapeError,
    RngError,
    ScopeError,
    Transformed,
    compute_dtype,
    flatten_names,
    get_parameter,
    get_state,
    mixed_precision,
    next_rng_key,
    scope,
    set_state,
    transform,
    unflatten_names,
)
from estimator.nn.layers import BatchNorm, Conv2D, Dense, Dropout, Embed, LayerNorm

__all__ = [
    "BatchNorm", "Conv2D", "Dense", "Dropout", "Embed", "InvalidNameError", "LayerNorm",
    "MissingParameterError", "Module", "NNError", "ParameterShapeError", "RngError", "ScopeError",
    "Transformed", "compute_dtype", "flatten_names", "get_parameter", "get_state",
    "mixed_precision", "next_rng_key", "scope", "set_state", "transform", "unflatten_names",
]
