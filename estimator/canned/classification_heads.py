"""The classification heads: ``BinaryClassHead``, ``MultiClassHead`` and ``MultiLabelHead``.

What each predicts and reports is described in ``estimator.canned.head``, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import metrics as metrics_lib
from estimator.canned.head_base import Head, HeadError, LossReduction, _mean
from estimator.keys import MetricKeys, PredictionKeys

__all__ = ["BinaryClassHead", "MultiClassHead", "MultiLabelHead"]


def _sigmoid_cross_entropy(labels: jax.Array, logits: jax.Array) -> jax.Array:
    """tf.nn.sigmoid_cross_entropy_with_logits, by optax: ``-z log s(x) - (1 - z) log s(-x)``.

    Its gradient is ``sigmoid(x) - z`` everywhere; the ``max(x, 0) - x z + log1p(exp(-|x|))``
    form gives ``-z`` at ``x = 0`` under jax (the subgradients of max and abs do not cancel),
    which is where every zero-initialised linear classifier starts.
    """
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def _accuracy_baseline() -> metrics_lib.Metric:
    """``max(label_mean, 1 - label_mean)``: accuracy of always predicting the majority class.

    As tf: ``max(total, count - total) / count`` of the label mean, so 0 when every weight is 0.
    """
    mean = metrics_lib.Mean()

    def compute(state: Any) -> jax.Array:
        total, count = state["total"], state["count"]
        best = jnp.maximum(total, count - total)
        return jnp.where(count == 0, 0.0, best / jnp.where(count == 0, 1.0, count))

    return mean._replace(compute=compute)


def _soft_labels(head: Head, labels: Any) -> np.ndarray:
    """Host: numeric labels in [0, 1] (hard 0/1 or soft probabilities, as tf) as float32."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "USO":
        raise HeadError(
            f"{type(head).__name__}: labels are strings; pass label_vocabulary=[...] to map them to ids.")
    if arr.dtype.kind not in "fiub":
        raise HeadError(f"{type(head).__name__}: labels must be numbers, got dtype {arr.dtype}.")
    arr = arr.astype(np.float32)
    bad = ~((arr >= 0) & (arr <= 1))  # NaN is bad too
    if bad.any():
        raise HeadError(
            f"{type(head).__name__}: labels must be in [0, 1] (0/1 classes or soft probabilities), "
            f"got {np.unique(arr[bad])[:10].tolist()}.")
    return arr


def _threshold_metrics(thresholds: Sequence[float], labels: jax.Array, probabilities: jax.Array,
                       weights: jax.Array) -> dict[str, metrics_lib.MetricOp]:
    """``accuracy`` / ``precision`` / ``recall`` ``/positive_threshold_<t>`` of each threshold, as tf."""
    out = {}
    for t in thresholds:
        out[f"accuracy/positive_threshold_{t:g}"] = metrics_lib.Accuracy(t)(labels, probabilities, weights=weights)
        out[f"precision/positive_threshold_{t:g}"] = metrics_lib.Precision(t)(labels, probabilities, weights=weights)
        out[f"recall/positive_threshold_{t:g}"] = metrics_lib.Recall(t)(labels, probabilities, weights=weights)
    return out

