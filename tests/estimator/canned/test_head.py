"""Heads: losses, predictions and tf-named metrics against numpy computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from estimator import ModeKeys, metrics
from estimator.canned import head as head_lib


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _sigmoid_xent(z, x):
    return -(z * np.log(_sigmoid(x)) + (1 - z) * np.log(1 - _sigmoid(x)))


def _eval(head, logits, labels, features=None):
    spec = head.create_estimator_spec(features or {}, ModeKeys.EVAL, logits, labels)
    return float(spec.loss), metrics.compute_all(spec.eval_metrics), spec.predictions


LOGITS = np.array([[-1.0], [0.5], [2.0], [0.25]], np.float32)
WEIGHTS = np.array([1.0, 2.0, 0.5, 1.5], np.float32)


@pytest.mark.parametrize("reduction", [head_lib.LossReduction.SUM_OVER_BATCH_SIZE, head_lib.LossReduction.SUM])
def test_regression_head_loss_and_metrics(reduction):
    head = head_lib.RegressionHead(weight_column="w", loss_reduction=reduction)
    y = np.array([0.0, 1.0, 1.0, 3.0], np.float32)
    loss, m, pred = _eval(head, LOGITS, y, {"w": WEIGHTS})
    sq = (y - LOGITS[:, 0]) ** 2
    expected = np.sum(WEIGHTS * sq) / (4 if reduction == "sum_over_batch_size" else 1)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert m["average_loss"] == pytest.approx(np.sum(WEIGHTS * sq) / WEIGHTS.sum(), rel=1e-6)
    assert m["label/mean"] == pytest.approx(np.sum(WEIGHTS * y) / WEIGHTS.sum(), rel=1e-6)
    assert m["prediction/mean"] == pytest.approx(np.sum(WEIGHTS * LOGITS[:, 0]) / WEIGHTS.sum(), rel=1e-6)
    np.testing.assert_allclose(pred["predictions"], LOGITS)


def test_regression_head_multi_dimensional_labels_and_inverse_link():
    head = head_lib.RegressionHead(label_dimension=2, inverse_link_fn=lambda x: 2 * x)
    logits = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    y = np.array([[0.0, 2.0], [3.0, 6.0]], np.float32)
    loss, m, pred = _eval(head, logits, y)
    assert loss == pytest.approx((1 + 0 + 0 + 4) / 4)  # SUM_OVER_BATCH_SIZE counts every value
    np.testing.assert_allclose(pred["predictions"], 2 * logits)
    np.testing.assert_allclose(pred["logits"], logits)
    with pytest.raises(head_lib.HeadError, match="labels of shape"):
        _eval(head, logits, y[:, :1])


def test_binary_head_predictions_loss_and_metrics():
    head = head_lib.BinaryClassHead(weight_column="w", thresholds=[0.7])
    y = np.array([0, 1, 0, 1])
    loss, m, pred = _eval(head, LOGITS, y, {"w": WEIGHTS})
    x, w = LOGITS[:, 0].astype(np.float64), WEIGHTS.astype(np.float64)
    xent = _sigmoid_xent(y, x)
    assert loss == pytest.approx(np.sum(w * xent) / 4, rel=1e-5)
    p = _sigmoid(x)
    np.testing.assert_allclose(pred["logistic"][:, 0], p, rtol=1e-6)
    np.testing.assert_allclose(pred["probabilities"], np.stack([1 - p, p], 1), rtol=1e-6)
    np.testing.assert_array_equal(pred["class_ids"][:, 0], [0, 1, 1, 1])
    pos = (x > 0).astype(int)
    tp = np.sum(w * (pos == 1) * (y == 1))
    label_mean = np.sum(w * y) / w.sum()
    expected = {
        "accuracy": np.sum(w * (pos == y)) / w.sum(),
        "precision": tp / np.sum(w * (pos == 1)),
        "recall": tp / np.sum(w * (y == 1)),
        "label/mean": label_mean,
        "prediction/mean": np.sum(w * p) / w.sum(),
        "accuracy_baseline": max(label_mean, 1 - label_mean),
        "average_loss": np.sum(w * xent) / w.sum(),
        # predictions fall in distinct AUC buckets, so keras' interpolated ROC AUC is the exact
        # weighted probability that a positive outranks a negative
        "auc": sum(w[i] * w[j] * (p[i] > p[j]) for i in range(4) for j in range(4) if y[i] and not y[j])
        / (np.sum(w * y) * np.sum(w * (1 - y))),
        "accuracy/positive_threshold_0.7": np.sum(w * ((p > 0.7) == y)) / w.sum(),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-5), key
    assert 0.0 <= m["auc_precision_recall"] <= 1.0
    assert {"precision/positive_threshold_0.7", "recall/positive_threshold_0.7"} <= m.keys()


def test_binary_head_label_vocabulary_on_host_and_classes():
    head = head_lib.BinaryClassHead(label_vocabulary=["neg", "pos"])
    np.testing.assert_array_equal(head.host_labels(np.array(["pos", "neg", "pos"])), [1, 0, 1])
    with pytest.raises(head_lib.HeadError, match="not in label_vocabulary"):
        head.host_labels(np.array(["pos", "maybe"]))
    pred = head.predictions(LOGITS[:2])
    out = head.host_predictions({k: np.asarray(v) for k, v in pred.items()})
    assert out["classes"].tolist() == [[b"neg"], [b"pos"]]
    assert out["all_classes"][0].tolist() == [b"neg", b"pos"]
    plain = head_lib.BinaryClassHead()
    assert plain.host_predictions({"class_ids": np.array([[1]])})["classes"].tolist() == [[b"1"]]
    with pytest.raises(head_lib.HeadError, match=r"labels must be in \[0, 1\]"):
        plain.host_labels(np.array([0, 2]))
    with pytest.raises(head_lib.HeadError, match="label_vocabulary"):
        plain.host_labels(np.array(["a"]))


def test_multi_class_head_softmax_loss_accuracy_and_classes():
    head = head_lib.MultiClassHead(3, weight_column="w", label_vocabulary=["a", "b", "c"])
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 0.0, 0.0]], np.float32)
    labels = head.host_labels(np.array([["b"], ["a"], ["a"]]))
    w = np.array([1.0, 2.0, 3.0])
    loss, m, pred = _eval(head, logits, labels, {"w": w})
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    xent = -logp[np.arange(3), labels[:, 0]]
    assert loss == pytest.approx(np.sum(w * xent) / 3, rel=1e-5)
    assert m["average_loss"] == pytest.approx(np.sum(w * xent) / w.sum(), rel=1e-5)
    assert m["accuracy"] == pytest.approx((1.0 + 3.0) / 6.0)
    np.testing.assert_allclose(pred["probabilities"], np.exp(logp), rtol=1e-5)
    out = head.host_predictions({k: np.asarray(v) for k, v in pred.items()})
    assert out["classes"][:, 0].tolist() == [b"b", b"c", b"a"]


def test_multi_label_head_mean_over_classes_and_vocabulary():
    head = head_lib.MultiLabelHead(3, label_vocabulary=["x", "y", "z"], thresholds=[0.5])
    labels = head.host_labels(np.array([["x", "z"], ["y", ""]]))
    np.testing.assert_array_equal(labels, [[1, 0, 1], [0, 1, 0]])
    logits = np.array([[1.0, -2.0, 0.5], [0.0, 1.5, -1.0]], np.float32)
    loss, m, pred = _eval(head, logits, labels)
    per_example = _sigmoid_xent(labels, logits.astype(np.float64)).mean(axis=1)
    assert loss == pytest.approx(per_example.mean(), rel=1e-5)
    assert m["average_loss"] == pytest.approx(per_example.mean(), rel=1e-5)
    assert m["accuracy/positive_threshold_0.5"] == pytest.approx(np.mean((logits > 0) == labels))
    assert m["auc"] == pytest.approx(1.0)  # every positive logit exceeds every negative one
    np.testing.assert_allclose(pred["probabilities"], _sigmoid(logits), rtol=1e-6)


def test_predict_needs_no_labels_and_eval_does():
    head = head_lib.RegressionHead()
    spec = head.create_estimator_spec({}, ModeKeys.PREDICT, LOGITS)
    assert spec.loss is None and set(spec.predictions) == {"predictions"}
    with pytest.raises(head_lib.HeadError, match="labels are required"):
        head.create_estimator_spec({}, ModeKeys.EVAL, LOGITS)
    with pytest.raises(head_lib.HeadError, match="logits must have shape"):
        head.create_estimator_spec({}, ModeKeys.PREDICT, np.zeros((4, 2)))


# TensorFlow goldens: printed by scripts/tf_goldens/probe_tf_parity.py under tensorflow-cpu 2.15.1 +
# tensorflow-estimator 2.15.0 (the name after "TF:" is the probe's output line).
SOFT = np.array([[0.3], [0.9], [0.5], [1.0]], np.float32)
TF_BINARY_SOFT = (0.7100514769554138, {  # TF: binary_soft (LOGITS, SOFT labels)
    "accuracy": 0.25, "accuracy_baseline": 0.675, "auc": 0.0, "auc_precision_recall": 1.0,
    "average_loss": 0.710051, "label/mean": 0.675, "precision": 1.0, "prediction/mean": 0.583594,
    "recall": 0.75})
ML_LOGITS = np.array([[1.0, -2.0, 0.5], [0.0, 1.5, -1.0]], np.float32)
ML_SOFT = np.array([[0.2, 0.0, 1.0], [0.5, 0.7, 0.1]], np.float32)
TF_MULTILABEL_SOFT = (0.578681468963623, {"auc": 1.0, "auc_precision_recall": 1.0, "average_loss": 0.578681})


def _assert_metrics(got, want):
    assert set(want) == set(got)  # the same metric names as tf
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=2e-6), key


def test_binary_head_soft_labels_match_tf():
    head = head_lib.BinaryClassHead()
    loss, m, _ = _eval(head, LOGITS, head.host_labels(SOFT))
    assert loss == pytest.approx(TF_BINARY_SOFT[0], rel=1e-6)
    _assert_metrics(m, TF_BINARY_SOFT[1])


def test_multi_label_head_soft_labels_match_tf():
    head = head_lib.MultiLabelHead(3)
    loss, m, _ = _eval(head, ML_LOGITS, head.host_labels(ML_SOFT))
    assert loss == pytest.approx(TF_MULTILABEL_SOFT[0], rel=1e-6)
    _assert_metrics(m, TF_MULTILABEL_SOFT[1])


@pytest.mark.parametrize("make, bad", [
    (lambda: head_lib.BinaryClassHead(), np.array([[1.5], [0.0], [0.0], [1.0]])),  # TF: binary_soft_above_1
    (lambda: head_lib.BinaryClassHead(), np.array([[-0.1], [0.0], [np.nan], [1.0]])),
    (lambda: head_lib.MultiLabelHead(3), np.array([[0.0, 2.0, 1.0], [0.0, 0.0, 0.0]])),
])
def test_soft_labels_outside_0_1_are_refused(make, bad):
    with pytest.raises(head_lib.HeadError, match=r"in \[0, 1\]"):
        make().host_labels(bad)


def test_accuracy_baseline_with_all_weights_zero_is_zero_like_tf():
    head = head_lib.BinaryClassHead(weight_column="w")
    labels = np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)
    loss, m, _ = _eval(head, LOGITS, head.host_labels(labels), {"w": np.zeros(4, np.float32)})
    assert loss == 0.0
    assert m["accuracy_baseline"] == 0.0  # TF: binary_zero_weights (every metric 0.0)
    assert all(v == 0.0 for v in m.values()), m


@pytest.mark.parametrize("vocab, names", [(None, [b"0", b"1", b"2"]), (["x", "y", "z"], [b"x", b"y", b"z"])])
def test_multi_label_head_predicts_classes_like_tf(vocab, names):
    # TF: multilabel_prediction_keys = ['classes', 'logits', 'probabilities'];
    # multilabel_classes / multilabel_classes_vocab: every class name on every row.
    head = head_lib.MultiLabelHead(3, label_vocabulary=vocab)
    spec = head.create_estimator_spec({}, ModeKeys.PREDICT, ML_LOGITS)
    pred = head.host_predictions({k: np.asarray(v) for k, v in spec.predictions.items()})
    assert {"classes", "logits", "probabilities"} <= set(pred)
    assert pred["classes"].tolist() == [names, names]


W4 = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
MC_LOGITS = np.array([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [-2.0, 1.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
TF_WEIGHTED = {  # TF: binary_weighted, multiclass_weighted_vocab, regression_weighted, multilabel_weighted
    "binary": (lambda: head_lib.BinaryClassHead(weight_column="w", thresholds=[0.3, 0.7]), LOGITS,
               np.array([[0.0], [1.0], [1.0], [0.0]]), W4, (0.6409472227096558, {
                   "accuracy": 0.7, "accuracy/positive_threshold_0.3": 0.7, "accuracy/positive_threshold_0.7": 0.6,
                   "accuracy_baseline": 0.5, "auc": 1.0, "auc_precision_recall": 1.0, "average_loss": 0.512758,
                   "label/mean": 0.5, "precision": 0.625, "precision/positive_threshold_0.3": 0.625,
                   "precision/positive_threshold_0.7": 1.0, "prediction/mean": 0.559505, "recall": 1.0,
                   "recall/positive_threshold_0.3": 1.0, "recall/positive_threshold_0.7": 0.2})),
    "multiclass": (lambda: head_lib.MultiClassHead(3, weight_column="w", label_vocabulary=["a", "b", "c"]),
                   MC_LOGITS, np.array([["a"], ["a"], ["c"], ["b"]]), W4,
                   (1.0814580917358398, {"accuracy": 0.3, "average_loss": 0.865166})),
    "regression": (lambda: head_lib.RegressionHead(weight_column="w"), LOGITS,
                   np.array([[0.0], [1.0], [3.0], [-1.0]]), W4,
                   (1.0859375, {"average_loss": 0.86875, "label/mean": 0.4, "prediction/mean": 0.275})),
    "multilabel": (lambda: head_lib.MultiLabelHead(3, weight_column="w", thresholds=[0.5]), ML_LOGITS,
                   np.array([[1, 0, 1], [0, 1, 0]]), np.array([2.0, 0.5], np.float32), (0.4054073989391327, {
                       "accuracy/positive_threshold_0.5": 1.0, "auc": 1.0, "auc_precision_recall": 1.0,
                       "average_loss": 0.324326, "precision/positive_threshold_0.5": 1.0,
                       "recall/positive_threshold_0.5": 1.0})),
}


@pytest.mark.parametrize("case", sorted(TF_WEIGHTED))
def test_weighted_heads_match_tf(case):
    make, logits, labels, weights, (tf_loss, tf_metrics) = TF_WEIGHTED[case]
    head = make()
    loss, m, _ = _eval(head, logits, head.host_labels(labels), {"w": weights})
    assert loss == pytest.approx(tf_loss, rel=1e-6)
    _assert_metrics(m, tf_metrics)


@pytest.mark.parametrize("make, logits", [(lambda: head_lib.BinaryClassHead(), np.zeros((4, 1), np.float32)),
                                          (lambda: head_lib.MultiLabelHead(2), np.zeros((4, 2), np.float32))])
def test_sigmoid_loss_gradient_at_zero_logits_is_sigmoid_minus_label(make, logits):
    # where a zero-initialised linear classifier starts; tf's gradient: (sigmoid(0) - z) / n
    import jax

    head = make()
    labels = head.host_labels(np.array([[0, 1], [1, 1], [1, 0], [0, 0]])[:, : logits.shape[1]])
    grad = jax.grad(lambda x: head.loss(labels, x, {}))(logits)
    np.testing.assert_allclose(grad, (0.5 - labels) / labels.size, rtol=1e-6)


@pytest.mark.parametrize("reduction", [head_lib.LossReduction.SUM_OVER_BATCH_SIZE, head_lib.LossReduction.SUM])
def test_head_loss_is_the_specs_loss_and_a_name_suffixes_the_metric_keys(reduction):
    labels, features = np.array([[1], [0], [1], [1]]), {"w": WEIGHTS}
    plain = head_lib.BinaryClassHead(weight_column="w", loss_reduction=reduction)
    named = head_lib.BinaryClassHead(weight_column="w", loss_reduction=reduction, name="click")
    loss, m, _ = _eval(plain, LOGITS, plain.host_labels(labels), features)
    named_loss, named_m, _ = _eval(named, LOGITS, named.host_labels(labels), features)
    # oracle: weighted sigmoid cross-entropy in numpy, reduced as loss_reduction says
    z, x = labels.astype(np.float64), LOGITS.astype(np.float64)
    xent = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    total = np.sum(WEIGHTS[:, None] * xent)
    expected = total if reduction == head_lib.LossReduction.SUM else total / len(x)
    assert loss == named_loss == pytest.approx(expected, rel=1e-5)
    assert float(plain.loss(plain.host_labels(labels), LOGITS, features)) == pytest.approx(loss, rel=1e-6)
    assert set(named_m) == {f"{k}/click" for k in m}
    assert all(named_m[f"{k}/click"] == pytest.approx(v) for k, v in m.items())
