"""The layer set: tf.keras-style ``Dense``, ``Embed``, ``Conv2D``, ``BatchNorm``,
``LayerNorm`` and ``Dropout``, built on the parameter scope of ``estimator.nn.core``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from estimator.nn.core import (
    _GLOROT_UNIFORM,
    _ZEROS,
    Array,
    Initializer,
    Module,
    compute_dtype,
    get_parameter,
    get_state,
    next_rng_key,
    set_state,
)

__all__ = ["BatchNorm", "Conv2D", "Dense", "Dropout", "Embed", "LayerNorm"]

_ONES: Initializer = jax.nn.initializers.ones


def _keras_uniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:
    """tf.keras ``RandomUniform(minval, maxval)``: the default ``Embedding`` initialiser."""

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, minval=minval, maxval=maxval)

    return init


def _activation(activation: str | Callable[[Array], Array] | None) -> Callable[[Array], Array]:
    if activation is None or activation == "linear":
        return lambda x: x
    if isinstance(activation, str):
        fn = getattr(jax.nn, activation, None)
        if not callable(fn):
            raise ValueError(f"unknown activation {activation!r}: use a jax.nn function name "
                             "(e.g. 'relu'), a callable, or None")
        return fn
    return activation


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (int(value),) * 2 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return pair


class Dense(Module):
    """tf.keras ``Dense``: ``activation(x @ kernel + bias)`` over the last axis."""

    default_name = "dense"

    def __init__(self, units: int, activation: str | Callable[[Array], Array] | None = None,
                 use_bias: bool = True, kernel_init: Initializer = _GLOROT_UNIFORM,
                 bias_init: Initializer = _ZEROS, name: str | None = None) -> None:
        super().__init__(name)
        if int(units) < 1:
            raise ValueError(f"Dense units must be positive, got {units}")
        self.units, self.use_bias = int(units), use_bias
        self.activation = _activation(activation)
        self.kernel_init, self.bias_init = kernel_init, bias_init

    def __call__(self, x: Array) -> Array:
        """Applies the layer to ``x`` of shape ``[..., in_features]``."""
        x = jnp.asarray(x)
        with self.name_scope():
            kernel = get_parameter("kernel", (x.shape[-1], self.units), init=self.kernel_init)
            dtype = compute_dtype(kernel.dtype)
            y = jnp.matmul(x.astype(dtype), kernel.astype(dtype))
            if self.use_bias:
                y = y + get_parameter("bias", (self.units,), init=self.bias_init).astype(dtype)
        return self.activation(y)


class Embed(Module):
    """tf.keras ``Embedding``: rows of an ``embeddings`` table, uniform(-0.05, 0.05) init.

    Ids outside ``[0, vocab_size)`` give NaN rows (``jnp.take``'s fill mode).
    """

    default_name = "embedding"

    def __init__(self, vocab_size: int, features: int,
                 embeddings_init: Initializer | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.vocab_size, self.features = int(vocab_size), int(features)
        self.embeddings_init = embeddings_init or _keras_uniform()

    def __call__(self, ids: Array) -> Array:
        """Looks up integer ``ids`` of any shape; returns ``ids.shape + (features,)``."""
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"Embed needs integer ids, got dtype {ids.dtype}")
        with self.name_scope():
            table = get_parameter("embeddings", (self.vocab_size, self.features),
                                  init=self.embeddings_init)
        return jnp.take(table, ids, axis=0).astype(compute_dtype(table.dtype))


class Conv2D(Module):
    """tf.keras ``Conv2D`` on NHWC inputs with an HWIO ``kernel`` (padding SAME or VALID)."""

    default_name = "conv2d"

    def __init__(self, filters: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] = 1, padding: str = "SAME",
                 activation: str | Callable[[Array], Array] | None = None, use_bias: bool = True,
                 kernel_init: Initializer = _GLOROT_UNIFORM, bias_init: Initializer = _ZEROS,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.filters, self.use_bias = int(filters), use_bias
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.strides = _pair(strides, "Conv2D strides")
        self.padding = str(padding).upper()
        if self.padding not in ("SAME", "VALID"):
            raise ValueError(f"Conv2D padding must be 'SAME' or 'VALID', got {padding!r}")
        self.activation = _activation(activation)
        self.kernel_init, self.bias_init = kernel_init, bias_init

    def __call__(self, x: Array) -> Array:
        """Convolves ``x`` of shape ``[batch, height, width, channels]``."""
        x = jnp.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"Conv2D needs NHWC input of rank 4, got shape {x.shape}")
        with self.name_scope():
            kernel = get_parameter("kernel", (*self.kernel_size, x.shape[-1], self.filters),
                                   init=self.kernel_init)
            dtype = compute_dtype(kernel.dtype)
            y = jax.lax.conv_general_dilated(
                x.astype(dtype), kernel.astype(dtype), self.strides, self.padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
            if self.use_bias:
                y = y + get_parameter("bias", (self.filters,), init=self.bias_init).astype(dtype)
        return self.activation(y)


def _normalize(x: Array, mean: Array, var: Array, epsilon: float,
               scale: bool, center: bool) -> Array:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` in float32, returned in x's dtype."""
    features = (x.shape[-1],)
    y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + epsilon)
    if scale:
        y = y * get_parameter("gamma", features, init=_ONES)
    if center:
        y = y + get_parameter("beta", features, init=_ZEROS)
    return y.astype(x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)


