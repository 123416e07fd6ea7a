"""Tests of estimator.metrics against independent numpy computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from estimator import metrics
from estimator.metrics import MetricError, MetricOp

# ---------------------------------------------------------------------------
# numpy references


def np_weighted_mean(values, weights=None):
    values = np.asarray(values, np.float64).reshape(-1)
    w = np.ones_like(values) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    return float(np.sum(values * w) / np.sum(w))


def np_keras_confusion(labels, preds, weights, num_thresholds):
    """tp/fp/tn/fn per threshold by the definition: positive where prediction > threshold."""
    n = num_thresholds
    thresholds = np.array([-1e-7] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + 1e-7])
    p = np.clip(np.asarray(preds, np.float64).reshape(-1), 0.0, 1.0)
    w = np.ones_like(p) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    is_pos = np.asarray(labels).reshape(-1) != 0
    above = p[None, :] > thresholds[:, None]
    tp = (above & is_pos).astype(np.float64) @ w
    fp = (above & ~is_pos).astype(np.float64) @ w
    fn = (~above & is_pos).astype(np.float64) @ w
    tn = (~above & ~is_pos).astype(np.float64) @ w
    return tp, fp, tn, fn


def np_roc_auc(tp, fp, tn, fn):
    """Trapezoids of TPR over FPR, thresholds in increasing order (FPR decreasing)."""
    tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) != 0)
    fpr = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) != 0)
    return float(sum((fpr[i] - fpr[i + 1]) * (tpr[i] + tpr[i + 1]) / 2 for i in range(len(tp) - 1)))


def np_pr_auc_interpolated(tp, fp, fn):
    """Davis & Goadrich interpolation, integrated numerically interval by interval.

    Within [B, A] (B the higher threshold), TP and P = TP + FP vary linearly, so
    TP(P) = TP_B + slope * (P - P_B); the area is the integral of precision
    TP(P) / P over recall TP(P) / total_pos, i.e. of (TP(P) / P) * slope / total_pos
    dP. Intervals where P does not grow add nothing (as in keras).
    """
    total_pos = tp[0] + fn[0]
    if total_pos <= 0:
        return 0.0
    area = 0.0
    for i in range(len(tp) - 1):
        p_a, p_b = tp[i] + fp[i], tp[i + 1] + fp[i + 1]
        if p_a - p_b <= 0:
            continue
        slope = (tp[i] - tp[i + 1]) / (p_a - p_b)
        m = 20000
        grid = p_b + (np.arange(m) + 0.5) * (p_a - p_b) / m  # midpoint rule, never P == 0
        tp_at = tp[i + 1] + slope * (grid - p_b)
        area += np.sum(tp_at / grid) * (p_a - p_b) / m * slope / total_pos
    return float(area)


def np_mann_whitney_auc(labels, scores, weights):
    """Exact weighted ROC AUC: P(score_pos > score_neg) + 0.5 P(tie), over weighted pairs."""
    pos, neg = labels != 0, labels == 0
    sp, sn, wp, wn = scores[pos], scores[neg], weights[pos], weights[neg]
    gt = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    return float(wp @ gt @ wn / (wp.sum() * wn.sum()))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def regression_batch(rng, n=37):
    labels = rng.normal(size=n).astype(np.float32)
    preds = (labels + rng.normal(scale=0.7, size=n)).astype(np.float32)
    weights = rng.uniform(0.0, 2.0, size=n).astype(np.float32)
    return labels, preds, weights


def binary_batch(rng, n=300, num_thresholds=200):
    """Binary labels and probabilities kept away from the bucket edges, plus 0, 1 and out of range."""
    labels = (rng.uniform(size=n) < 0.4).astype(np.float32)
    k = rng.integers(0, num_thresholds - 1, size=n)
    u = rng.uniform(0.05, 0.95, size=n)
    preds = ((k + u) / (num_thresholds - 1)).astype(np.float32)
    preds[:4] = [0.0, 1.0, -0.3, 1.2]
    weights = rng.uniform(0.0, 2.0, size=n).astype(np.float32)
    return labels, preds, weights


def value(op: MetricOp) -> float:
    return float(op.metric.compute(op.state))


# ---------------------------------------------------------------------------
# weighted means


@pytest.mark.parametrize("weighted", [False, True])
def test_regression_metrics_match_numpy(rng, weighted):
    labels, preds, weights = regression_batch(rng)
    w = weights if weighted else None
    err = preds.astype(np.float64) - labels
    cases = {
        metrics.MeanSquaredError(): np_weighted_mean(err**2, w),
        metrics.RootMeanSquaredError(): np.sqrt(np_weighted_mean(err**2, w)),
        metrics.MeanAbsoluteError(): np_weighted_mean(np.abs(err), w),
    }
    for metric, expected in cases.items():
        assert value(metric(labels, preds, weights=w)) == pytest.approx(expected, rel=1e-5)
    assert value(metrics.Mean()(preds, weights=w)) == pytest.approx(np_weighted_mean(preds, w), rel=1e-5)


def test_accuracy_of_class_ids_and_of_thresholded_probabilities(rng):
    labels = rng.integers(0, 3, size=50)
    class_ids = np.where(rng.uniform(size=50) < 0.7, labels, (labels + 1) % 3)
    weights = rng.uniform(size=50)
    eq = (labels == class_ids).astype(np.float64)
    assert value(metrics.Accuracy()(labels, class_ids)) == pytest.approx(eq.mean(), rel=1e-6)
    assert value(metrics.Accuracy()(labels[:, None], class_ids, weights=weights)) == pytest.approx(
        np_weighted_mean(eq, weights), rel=1e-6
    )

    binary = (rng.uniform(size=50) < 0.5).astype(np.float32)
    probs = rng.uniform(size=50).astype(np.float32)
    eq = (binary == (probs > 0.3)).astype(np.float64)
    acc = metrics.Accuracy(threshold=0.3)(binary, probs, weights=weights)
    assert value(acc) == pytest.approx(np_weighted_mean(eq, weights), rel=1e-6)


def test_weights_broadcast_per_example_and_scalar(rng):
    values = rng.normal(size=(6, 3)).astype(np.float32)
    per_example = rng.uniform(size=6).astype(np.float32)
    expected = np_weighted_mean(values, np.repeat(per_example[:, None], 3, axis=1))
    assert value(metrics.Mean()(values, weights=per_example)) == pytest.approx(expected, rel=1e-5)
    assert value(metrics.Mean()(values, weights=per_example[:, None])) == pytest.approx(expected, rel=1e-5)
    assert value(metrics.Mean()(values, weights=3.0)) == pytest.approx(values.astype(np.float64).mean(), rel=1e-5)
    # labels (B, 1) against predictions (B,), weights (B, 1): flattened pairwise.
    labels, preds = values[:, 0], values[:, 1]
    mse = metrics.MeanSquaredError()(labels[:, None], preds, weights=per_example[:, None])
    assert value(mse) == pytest.approx(np_weighted_mean((labels - preds.astype(np.float64)) ** 2, per_example), rel=1e-5)


def test_bad_shapes_and_configs_raise_metric_error():
    with pytest.raises(MetricError, match="weights of shape"):
        metrics.Mean()(np.ones(4), weights=np.ones(5))
    with pytest.raises(MetricError, match="different numbers of values"):
        metrics.MeanSquaredError()(np.ones(4), np.ones(3))
    with pytest.raises(MetricError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(MetricError, match="curve"):
        metrics.AUC(curve="ROCPR")
    with pytest.raises(MetricError, match="summation_method"):
        metrics.AUC(summation_method="trapezoid")
    with pytest.raises(MetricError, match="thresholds"):
        metrics.Precision(thresholds=[0.3, 0.5])


# ---------------------------------------------------------------------------
# precision / recall


@pytest.mark.parametrize(
    ("factory", "labels", "preds", "weights", "expected"),
    [  # the examples of the tf.keras.metrics.Precision / Recall docstrings
        (metrics.Precision, [0, 1, 1, 1], [1, 0, 1, 1], None, 2 / 3),
        (metrics.Precision, [0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], 1.0),
        (metrics.Recall, [0, 1, 1, 1], [1, 0, 1, 1], None, 2 / 3),
        (metrics.Recall, [0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], 1.0),
    ],
)
def test_precision_recall_keras_examples(factory, labels, preds, weights, expected):
    assert value(factory()(np.array(labels), np.array(preds, np.float32), weights=weights)) == pytest.approx(expected)


@pytest.mark.parametrize("weighted", [False, True])
def test_precision_recall_match_numpy(rng, weighted):
    labels, preds, weights = binary_batch(rng)
    w = weights.astype(np.float64) if weighted else np.ones(len(labels))
    above, pos = preds > 0.4, labels != 0
    tp, fp, fn = w[above & pos].sum(), w[above & ~pos].sum(), w[~above & pos].sum()
    kw = {"weights": weights if weighted else None}
    assert value(metrics.Precision(thresholds=0.4)(labels, preds, **kw)) == pytest.approx(tp / (tp + fp), rel=1e-5)
    assert value(metrics.Recall(thresholds=0.4)(labels, preds, **kw)) == pytest.approx(tp / (tp + fn), rel=1e-5)


# ---------------------------------------------------------------------------
# AUC


def test_auc_keras_docstring_examples():
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 0.5, 0.3, 0.9], np.float32)
    assert value(metrics.AUC(num_thresholds=3)(labels, preds)) == pytest.approx(0.75)
    assert value(metrics.AUC(num_thresholds=3)(labels, preds, weights=[1, 0, 0, 1])) == pytest.approx(1.0)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_thresholds", [200, 17])
def test_auc_confusion_counts_and_values_match_numpy(rng, weighted, num_thresholds):
    labels, preds, weights = binary_batch(rng, num_thresholds=num_thresholds)
    w = weights if weighted else None
    tp, fp, tn, fn = np_keras_confusion(labels, preds, w, num_thresholds)

    roc = metrics.AUC(num_thresholds=num_thresholds)(labels, preds, weights=w)
    for key, expected in zip(("tp", "fp", "tn", "fn"), (tp, fp, tn, fn), strict=True):
        np.testing.assert_allclose(np.asarray(roc.state[key]), expected, rtol=1e-5, atol=1e-3)
    assert value(roc) == pytest.approx(np_roc_auc(tp, fp, tn, fn), abs=1e-5)

    pr = metrics.AUC(num_thresholds=num_thresholds, curve="PR")(labels, preds, weights=w)
    assert value(pr) == pytest.approx(np_pr_auc_interpolated(tp, fp, fn), abs=1e-4)


@pytest.mark.parametrize("weighted", [False, True])
def test_roc_auc_close_to_exact_mann_whitney(rng, weighted):
    n = 400
    labels = (rng.uniform(size=n) < 0.5).astype(np.float32)
    scores = (1 / (1 + np.exp(-(2.0 * (2 * labels - 1) + rng.normal(size=n))))).astype(np.float32)
    weights = rng.uniform(0.1, 2.0, size=n) if weighted else np.ones(n)
    exact = np_mann_whitney_auc(labels, scores.astype(np.float64), weights)
    got = value(metrics.AUC()(labels, scores, weights=weights.astype(np.float32)))
    assert 0.9 < exact < 1.0
    assert got == pytest.approx(exact, abs=5e-3)


def test_pr_auc_of_perfect_ranking_is_one():
    labels = np.array([0, 0, 0, 1, 1, 1, 1], np.float32)
    preds = np.array([0.05, 0.1, 0.2, 0.7, 0.8, 0.9, 0.95], np.float32)
    assert value(metrics.AUC(curve="PR")(labels, preds)) == pytest.approx(1.0, abs=1e-6)
    assert value(metrics.AUC()(labels, preds)) == pytest.approx(1.0, abs=1e-6)


def test_auc_minoring_majoring_bracket_interpolation(rng):
    labels, preds, _ = binary_batch(rng)
    for curve in ("ROC", "PR"):
        lo, mid, hi = (
            value(metrics.AUC(curve=curve, summation_method=m)(labels, preds))
            for m in ("minoring", "interpolation", "majoring")
        )
        assert lo <= mid + 1e-6 and mid <= hi + 1e-6


# ---------------------------------------------------------------------------
# streaming: merge is exact


def merged_op(metric, batches):
    state = metric.init()
    for batch in batches:
        *args, w = batch
        state = metric.merge(state, metric(*args, weights=w).state)
    return MetricOp(metric, state)


def test_merging_batches_gives_the_full_data_value(rng):
    labels, preds, weights = regression_batch(rng, n=60)
    cuts = [0, 5, 29, 60]
    batches = [(labels[a:b], preds[a:b], weights[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    for factory in (metrics.MeanSquaredError, metrics.RootMeanSquaredError, metrics.MeanAbsoluteError):
        full = value(factory()(labels, preds, weights=weights))
        assert value(merged_op(factory(), batches)) == pytest.approx(full, rel=1e-5)
    err2 = (preds.astype(np.float64) - labels) ** 2
    rmse = np.sqrt(np_weighted_mean(err2, weights))
    per_batch = np.mean([np.sqrt(np_weighted_mean(err2[a:b], weights[a:b])) for a, b in zip(cuts, cuts[1:], strict=False)])
    assert value(merged_op(metrics.RootMeanSquaredError(), batches)) == pytest.approx(rmse, rel=1e-5)
    assert abs(per_batch - rmse) > 1e-3  # the test would notice an average of batch values

    blabels, bpreds, bweights = binary_batch(rng)
    cuts = [0, 100, 101, 300]
    batches = [(blabels[a:b], bpreds[a:b], bweights[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    for metric in (metrics.AUC(), metrics.AUC(curve="PR"), metrics.Precision(), metrics.Recall(), metrics.Accuracy(0.5)):
        full = metric(blabels, bpreds, weights=bweights)
        merged = merged_op(metric, batches)
        for key in full.state:
            np.testing.assert_allclose(np.asarray(merged.state[key]), np.asarray(full.state[key]), rtol=1e-5, atol=1e-4)
        assert value(merged) == pytest.approx(value(full), abs=1e-5)


def test_empty_state_and_zero_weights_give_zero_not_nan():
    factories = [
        metrics.Mean, metrics.MeanSquaredError, metrics.RootMeanSquaredError, metrics.MeanAbsoluteError,
        metrics.Accuracy, metrics.Precision, metrics.Recall, metrics.AUC, lambda: metrics.AUC(curve="PR"),
    ]
    for factory in factories:
        metric = factory()
        assert float(metric.compute(metric.init())) == 0.0
    for factory in factories[1:]:
        op = factory()(np.array([1.0, 0.0]), np.array([0.8, 0.3]), weights=np.zeros(2))
        assert float(op.metric.compute(op.state)) == 0.0
    assert value(metrics.Mean()(np.ones(3), weights=0.0)) == 0.0


# ---------------------------------------------------------------------------
# jit and the MetricOp contract


def test_everything_is_jittable_and_states_are_float32(rng):
    labels, preds, weights = binary_batch(rng, n=64)
    for metric in (metrics.AUC(), metrics.AUC(curve="PR"), metrics.RootMeanSquaredError(), metrics.Recall()):
        eager = metric(labels, preds, weights=weights)
        jitted = jax.jit(lambda y, p, w, m=metric: m(y, p, weights=w))(labels, preds, weights)
        assert isinstance(jitted, MetricOp) and jitted.metric is metric
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(jitted))
        merged = jax.jit(metric.merge)(jitted.state, eager.state)
        doubled = jax.tree.map(lambda x: 2 * x, eager.state)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4), merged, doubled)
        assert float(jax.jit(metric.compute)(jitted.state)) == pytest.approx(value(eager), abs=1e-5)


def test_compute_all(rng):
    labels, preds, _ = regression_batch(rng)
    ops = {"mse": metrics.MeanSquaredError()(labels, preds), "mean": metrics.Mean()(preds)}
    out = metrics.compute_all(ops)
    assert set(out) == {"mse", "mean"} and all(isinstance(v, float) for v in out.values())
    assert out["mean"] == pytest.approx(np_weighted_mean(preds), rel=1e-5)
