"""Wide-and-deep: logits are the sum of both parts; each part has its own optimizer and rate."""

from __future__ import annotations

import numpy as np
import pytest

from estimator import feature_column as fc
from estimator.canned import DNNLinearCombinedClassifier, DNNLinearCombinedRegressor

X = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0]], np.float32)
Z = np.array([2.0, -1.0, 0.5], np.float32)
Y = np.array([1.0, 0.0, 2.0], np.float32)
DNN = {"dnn/hiddenlayer_0/kernel": np.array([[1.0, -1.0], [0.5, 2.0]]), "dnn/hiddenlayer_0/bias": np.array([0.1, -0.2]),
       "dnn/logits/kernel": np.array([[1.0], [-1.5]]), "dnn/logits/bias": np.array([0.3])}


def _dnn(x):
    return (np.maximum(x @ DNN["dnn/hiddenlayer_0/kernel"] + DNN["dnn/hiddenlayer_0/bias"], 0)
            @ DNN["dnn/logits/kernel"] + DNN["dnn/logits/bias"])[:, 0]


def _input(labels=None):
    features = {"x": X, "z": Z}
    return lambda: [(features, labels) if labels is not None else features]


def _make(tmp_path, cls=DNNLinearCombinedRegressor, **kw):
    return cls(model_dir=str(tmp_path), linear_feature_columns=[fc.numeric_column("z")],
               dnn_feature_columns=[fc.numeric_column("x", shape=2)], dnn_hidden_units=[2], **kw)


def test_logits_are_dnn_plus_linear(tmp_path):
    weights = {**DNN, "linear/linear_model/z/weights": np.array([[0.5]]),
               "linear/linear_model/bias_weights": np.array([-1.0])}
    est = _make(tmp_path, DNNLinearCombinedClassifier, warm_start_from=weights)
    logits = _dnn(X) + 0.5 * Z - 1.0
    preds = list(est.predict(_input()))
    np.testing.assert_allclose([p["logits"][0] for p in preds], logits, rtol=1e-6)
    y = np.array([1, 0, 1])
    p = 1 / (1 + np.exp(-logits))
    result = est.evaluate(_input(y))
    assert result["average_loss"] == pytest.approx(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))), rel=1e-5)


def test_each_part_is_trained_by_its_own_optimizer(tmp_path):
    est = _make(tmp_path, warm_start_from=DNN, linear_optimizer="SGD", linear_learning_rate=1.0,
                dnn_optimizer="SGD", dnn_learning_rate=0.0)
    est.train(_input(Y), steps=1)
    residual = 2 * (_dnn(X) - Y)  # linear part starts at zero
    np.testing.assert_allclose(est.get_variable_value("linear/linear_model/z/weights").ravel(),
                               [-np.mean(residual * Z)], rtol=1e-5)
    np.testing.assert_allclose(est.get_variable_value("linear/linear_model/bias_weights"),
                               [-np.mean(residual)], rtol=1e-5)
    for name, value in DNN.items():  # learning rate 0: untouched
        np.testing.assert_allclose(est.get_variable_value(name), value, rtol=1e-6)


def test_default_optimizers_ftrl_and_adagrad_with_tf_rates(tmp_path):
    est = _make(tmp_path, warm_start_from=DNN)
    est.train(_input(Y), steps=1)
    g = np.mean(2 * (_dnn(X) - Y))  # gradient of both biases
    # linear: FTRL, lr = min(0.005, 1/sqrt(1 column)); from 0: w = -g / (sqrt(0.1 + g^2) / lr)
    np.testing.assert_allclose(est.get_variable_value("linear/linear_model/bias_weights"),
                               [-g / (np.sqrt(0.1 + g * g) / 0.005)], rtol=1e-5)
    # dnn: Adagrad, lr 0.001, initial accumulator 0.1
    np.testing.assert_allclose(est.get_variable_value("dnn/logits/bias"),
                               DNN["dnn/logits/bias"] - 0.001 * g / np.sqrt(0.1 + g * g), rtol=1e-5)


def test_needs_some_columns_and_hidden_units():
    with pytest.raises(ValueError, match="linear_feature_columns or dnn_feature_columns"):
        DNNLinearCombinedRegressor()
    with pytest.raises(ValueError, match="dnn_hidden_units"):
        DNNLinearCombinedRegressor(dnn_feature_columns=[fc.numeric_column("x")])