class BatchNorm(Module):
    """tf.keras ``BatchNormalization`` over the last axis.

    Training normalises with the batch's mean and (biased) variance and moves
    ``moving_mean``/``moving_variance`` (state) by
    ``moving = moving * momentum + batch * (1 - momentum)``; inference uses the
    moving statistics. Statistics are computed in float32.
    """

    default_name = "batch_normalization"

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = center, scale

    def __call__(self, x: Array, training: bool = False) -> Array:
        """Normalises ``x`` of shape ``[..., features]``; ``training`` must be a Python bool."""
        x = jnp.asarray(x)
        with self.name_scope():
            features = (x.shape[-1],)
            moving_mean = get_state("moving_mean", features, init=_ZEROS)
            moving_var = get_state("moving_variance", features, init=_ONES)
            if training:
                x32 = x.astype(jnp.float32)
                axes = tuple(range(x.ndim - 1))
                mean = jnp.mean(x32, axes)
                var = jnp.mean(jnp.square(x32 - mean), axes)
                m = self.momentum
                set_state("moving_mean", jax.lax.stop_gradient(moving_mean * m + mean * (1 - m)))
                set_state("moving_variance", jax.lax.stop_gradient(moving_var * m + var * (1 - m)))
            else:
                mean, var = moving_mean, moving_var
            return _normalize(x, mean, var, self.epsilon, self.scale, self.center)


class LayerNorm(Module):
    """tf.keras ``LayerNormalization`` over the last axis (statistics in float32)."""

    default_name = "layer_normalization"

    def __init__(self, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.epsilon, self.center, self.scale = float(epsilon), center, scale

    def __call__(self, x: Array) -> Array:
        """Normalises each ``x[..., :]`` to zero mean, unit variance, then scales and shifts."""
        x = jnp.asarray(x)
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, -1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), -1, keepdims=True)
        with self.name_scope():
            return _normalize(x, mean, var, self.epsilon, self.scale, self.center)


class Dropout(Module):
    """tf.keras ``Dropout``: in training, zeroes a ``rate`` fraction and scales the rest by
    ``1 / (1 - rate)``, with a key from :func:`next_rng_key`; identity otherwise."""

    default_name = "dropout"

    def __init__(self, rate: float, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def __call__(self, x: Array, training: bool = False) -> Array:
        """Applies dropout to ``x`` when ``training`` (a Python bool) is true."""
        x = jnp.asarray(x)
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(next_rng_key(), keep, x.shape)
        return jnp.where(mask, x / keep, 0).astype(x.dtype)
