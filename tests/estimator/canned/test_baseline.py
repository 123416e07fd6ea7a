"""Baseline estimators: bias-only logits, FTRL step and class priors computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from estimator.canned import BaselineClassifier, BaselineRegressor


def test_baseline_regressor_weighted_ftrl_step(tmp_path):
    y = np.array([1.0, 2.0, 4.0], np.float32)
    w = np.array([1.0, 0.5, 2.0], np.float32)
    est = BaselineRegressor(model_dir=str(tmp_path), weight_column="w")
    est.train(lambda: [({"w": w, "key": np.array(["a", "b", "c"])}, y)], steps=1)
    g = np.sum(2 * w * (0.0 - y)) / 3  # SUM_OVER_BATCH_SIZE of weighted squared error, at bias 0
    expected = -g / (np.sqrt(0.1 + g * g) / 0.3)  # FTRL, tf's baseline rate 0.3
    np.testing.assert_allclose(est.get_variable_value("baseline/bias"), [expected], rtol=1e-5)
    preds = list(est.predict(lambda: [{"w": w}]))
    np.testing.assert_allclose([p["predictions"][0] for p in preds], [expected] * 3, rtol=1e-5)


def test_baseline_classifier_fixed_prior(tmp_path):
    bias = np.array([0.5, 1.5, -1.0])
    est = BaselineClassifier(model_dir=str(tmp_path), n_classes=3, label_vocabulary=["a", "b", "c"],
                             warm_start_from={"baseline/bias": bias})
    labels = np.array(["b", "a", "b", "c"])
    features = {"f": np.zeros(4, np.float32)}
    p = np.exp(bias) / np.exp(bias).sum()
    result = est.evaluate(lambda: [(features, labels)])
    ids = np.array([1, 0, 1, 2])
    assert result["average_loss"] == pytest.approx(np.mean(-np.log(p[ids])), rel=1e-5)
    assert result["accuracy"] == pytest.approx(0.5)
    pred = next(iter(est.predict(lambda: [features])))
    np.testing.assert_allclose(pred["probabilities"], p, rtol=1e-6)
    assert pred["classes"][0] == b"b"