class _ClassHead(Head):
    """Shared label-vocabulary handling of the classification heads."""

    n_classes: int = 2

    def __init__(self, n_classes: int, weight_column: Any, label_vocabulary: Sequence[str] | None,
                 loss_reduction: str, loss_fn: Callable | None, name: str | None):
        super().__init__(weight_column, loss_reduction, loss_fn, name)
        self.n_classes = int(n_classes)
        if label_vocabulary is not None:
            vocab = [v.decode() if isinstance(v, bytes) else v for v in label_vocabulary]
            if not all(isinstance(v, str) for v in vocab):
                raise HeadError(f"label_vocabulary must be strings, got {label_vocabulary!r}.")
            if len(vocab) != self.n_classes or len(set(vocab)) != len(vocab):
                raise HeadError(
                    f"label_vocabulary must hold {self.n_classes} distinct strings (one per class), "
                    f"got {len(vocab)}: {vocab[:10]}.")
            label_vocabulary = tuple(vocab)
        self.label_vocabulary = label_vocabulary
        self._class_names = np.array([v.encode() for v in self.class_names], dtype=object)

    @property
    def class_names(self) -> tuple[str, ...]:
        """What ``classes`` holds per class id: the label vocabulary, else ``"0"``, ``"1"``, ..."""
        return self.label_vocabulary or tuple(str(i) for i in range(self.n_classes))

    def _ids_of(self, labels: Any) -> np.ndarray:
        """Host: class ids of ``labels`` (strings via the vocabulary, else integers checked in range)."""
        arr = np.asarray(labels)
        if self.label_vocabulary is not None:
            if arr.dtype.kind not in "USO":
                raise HeadError(
                    f"{type(self).__name__}: label_vocabulary is set, so labels must be strings; "
                    f"got dtype {arr.dtype}.")
            text = arr.astype(str) if arr.dtype.kind != "S" else np.char.decode(arr, "utf-8")
            index = {v: i for i, v in enumerate(self.label_vocabulary)}
            uniq, inverse = np.unique(text, return_inverse=True)
            unknown = [u for u in uniq.tolist() if u not in index]
            if unknown:
                raise HeadError(
                    f"labels {unknown[:10]} are not in label_vocabulary {list(self.label_vocabulary)}.")
            return np.array([index[u] for u in uniq.tolist()], np.int32)[inverse.reshape(-1)].reshape(arr.shape)
        if arr.dtype.kind in "USO":
            raise HeadError(
                f"{type(self).__name__}: labels are strings; pass label_vocabulary=[...] to map them to ids.")
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise HeadError(f"{type(self).__name__}: class labels must be integers, got {arr[:5]!r}...")
        ids = arr.astype(np.int64)
        bad = (ids < 0) | (ids >= self.n_classes)
        if bad.any():
            raise HeadError(
                f"{type(self).__name__}: labels must be in [0, {self.n_classes}), got "
                f"{np.unique(ids[bad])[:10].tolist()}.")
        return ids.astype(np.int32)

    def host_labels(self, labels: Any) -> Any:
        return self._ids_of(labels)

    def host_predictions(self, predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
        out = dict(predictions)
        if PredictionKeys.CLASS_IDS in out:
            out[PredictionKeys.CLASSES] = self._class_names[np.asarray(out[PredictionKeys.CLASS_IDS])]
        if PredictionKeys.ALL_CLASS_IDS in out:
            out[PredictionKeys.ALL_CLASSES] = self._class_names[np.asarray(out[PredictionKeys.ALL_CLASS_IDS])]
        return out

    def _labels(self, labels: Any, logits: jax.Array, dtype: Any = jnp.int32) -> jax.Array:
        labels = jnp.asarray(labels)
        if labels.size != logits.shape[0]:
            raise HeadError(
                f"{type(self).__name__}: expected one class label per example (shape [batch] or "
                f"[batch, 1]), got labels of shape {tuple(labels.shape)} for {logits.shape[0]} examples.")
        return labels.reshape(-1, 1).astype(dtype)

    def _all_class_ids(self, batch: int) -> jax.Array:
        return jnp.broadcast_to(jnp.arange(self.n_classes, dtype=jnp.int32), (batch, self.n_classes))


class BinaryClassHead(_ClassHead):
    """tf ``BinaryClassHead``: one logit per example, sigmoid cross-entropy.

    Args:
      weight_column: feature key (or numeric_column) of per-example weights.
      thresholds: extra thresholds in (0, 1) for ``accuracy/positive_threshold_<t>``,
        ``precision/...`` and ``recall/...`` metrics.
      label_vocabulary: the two class names (labels are then strings); else 0/1 labels.
      loss_reduction, loss_fn, name: as for every head.
    """

    logits_dimension = 1

    def __init__(self, weight_column: Any = None, thresholds: Sequence[float] | None = None,
                 label_vocabulary: Sequence[str] | None = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, loss_fn: Callable | None = None,
                 name: str | None = None):
        super().__init__(2, weight_column, label_vocabulary, loss_reduction, loss_fn, name)
        self.thresholds = tuple(float(t) for t in (thresholds or ()))
        for t in self.thresholds:
            if not 0.0 < t < 1.0:
                raise HeadError(f"BinaryClassHead thresholds must be in (0, 1), got {t}.")

    def host_labels(self, labels: Any) -> Any:
        if self.label_vocabulary is not None:
            return self._ids_of(labels).astype(np.float32)
        return _soft_labels(self, labels)

    def _labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        return _ClassHead._labels(self, labels, logits, jnp.float32)

    def _unreduced_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return _sigmoid_cross_entropy(labels, logits)

    def predictions(self, logits: jax.Array) -> dict[str, jax.Array]:
        logits = self._check_logits(logits)
        logistic = jax.nn.sigmoid(logits)
        return {
            PredictionKeys.LOGITS: logits,
            PredictionKeys.LOGISTIC: logistic,
            PredictionKeys.PROBABILITIES: jnp.concatenate([1.0 - logistic, logistic], axis=1),
            PredictionKeys.CLASS_IDS: (logits > 0).astype(jnp.int32),
            PredictionKeys.ALL_CLASS_IDS: self._all_class_ids(logits.shape[0]),
        }

    def _metrics(self, labels, logits, predictions, unreduced, weights):
        y = labels.astype(jnp.float32)
        class_ids, logistic = predictions[PredictionKeys.CLASS_IDS], predictions[PredictionKeys.LOGISTIC]
        out = {
            MetricKeys.ACCURACY: metrics_lib.Accuracy()(labels, class_ids, weights=weights),
            MetricKeys.PRECISION: metrics_lib.Precision()(y, class_ids, weights=weights),
            MetricKeys.RECALL: metrics_lib.Recall()(y, class_ids, weights=weights),
            MetricKeys.PREDICTION_MEAN: _mean(logistic, weights),
            MetricKeys.LABEL_MEAN: _mean(y, weights),
            MetricKeys.ACCURACY_BASELINE: _accuracy_baseline()(y, weights=weights),
            MetricKeys.AVERAGE_LOSS: _mean(unreduced, weights),
            MetricKeys.AUC: metrics_lib.AUC(curve="ROC")(y, logistic, weights=weights),
            MetricKeys.AUC_PR: metrics_lib.AUC(curve="PR")(y, logistic, weights=weights),
        }
        return out | _threshold_metrics(self.thresholds, y, logistic, weights)


class MultiClassHead(_ClassHead):
    """tf ``MultiClassHead``: ``n_classes`` logits, softmax cross-entropy over integer labels."""

    def __init__(self, n_classes: int, weight_column: Any = None, label_vocabulary: Sequence[str] | None = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, loss_fn: Callable | None = None,
                 name: str | None = None):
        if int(n_classes) < 3:
            raise HeadError(f"MultiClassHead needs n_classes > 2 (use BinaryClassHead for 2), got {n_classes}.")
        super().__init__(n_classes, weight_column, label_vocabulary, loss_reduction, loss_fn, name)
        self.logits_dimension = self.n_classes

    def _unreduced_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[:, 0])[:, None]

    def predictions(self, logits: jax.Array) -> dict[str, jax.Array]:
        logits = self._check_logits(logits)
        return {
            PredictionKeys.LOGITS: logits,
            PredictionKeys.PROBABILITIES: jax.nn.softmax(logits, axis=-1),
            PredictionKeys.CLASS_IDS: jnp.argmax(logits, axis=-1).astype(jnp.int32)[:, None],
            PredictionKeys.ALL_CLASS_IDS: self._all_class_ids(logits.shape[0]),
        }

    def _metrics(self, labels, logits, predictions, unreduced, weights):
        return {
            MetricKeys.ACCURACY: metrics_lib.Accuracy()(labels, predictions[PredictionKeys.CLASS_IDS], weights=weights),
            MetricKeys.AVERAGE_LOSS: _mean(unreduced, weights),
        }


