"""Streaming, mergeable, weighted evaluation metrics.

A metric is a ``Metric``: a NamedTuple of four pure functions, in the style of
``optax.GradientTransformation``::

    state = metric.init()
    state = metric.update(state, labels, predictions, weights=None)
    state = metric.merge(state_a, state_b)      # exact: sums of counts
    value = metric.compute(state)                # scalar float32 array

States are pytrees of float32 arrays, so every function is jit-able. Calling a
metric, ``metric(labels, predictions, weights=w)``, gives a ``MetricOp``: the
metric and the state of that one batch; a ``model_fn`` returns those in
``EstimatorSpec.eval_metrics`` and ``evaluate`` merges the states of all
batches before one final ``compute`` (so RMSE is the RMSE of all the data, not
an average of per-batch RMSEs).

Inputs are flattened; ``weights`` (scalar, per example, or per value) are
broadcast to the shape of the values (``predictions`` for two-argument
metrics). A metric that has seen no weight returns 0, as tf.keras does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

State = Any  # a pytree of float32 arrays
Array = jax.Array

# tf.keras' backend.epsilon(): the offset of the end thresholds of AUC.
_EPSILON = 1e-7


class MetricError(ValueError):
    """A metric was configured or called with arguments it cannot use."""


class MetricOp(NamedTuple):
    """A metric and the state of one batch: what ``EstimatorSpec.eval_metrics`` holds.

    As a pytree only ``state`` is a child (``metric`` is static), so a jitted
    function may return MetricOps and ``jax.tree.map`` sees only the arrays.
    """

    metric: Metric
    state: State


class Metric(NamedTuple):
    """A streaming metric as four pure functions (see the module docstring).

    Attributes:
      init: ``() -> state``, the state of no data.
      update: ``(state, *args, weights=None) -> state``, adds one batch.
      merge: ``(state_a, state_b) -> state``, the state of both data sets.
      compute: ``state -> scalar float32 array``, the metric's value.
    """

    init: Callable[[], State]
    update: Callable[..., State]
    merge: Callable[[State, State], State]
    compute: Callable[[State], Array]

    def __call__(self, *args: Any, weights: Any = None, **kw: Any) -> MetricOp:
        """Returns ``MetricOp(self, update(init(), *args, weights=weights, **kw))``."""
        return MetricOp(self, self.update(self.init(), *args, weights=weights, **kw))


jax.tree_util.register_pytree_node(
    MetricOp,
    lambda op: ((op.state,), op.metric),
    lambda metric, children: MetricOp(metric, children[0]),
)


def compute_all(ops: Mapping[str, MetricOp]) -> dict[str, float]:
    """Computes every metric of ``{name: MetricOp}``; returns ``{name: python float}``."""
    return {name: float(op.metric.compute(op.state)) for name, op in ops.items()}


# ---------------------------------------------------------------------------
# Shared helpers.


def _div_no_nan(num: Array, den: Array) -> Array:
    """``num / den`` where ``den != 0``, else 0 (tf.math.divide_no_nan)."""
    safe = jnp.where(den == 0, jnp.ones_like(den), den)
    return jnp.where(den == 0, jnp.zeros_like(num), num / safe)


def _add_states(a: State, b: State) -> State:
    """Merge of states that are sums: elementwise addition of the pytrees."""
    return jax.tree.map(jnp.add, a, b)


def _flat_weights(weights: Any, shape: tuple[int, ...], where: str) -> Array:
    """Flat float32 weights for values of ``shape`` (keras-like broadcasting).

    ``None`` means weight 1. Weights with fewer dimensions that match the
    leading dimensions of ``shape`` (e.g. per-example weights ``(B,)`` for
    values ``(B, 1)``) get trailing unit dimensions; extra trailing unit
    dimensions of the weights are dropped; the rest follows numpy broadcasting.
    """
    size = int(np.prod(shape))
    if weights is None:
        return jnp.ones((size,), jnp.float32)
    w = jnp.asarray(weights, jnp.float32)
    ndim = len(shape)
    if w.ndim < ndim and w.shape == shape[: w.ndim]:
        w = w.reshape(w.shape + (1,) * (ndim - w.ndim))
    elif w.ndim > ndim and all(d == 1 for d in w.shape[ndim:]):
        w = w.reshape(w.shape[:ndim])
    try:
        w = jnp.broadcast_to(w, shape)
    except ValueError as e:
        raise MetricError(
            f"{where}: weights of shape {tuple(jnp.shape(weights))} do not broadcast to the values' "
            f"shape {shape}; pass a scalar, one weight per example, or one per value."
        ) from e
    return w.reshape(-1)


def _flat_pair(labels: Any, predictions: Any, where: str) -> tuple[Array, Array]:
    """Flattens labels and predictions; they must hold the same number of values."""
    labels, predictions = jnp.asarray(labels), jnp.asarray(predictions)
    if labels.size != predictions.size:
        raise MetricError(
            f"{where}: labels of shape {labels.shape} and predictions of shape {predictions.shape} "
            "hold different numbers of values; pass one prediction per label."
        )
    return labels.reshape(-1), predictions.reshape(-1)


def _check_threshold(value: Any, name: str, where: str) -> float:
    """A single float threshold, or MetricError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricError(f"{where}: {name} must be one number, e.g. 0.5; got {value!r}.")
    return float(value)


