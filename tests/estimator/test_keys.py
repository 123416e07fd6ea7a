"""PredictionKeys / MetricKeys name what the canned heads produce, with tf.estimator's strings."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import estimator
from estimator import MetricKeys, ModeKeys, PredictionKeys
from estimator.canned import BinaryClassHead, MultiClassHead, MultiLabelHead, RegressionHead


def _values(keys) -> set[str]:
    return {v for k, v in vars(keys).items() if k.isupper()}


def test_the_strings_are_tensorflows():
    # tensorflow_estimator's prediction_keys.py / metric_keys.py
    assert PredictionKeys.PROBABILITIES == "probabilities" and PredictionKeys.CLASS_IDS == "class_ids"
    assert PredictionKeys.ALL_CLASSES == "all_classes" and PredictionKeys.LOGISTIC == "logistic"
    assert MetricKeys.AVERAGE_LOSS == "average_loss" and MetricKeys.LABEL_MEAN == "label/mean"
    assert MetricKeys.AUC_PR == "auc_precision_recall" and MetricKeys.PREDICTION_MEAN == "prediction/mean"
    assert estimator.canned.PredictionKeys is PredictionKeys and estimator.canned.MetricKeys is MetricKeys


@pytest.mark.parametrize("head, labels", [
    (RegressionHead(), np.array([[1.0], [0.0]])),
    (BinaryClassHead(), np.array([[1], [0]])),
    (MultiClassHead(3), np.array([[2], [0]])),
    (MultiLabelHead(3), np.array([[1, 0, 1], [0, 0, 0]])),
], ids=["regression", "binary", "multiclass", "multilabel"])
def test_every_prediction_and_metric_of_a_canned_head_has_a_key(head, labels):
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, head.logits_dimension)), jnp.float32)
    spec = head.create_estimator_spec({}, ModeKeys.EVAL, logits, labels)
    assert set(head.host_predictions(dict(spec.predictions))) <= _values(PredictionKeys)
    assert set(spec.eval_metrics) <= _values(MetricKeys)
    assert MetricKeys.AVERAGE_LOSS in spec.eval_metrics


def test_canned_estimators_and_heads_are_importable_from_the_top_package():
    for name in estimator.canned.__all__:
        if name.endswith(("Regressor", "Classifier", "Estimator", "Head")):
            assert getattr(estimator, name) is getattr(estimator.canned, name)
            assert name in estimator.__all__
