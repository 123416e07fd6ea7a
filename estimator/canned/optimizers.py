"""Optimizers of the canned estimators: by tf.keras name or as an optax transformation.

``get_optimizer("Adagrad", learning_rate=0.05)`` gives the optax transformation
closest to ``tf.keras.optimizers.Adagrad(0.05)``; names are those of
tf.estimator (``Adagrad``, ``Adam``, ``Ftrl``, ``RMSProp``, ``SGD``, case
insensitive), with tf.keras' default hyper-parameters:

* ``Adagrad``: initial accumulator 0.1, epsilon 1e-7 (optax adds epsilon inside
  the square root, keras outside: a difference of order 1e-7).
* ``Adam``: beta_1 0.9, beta_2 0.999, epsilon 1e-7 (keras applies epsilon to the
  bias-corrected denominator in a slightly different place; negligible).
* ``RMSProp``: rho 0.9, epsilon 1e-7, no momentum, not centered.
* ``SGD``: plain gradient descent.
* ``Ftrl``: FTRL-Proximal exactly as TensorFlow's ``ApplyFtrlV2`` kernel
  (learning_rate_power -0.5, initial accumulator 0.1, l1, l2, l2_shrinkage,
  beta); optax has none, so :func:`ftrl` implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["FtrlState", "OptimizerError", "ftrl", "get_optimizer"]


class OptimizerError(ValueError):
    """An optimizer name or specification that cannot be built."""


class FtrlState(NamedTuple):
    """Per-parameter FTRL accumulators (tf's ``accum`` and ``linear`` slots)."""

    accumulator: Any
    linear: Any


def ftrl(learning_rate: float, learning_rate_power: float = -0.5, initial_accumulator_value: float = 0.1,
         l1_regularization_strength: float = 0.0, l2_regularization_strength: float = 0.0,
         l2_shrinkage_regularization_strength: float = 0.0, beta: float = 0.0) -> optax.GradientTransformation:
    """FTRL-Proximal (McMahan et al. 2013, "Ad Click Prediction", Algorithm 1), as tf.keras ``Ftrl``.

    Per parameter, with ``p = -learning_rate_power`` (0.5 by default)::

        g' = g + 2 * l2_shrinkage * w
        n_new = n + g * g
        z += g' - (n_new ** p - n ** p) / lr * w
        w = (sign(z) * l1 - z) / ((n_new ** p + beta) / lr + 2 * l2)  if |z| > l1 else 0

    (``ApplyFtrlV2`` in tensorflow/core/kernels/training_ops.cc; keras folds
    ``beta`` into l2 as ``l2 + beta / (2 * lr)``). The update needs ``params``.
    """
    if learning_rate <= 0:
        raise OptimizerError(f"Ftrl learning_rate must be positive, got {learning_rate}.")
    if learning_rate_power > 0:
        raise OptimizerError(f"Ftrl learning_rate_power must be <= 0, got {learning_rate_power}.")
    if initial_accumulator_value < 0:
        raise OptimizerError("Ftrl initial_accumulator_value must be >= 0.")
    lr, power = float(learning_rate), -float(learning_rate_power)
    l1, l2, shrink = float(l1_regularization_strength), float(l2_regularization_strength), float(
        l2_shrinkage_regularization_strength)
    l2_total = l2 + float(beta) / (2.0 * lr)

    def init(params: Any) -> FtrlState:
        return FtrlState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params),
                         jax.tree.map(jnp.zeros_like, params))

    def update(grads: Any, state: FtrlState, params: Any = None) -> tuple[Any, FtrlState]:
        if params is None:
            raise OptimizerError("Ftrl needs the parameters: call update(grads, state, params).")

        def leaf(g, n, z, w):
            g_shrunk = g + 2.0 * shrink * w
            n_new = n + g * g
            sigma = (n_new ** power - n ** power) / lr
            z_new = z + g_shrunk - sigma * w
            quadratic = n_new ** power / lr + 2.0 * l2_total
            w_new = jnp.where(jnp.abs(z_new) > l1, (jnp.sign(z_new) * l1 - z_new) / quadratic, 0.0)
            return w_new - w, n_new, z_new

        out = jax.tree.map(leaf, grads, state.accumulator, state.linear, params)
        is_triple = lambda x: isinstance(x, tuple) and len(x) == 3  # noqa: E731
        updates = jax.tree.map(lambda t: t[0], out, is_leaf=is_triple)
        accumulator = jax.tree.map(lambda t: t[1], out, is_leaf=is_triple)
        linear = jax.tree.map(lambda t: t[2], out, is_leaf=is_triple)
        return updates, FtrlState(accumulator, linear)

    return optax.GradientTransformation(init, update)