# ---------------------------------------------------------------------------
# Weighted means: Mean, MSE, RMSE, MAE, Accuracy.


def _weighted_mean(
    name: str,
    per_value: Callable[..., Array],
    finalize: Callable[[Array], Array] = lambda x: x,
) -> Metric:
    """A metric ``finalize(sum(w * v) / sum(w))`` of ``v = per_value(*args)``.

    ``per_value`` returns the values in the shape the weights broadcast to. The state is ``{"total": sum(w * v), "count": sum(w)}`` (tf.keras' Mean).
    """

    def init() -> State:
        return {"total": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

    def update(state: State, *args: Any, weights: Any = None) -> State:
        values = jnp.asarray(per_value(*args), jnp.float32)
        w = _flat_weights(weights, values.shape, name)
        return {
            "total": state["total"] + jnp.sum(values.reshape(-1) * w),
            "count": state["count"] + jnp.sum(w),
        }

    def compute(state: State) -> Array:
        return finalize(_div_no_nan(state["total"], state["count"]))

    return Metric(init, update, _add_states, compute)


def _pair(name: str, fn: Callable[[Array, Array], Array]) -> Callable[[Any, Any], Array]:
    """Per-value function of (labels, predictions), on flattened float32 inputs."""

    def per_value(labels: Any, predictions: Any) -> Array:
        shape = jnp.shape(predictions)
        labels, predictions = _flat_pair(labels, predictions, name)
        return fn(labels.astype(jnp.float32), predictions.astype(jnp.float32)).reshape(shape)

    return per_value


def Mean() -> Metric:
    """Weighted mean of ``values``: ``sum(w * v) / sum(w)``; ``update(state, values, weights=None)``."""
    return _weighted_mean("Mean", jnp.asarray)


def MeanSquaredError() -> Metric:
    """Weighted mean of ``(labels - predictions) ** 2`` (tf.keras.metrics.MeanSquaredError)."""
    return _weighted_mean("MeanSquaredError", _pair("MeanSquaredError", lambda y, p: (y - p) ** 2))


def RootMeanSquaredError() -> Metric:
    """``sqrt`` of the weighted mean of ``(labels - predictions) ** 2`` over all data seen."""
    return _weighted_mean(
        "RootMeanSquaredError",
        _pair("RootMeanSquaredError", lambda y, p: (y - p) ** 2),
        finalize=jnp.sqrt,
    )


def MeanAbsoluteError() -> Metric:
    """Weighted mean of ``|labels - predictions|`` (tf.keras.metrics.MeanAbsoluteError)."""
    return _weighted_mean("MeanAbsoluteError", _pair("MeanAbsoluteError", lambda y, p: jnp.abs(y - p)))


def Accuracy(threshold: float | None = None) -> Metric:
    """Weighted fraction of ``labels == predictions``.

    With ``threshold=None`` (tf.keras.metrics.Accuracy) labels and predictions
    are compared as given, e.g. class ids. With a threshold
    (tf.keras.metrics.BinaryAccuracy) predictions are probabilities and count
    as class 1 where ``predictions > threshold``; labels are 0/1.
    """
    where = "Accuracy"
    if threshold is not None:
        threshold = _check_threshold(threshold, "threshold", where)

    def per_value(labels: Any, predictions: Any) -> Array:
        shape = jnp.shape(predictions)
        labels, predictions = _flat_pair(labels, predictions, where)
        if threshold is not None:
            predictions = (predictions > threshold).astype(labels.dtype)
        return (labels == predictions).astype(jnp.float32).reshape(shape)

    return _weighted_mean(where, per_value)


# ---------------------------------------------------------------------------
# Confusion counts: Precision, Recall, AUC.


def _positive_negative_weights(labels: Any, predictions: Any, weights: Any, where: str):
    """Flat predictions (float32) and weights of the positive / negative labels.

    Labels are binary: nonzero is positive (tf.keras casts labels to bool).
    """
    predictions = jnp.asarray(predictions)
    w = _flat_weights(weights, predictions.shape, where)
    labels, predictions = _flat_pair(labels, predictions, where)
    is_pos = (labels != 0).astype(jnp.float32)
    return predictions.astype(jnp.float32), is_pos * w, (1.0 - is_pos) * w


def _confusion_at_threshold(name: str, threshold: float, compute: Callable[[State], Array]) -> Metric:
    """A metric over weighted tp/fp/tn/fn at one threshold (``prediction > threshold``)."""

    def init() -> State:
        return {k: jnp.zeros((), jnp.float32) for k in ("tp", "fp", "tn", "fn")}

    def update(state: State, labels: Any, predictions: Any, weights: Any = None) -> State:
        p, pos, neg = _positive_negative_weights(labels, predictions, weights, name)
        above = p > threshold
        return {
            "tp": state["tp"] + jnp.sum(jnp.where(above, pos, 0.0)),
            "fp": state["fp"] + jnp.sum(jnp.where(above, neg, 0.0)),
            "tn": state["tn"] + jnp.sum(jnp.where(above, 0.0, neg)),
            "fn": state["fn"] + jnp.sum(jnp.where(above, 0.0, pos)),
        }

    return Metric(init, update, _add_states, compute)


def Precision(thresholds: float = 0.5) -> Metric:
    """``tp / (tp + fp)`` of probabilities vs binary labels, positive where ``prediction > thresholds``.

    As tf.keras.metrics.Precision with one threshold; sample weights weigh the counts.
    """
    t = _check_threshold(thresholds, "thresholds", "Precision")
    return _confusion_at_threshold("Precision", t, lambda s: _div_no_nan(s["tp"], s["tp"] + s["fp"]))


def Recall(thresholds: float = 0.5) -> Metric:
    """``tp / (tp + fn)`` of probabilities vs binary labels, positive where ``prediction > thresholds``.

    As tf.keras.metrics.Recall with one threshold; sample weights weigh the counts.
    """
    t = _check_threshold(thresholds, "thresholds", "Recall")
    return _confusion_at_threshold("Recall", t, lambda s: _div_no_nan(s["tp"], s["tp"] + s["fn"]))


def auc_thresholds(num_thresholds: int = 200) -> np.ndarray:
    """The thresholds of ``AUC(num_thresholds)``, as tf.keras.metrics.AUC builds them.

    ``[0 - 1e-7] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + 1e-7]``
    (keras/src/metrics/confusion_metrics.py, ``AUC.__init__``).
    """
    n = int(num_thresholds)
    interior = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
    return np.array([0.0 - _EPSILON, *interior, 1.0 + _EPSILON])


def _roc_or_pr_riemann(state: State, curve: str, summation_method: str) -> Array:
    """Riemann sum over the thresholds (keras ``AUC.result`` for all but PR interpolation)."""
    tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
    recall = _div_no_nan(tp, tp + fn)
    if curve == "ROC":
        x, y = _div_no_nan(fp, fp + tn), recall
    else:
        x, y = recall, _div_no_nan(tp, tp + fp)
    if summation_method == "interpolation":
        heights = (y[:-1] + y[1:]) / 2.0
    elif summation_method == "minoring":
        heights = jnp.minimum(y[:-1], y[1:])
    else:
        heights = jnp.maximum(y[:-1], y[1:])
    return jnp.sum((x[:-1] - x[1:]) * heights)


def _interpolate_pr_auc(state: State) -> Array:
    """PR-AUC by keras' ``AUC.interpolate_pr_auc`` (Davis & Goadrich 2006, section 4).

    Between successive thresholds A, B, TP and P = TP + FP vary linearly, so
    precision = (intercept + slope * P) / P with slope = dTP / dP, and the area
    is ``slope * (dTP + intercept * log(P_A / P_B)) / (TP_B + FN_B)``
    (https://www.biostat.wisc.edu/~page/rocpr.pdf; the closed form is keras').
    """
    tp, fp, fn = state["tp"], state["fp"], state["fn"]
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    prec_slope = _div_no_nan(dtp, jnp.maximum(dp, 0.0))
    intercept = tp[1:] - prec_slope * p[1:]
    safe_p_ratio = jnp.where(
        (p[:-1] > 0) & (p[1:] > 0),
        _div_no_nan(p[:-1], jnp.maximum(p[1:], 0.0)),
        jnp.ones_like(p[1:]),
    )
    increment = _div_no_nan(
        prec_slope * (dtp + intercept * jnp.log(safe_p_ratio)),
        jnp.maximum(tp[1:] + fn[1:], 0.0),
    )
    return jnp.sum(increment)


def AUC(num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation") -> Metric:
    """Area under the ROC or PR curve of probabilities vs binary labels, as tf.keras.metrics.AUC.

    The state holds weighted tp/fp/tn/fn at the thresholds of
    ``auc_thresholds(num_thresholds)``, a prediction being positive where
    ``prediction > threshold``. As keras does for evenly spaced thresholds
    (``metrics_utils._update_confusion_matrix_variables_optimized``),
    predictions are clipped to [0, 1] and put in the bucket
    ``max(ceil(p * (n - 1)) - 1, 0)``, whose reversed cumulative sums give the
    counts. ``compute``: ROC by the trapezoid rule over (FPR, TPR); PR with
    ``"interpolation"`` by ``_interpolate_pr_auc``; ``"minoring"`` /
    ``"majoring"`` take the min / max of the two heights of each interval.

    Args:
      num_thresholds: number of thresholds, > 1 (keras' default 200).
      curve: ``"ROC"`` or ``"PR"``.
      summation_method: ``"interpolation"``, ``"minoring"`` or ``"majoring"``.
    """
    where = "AUC"
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds <= 1:
        raise MetricError(f"{where}: num_thresholds must be an integer > 1, got {num_thresholds!r}.")
    curve = str(curve).upper()
    if curve not in ("ROC", "PR"):
        raise MetricError(f"{where}: curve must be 'ROC' or 'PR', got {curve!r}.")
    summation_method = str(summation_method).lower()
    if summation_method not in ("interpolation", "minoring", "majoring"):
        raise MetricError(
            f"{where}: summation_method must be 'interpolation', 'minoring' or 'majoring', "
            f"got {summation_method!r}."
        )
    n = num_thresholds

    def init() -> State:
        return {k: jnp.zeros((n,), jnp.float32) for k in ("tp", "fp", "tn", "fn")}

    def update(state: State, labels: Any, predictions: Any, weights: Any = None) -> State:
        p, pos, neg = _positive_negative_weights(labels, predictions, weights, where)
        p = jnp.clip(p, 0.0, 1.0)
        bucket = jnp.maximum(jnp.ceil(p * (n - 1)) - 1, 0).astype(jnp.int32)
        tp = jnp.cumsum(jax.ops.segment_sum(pos, bucket, num_segments=n)[::-1])[::-1]
        fp = jnp.cumsum(jax.ops.segment_sum(neg, bucket, num_segments=n)[::-1])[::-1]
        return {
            "tp": state["tp"] + tp,
            "fp": state["fp"] + fp,
            "tn": state["tn"] + (jnp.sum(neg) - fp),
            "fn": state["fn"] + (jnp.sum(pos) - tp),
        }

    def compute(state: State) -> Array:
        if curve == "PR" and summation_method == "interpolation":
            return _interpolate_pr_auc(state)
        return _roc_or_pr_riemann(state, curve, summation_method)

    return Metric(init, update, _add_states, compute)
