"""The ``Head`` base class (weights, loss reduction, EstimatorSpec assembly), ``HeadError``,
``LossReduction`` and the metric helper every head shares. The heads themselves are in
``estimator.canned.head`` (regression) and ``estimator.canned.classification_heads``; import them
all from ``estimator.canned.head``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import metrics as metrics_lib
from estimator.spec import EstimatorSpec, ModeKeys

__all__ = ["Head", "HeadError", "LossReduction"]


class HeadError(ValueError):
    """Labels, logits or head arguments that do not fit together."""


class LossReduction:
    """How per-example losses become the training loss (tf.losses.Reduction names)."""

    SUM = "sum"
    SUM_OVER_BATCH_SIZE = "sum_over_batch_size"
    ALL = (SUM, SUM_OVER_BATCH_SIZE)


class Head:
    """Base head: weights, loss reduction, EstimatorSpec assembly. Subclasses define the rest.

    Subclasses implement ``logits_dimension``, ``_labels`` (device-side shaping),
    ``_unreduced_loss``, ``predictions`` and ``_metrics``. A ``name`` (as in tf) ends
    every metric key of the head in ``"/<name>"`` (``average_loss/<name>``).
    """

    logits_dimension: int = 1

    def __init__(self, weight_column: Any = None, loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
                 loss_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                 name: str | None = None):
        if loss_reduction not in LossReduction.ALL:
            raise HeadError(f"loss_reduction must be one of {LossReduction.ALL}, got {loss_reduction!r}.")
        # a numeric_column is accepted for tf compatibility: its key names the feature
        self.weight_column = getattr(weight_column, "key", weight_column)
        self.loss_reduction = loss_reduction
        self.loss_fn = loss_fn
        self.name = name

    # ------------------------------------------------------------------ host side
    def host_labels(self, labels: Any) -> Any:
        """Host-side label conversion for one batch (vocabulary to ids, range checks)."""
        return labels

    def host_predictions(self, predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Host-side additions to a batch of predictions (``classes`` strings)."""
        return dict(predictions)

    # ------------------------------------------------------------------ device side
    def _labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _unreduced_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        raise NotImplementedError

    def predictions(self, logits: jax.Array) -> dict[str, jax.Array]:
        """Device-side predictions of ``logits`` ``[batch, logits_dimension]``."""
        raise NotImplementedError

    def _metrics(self, labels: jax.Array, logits: jax.Array, predictions: dict, unreduced: jax.Array,
                 weights: jax.Array) -> dict[str, metrics_lib.MetricOp]:
        raise NotImplementedError

    def _check_logits(self, logits: Any) -> jax.Array:
        logits = jnp.asarray(logits, jnp.float32)
        if logits.ndim == 1 and self.logits_dimension == 1:
            logits = logits[:, None]
        if logits.ndim != 2 or logits.shape[1] != self.logits_dimension:
            raise HeadError(
                f"{type(self).__name__}: logits must have shape [batch, {self.logits_dimension}], "
                f"got {tuple(logits.shape)}.")
        return logits

    def _weights(self, features: Mapping[str, Any], batch: int) -> jax.Array:
        """Per-example weights ``[batch, 1]`` (ones without a weight_column)."""
        if self.weight_column is None:
            return jnp.ones((batch, 1), jnp.float32)
        if self.weight_column not in features:
            raise HeadError(
                f"weight_column {self.weight_column!r} is not among the features {sorted(features)}.")
        w = jnp.asarray(features[self.weight_column], jnp.float32)
        if w.size != batch:
            raise HeadError(
                f"weight_column {self.weight_column!r} must hold one weight per example "
                f"({batch}), got shape {tuple(w.shape)}.")
        return w.reshape(batch, 1)

    def _loss_values(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        if self.loss_fn is None:
            return self._unreduced_loss(labels, logits)
        values = jnp.asarray(self.loss_fn(labels, logits), jnp.float32)
        return values.reshape(values.shape[0], -1)

    def _weighted_losses(self, labels: Any, logits: jax.Array,
                         features: Mapping[str, Any]) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(labels, weights, per-example losses)`` of checked ``logits``, all ``[batch, ...]``."""
        labels = self._labels(labels, logits)
        return labels, self._weights(features, logits.shape[0]), self._loss_values(labels, logits)

    def loss(self, labels: Any, logits: jax.Array, features: Mapping[str, Any]) -> jax.Array:
        """The training loss (tf's ``Head.loss``): weighted per-example losses reduced by ``loss_reduction``.

        ``create_estimator_spec`` takes its loss from here.
        """
        _, weights, unreduced = self._weighted_losses(labels, self._check_logits(logits), features)
        return self._reduce(unreduced, weights)

    def _reduce(self, unreduced: jax.Array, weights: jax.Array) -> jax.Array:
        total = jnp.sum(unreduced * weights)
        if self.loss_reduction == LossReduction.SUM:
            return total
        return total / unreduced.size

    def create_estimator_spec(self, features: Mapping[str, Any], mode: str, logits: Any, labels: Any = None,
                              optimizer: optax.GradientTransformation | None = None,
                              regularization_losses: Sequence[jax.Array] | None = None) -> EstimatorSpec:
        """The ``EstimatorSpec`` of ``mode`` for these logits (tf's ``Head.create_estimator_spec``)."""
        logits = self._check_logits(logits)
        predictions = self.predictions(logits)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions=predictions)
        if labels is None:
            raise HeadError(f"{type(self).__name__}: labels are required in mode {mode!r}; "
                            "the input_fn must yield (features, labels).")
        loss = self.loss(labels, logits, features)
        if regularization_losses:
            loss = loss + sum(jnp.asarray(r, jnp.float32) for r in regularization_losses)
        if mode == ModeKeys.TRAIN:
            return EstimatorSpec(mode, predictions=predictions, loss=loss, optimizer=optimizer)
        labels, weights, unreduced = self._weighted_losses(labels, logits, features)  # XLA computes them once
        eval_metrics = self._metrics(labels, logits, predictions, unreduced, weights)
        if self.name:  # tf: a named head's metric keys end in "/<name>"
            eval_metrics = {f"{key}/{self.name}": op for key, op in eval_metrics.items()}
        return EstimatorSpec(mode, predictions=predictions, loss=loss, eval_metrics=eval_metrics)


def _mean(values: jax.Array, weights: jax.Array) -> metrics_lib.MetricOp:
    return metrics_lib.Mean()(values, weights=weights)