def _adagrad(learning_rate: float, **kw: Any) -> optax.GradientTransformation:
    return optax.adagrad(learning_rate, initial_accumulator_value=kw.pop("initial_accumulator_value", 0.1),
                         eps=kw.pop("epsilon", 1e-7), **kw)


def _adam(learning_rate: float, **kw: Any) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=kw.pop("beta_1", 0.9), b2=kw.pop("beta_2", 0.999),
                      eps=kw.pop("epsilon", 1e-7), **kw)


def _rmsprop(learning_rate: float, **kw: Any) -> optax.GradientTransformation:
    return optax.rmsprop(learning_rate, decay=kw.pop("rho", 0.9), eps=kw.pop("epsilon", 1e-7), **kw)


def _sgd(learning_rate: float, **kw: Any) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, **kw)


_BY_NAME: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adagrad": _adagrad, "adam": _adam, "ftrl": ftrl, "rmsprop": _rmsprop, "sgd": _sgd,
}
NAMES = ("Adagrad", "Adam", "Ftrl", "RMSProp", "SGD")
# The optimizer classes' own rates (tf.keras.optimizers.legacy, TF 2.15): what tf.estimator's
# get_optimizer_instance_v2 gives a name without a rate, e.g. DNNClassifier(optimizer="Adagrad").
KERAS_DEFAULT_LEARNING_RATES = {"adagrad": 0.001, "adam": 0.001, "ftrl": 0.001, "rmsprop": 0.001, "sgd": 0.01}


def get_optimizer(optimizer: Any, learning_rate: float | None = None,
                  default_learning_rate: float | None = None) -> optax.GradientTransformation:
    """Builds the optimizer a canned estimator was given.

    Args:
      optimizer: a name (``"Adagrad"``, ``"Adam"``, ``"Ftrl"``, ``"RMSProp"``,
        ``"SGD"``), a mapping ``{"name": ..., "learning_rate": ..., **keras_kwargs}``
        (handy in YAML configs), an ``optax.GradientTransformation``, or a
        zero-argument callable returning one.
      learning_rate: the rate for a named optimizer (overrides the default).
      default_learning_rate: the estimator's tf default rate for named optimizers;
        without one, the keras class's own (``KERAS_DEFAULT_LEARNING_RATES``: 0.001,
        SGD 0.01), as tf.estimator's ``get_optimizer_instance_v2``.
    Returns:
      an ``optax.GradientTransformation``.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    kwargs: dict[str, Any] = {}
    if isinstance(optimizer, Mapping):
        kwargs = dict(optimizer)
        if "name" not in kwargs:
            raise OptimizerError(f"optimizer mapping {optimizer!r} needs a 'name', one of {NAMES}.")
        optimizer = kwargs.pop("name")
        learning_rate = kwargs.pop("learning_rate", learning_rate)
    if isinstance(optimizer, str):
        build = _BY_NAME.get(optimizer.lower())
        if build is None:
            raise OptimizerError(f"unknown optimizer {optimizer!r}; use one of {NAMES} or an optax transformation.")
        rate = learning_rate if learning_rate is not None else default_learning_rate
        if rate is None:
            rate = KERAS_DEFAULT_LEARNING_RATES[optimizer.lower()]
        try:
            return build(float(rate), **kwargs)
        except TypeError as e:
            raise OptimizerError(f"optimizer {optimizer!r}: bad arguments {sorted(kwargs)}: {e}") from e
    if callable(optimizer):
        built = optimizer()
        if isinstance(built, optax.GradientTransformation):
            return built
        raise OptimizerError(f"optimizer callable returned {type(built).__name__}, not an optax transformation.")
    raise OptimizerError(
        f"optimizer must be a name {NAMES}, a mapping with 'name', an optax transformation or a callable; "
        f"got {type(optimizer).__name__}.")
