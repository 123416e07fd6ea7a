"""Heads: loss, predictions and eval metrics on top of logits, as tf.estimator's v2 heads.

A head turns the logits a network computes into an ``EstimatorSpec``:

* ``RegressionHead``: mean squared error; predictions ``predictions``; metrics
  ``average_loss``, ``label/mean``, ``prediction/mean``.
* ``BinaryClassHead``: sigmoid cross-entropy; predictions ``logits``,
  ``logistic``, ``probabilities``, ``class_ids``, ``classes``, ``all_class_ids``,
  ``all_classes``; metrics ``accuracy``, ``precision``, ``recall``, ``auc``,
  ``auc_precision_recall``, ``accuracy_baseline``, ``average_loss``,
  ``label/mean``, ``prediction/mean`` (and ``<metric>/positive_threshold_<t>``).
* ``MultiClassHead``: softmax cross-entropy; predictions ``logits``,
  ``probabilities``, ``class_ids``, ``classes``...; metrics ``accuracy``, ``average_loss``.
* ``MultiLabelHead``: per-class sigmoid cross-entropy averaged over classes;
  predictions ``logits``, ``probabilities``, ``classes`` (every class name, as
  tf), ``all_class_ids``, ``all_classes``; metrics ``average_loss``, ``auc``,
  ``auc_precision_recall`` (and thresholded accuracy / precision / recall).

``BinaryClassHead`` and ``MultiLabelHead`` take numeric labels in [0, 1]: 0/1
classes or soft labels (probabilities), as tf; other values raise ``HeadError``.

Example weights come from the feature ``weight_column``. The training loss is
``sum(weight * loss) / number_of_loss_values`` (``SUM_OVER_BATCH_SIZE``, tf's
default) or the plain weighted sum (``SUM``). The Estimator reports the
per-batch mean of that loss as ``loss``.

String labels (``label_vocabulary``) become ids on the host (``host_labels``,
called by canned estimators in the input thread), and ``classes`` (bytes, as
tf gives them) are added to predictions on the host (``host_predictions``): the
device never sees strings.

The ``Head`` base class is in ``head_base``, the classification heads in
``classification_heads``; every head is importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from estimator.canned.classification_heads import BinaryClassHead, MultiClassHead, MultiLabelHead
from estimator.canned.head_base import Head, HeadError, LossReduction, _mean
from estimator.keys import MetricKeys, PredictionKeys

__all__ = [
    "BinaryClassHead", "Head", "HeadError", "LossReduction", "MultiClassHead", "MultiLabelHead",
    "RegressionHead",
]


class RegressionHead(Head):
    """tf ``RegressionHead``: squared error between ``label_dimension`` labels and the logits.

    Args:
      label_dimension: number of regression targets per example.
      weight_column: feature key (or numeric_column) of per-example weights.
      loss_reduction: ``LossReduction.SUM_OVER_BATCH_SIZE`` (default) or ``SUM``.
      loss_fn: optional ``(labels, logits) -> [batch, d]`` per-value loss.
      inverse_link_fn: maps logits to ``predictions`` (e.g. ``jnp.exp``); the
        loss still compares labels with the logits, as in tf.
    """

    def __init__(self, label_dimension: int = 1, weight_column: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE,
                 loss_fn: Callable | None = None, inverse_link_fn: Callable | None = None,
                 name: str | None = None):
        super().__init__(weight_column, loss_reduction, loss_fn, name)
        if int(label_dimension) < 1:
            raise HeadError(f"label_dimension must be >= 1, got {label_dimension}.")
        self.logits_dimension = int(label_dimension)
        self.inverse_link_fn = inverse_link_fn

    def host_labels(self, labels: Any) -> Any:
        arr = np.asarray(labels)
        if arr.dtype.kind not in "fiub":
            raise HeadError(f"RegressionHead: labels must be numbers, got dtype {arr.dtype}.")
        return arr.astype(np.float32)

    def _labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        labels = jnp.asarray(labels, jnp.float32)
        if labels.size != logits.size:
            raise HeadError(
                f"RegressionHead: labels of shape {tuple(labels.shape)} do not match logits "
                f"{tuple(logits.shape)}; expected [batch] or [batch, {self.logits_dimension}].")
        return labels.reshape(logits.shape)

    def _unreduced_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return jnp.square(labels - logits)

    def predictions(self, logits: jax.Array) -> dict[str, jax.Array]:
        logits = self._check_logits(logits)
        if self.inverse_link_fn is None:
            return {PredictionKeys.PREDICTIONS: logits}
        return {PredictionKeys.PREDICTIONS: self.inverse_link_fn(logits), PredictionKeys.LOGITS: logits}

    def _metrics(self, labels, logits, predictions, unreduced, weights):
        return {
            MetricKeys.AVERAGE_LOSS: _mean(unreduced, weights),
            MetricKeys.LABEL_MEAN: _mean(labels, weights),
            MetricKeys.PREDICTION_MEAN: _mean(predictions[PredictionKeys.PREDICTIONS], weights),
        }