class MultiLabelHead(_ClassHead):
    """tf ``MultiLabelHead``: ``n_classes`` independent sigmoid logits per example.

    Labels are multi-hot ``[batch, n_classes]`` (0/1); with ``label_vocabulary``
    they are string class names ``[batch, k]`` padded with ``""``. The loss of
    an example is its sigmoid cross-entropy averaged over the classes.
    """

    def __init__(self, n_classes: int, weight_column: Any = None, thresholds: Sequence[float] | None = None,
                 label_vocabulary: Sequence[str] | None = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, loss_fn: Callable | None = None,
                 name: str | None = None):
        if int(n_classes) < 2:
            raise HeadError(f"MultiLabelHead needs n_classes >= 2, got {n_classes}.")
        super().__init__(n_classes, weight_column, label_vocabulary, loss_reduction, loss_fn, name)
        self.logits_dimension = self.n_classes
        self.thresholds = tuple(float(t) for t in (thresholds or ()))

    def host_labels(self, labels: Any) -> Any:
        arr = np.asarray(labels)
        if self.label_vocabulary is None:
            if arr.ndim != 2 or arr.shape[1] != self.n_classes:
                raise HeadError(
                    f"MultiLabelHead: labels must be multi-hot (0/1, or soft in [0, 1]) of shape "
                    f"[batch, {self.n_classes}], got shape {arr.shape}.")
            return _soft_labels(self, arr)
        text = arr.reshape(arr.shape[0], -1)
        present = text.astype(str) != ""
        ids = self._ids_of(np.where(present, text, self.label_vocabulary[0]))
        hot = np.zeros((arr.shape[0], self.n_classes), np.float32)
        rows = np.nonzero(present)[0]
        hot[rows, ids[present]] = 1
        return hot

    def host_predictions(self, predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
        out = _ClassHead.host_predictions(self, predictions)
        if PredictionKeys.ALL_CLASS_IDS in out:  # tf's MultiLabelHead: ``classes`` = every class name, per example
            out[PredictionKeys.CLASSES] = out[PredictionKeys.ALL_CLASSES]
        return out

    def _labels(self, labels: Any, logits: jax.Array) -> jax.Array:
        labels = jnp.asarray(labels)
        if labels.shape != logits.shape:
            raise HeadError(
                f"MultiLabelHead: labels must be multi-hot [batch, {self.n_classes}], got "
                f"{tuple(labels.shape)}.")
        return labels.astype(jnp.float32)

    def _unreduced_loss(self, labels: jax.Array, logits: jax.Array) -> jax.Array:
        return jnp.mean(_sigmoid_cross_entropy(labels, logits), axis=1, keepdims=True)

    def predictions(self, logits: jax.Array) -> dict[str, jax.Array]:
        logits = self._check_logits(logits)
        return {PredictionKeys.LOGITS: logits, PredictionKeys.PROBABILITIES: jax.nn.sigmoid(logits),
                PredictionKeys.ALL_CLASS_IDS: self._all_class_ids(logits.shape[0])}

    def _metrics(self, labels, logits, predictions, unreduced, weights):
        y, p = labels.astype(jnp.float32), predictions[PredictionKeys.PROBABILITIES]
        out = {
            MetricKeys.AVERAGE_LOSS: _mean(unreduced, weights),
            MetricKeys.AUC: metrics_lib.AUC(curve="ROC")(y, p, weights=weights),
            MetricKeys.AUC_PR: metrics_lib.AUC(curve="PR")(y, p, weights=weights),
        }
        return out | _threshold_metrics(self.thresholds, y, p, weights)
