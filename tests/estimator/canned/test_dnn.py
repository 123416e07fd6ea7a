"""DNN estimators with fixed weights against numpy forward passes; tf names; Adagrad default."""

from __future__ import annotations

import numpy as np
import pytest

from estimator import feature_column as fc
from estimator.canned import DNNClassifier, DNNRegressor

X = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0]], np.float32)
K0 = np.array([[1.0, -1.0], [0.5, 2.0]])
B0 = np.array([0.1, -0.2])
K1 = np.array([[1.0], [-1.5]])
B1 = np.array([0.3])
FIXED = {"dnn/hiddenlayer_0/kernel": K0, "dnn/hiddenlayer_0/bias": B0,
         "dnn/logits/kernel": K1, "dnn/logits/bias": B1}


def _input(features, labels=None):
    return lambda: [(features, labels) if labels is not None else features]


def _forward(x):
    return (np.maximum(x @ K0 + B0, 0) @ K1 + B1)[:, 0]


def test_dnn_classifier_fixed_weights_logits_probabilities_and_loss(tmp_path):
    est = DNNClassifier([2], [fc.numeric_column("x", shape=2)], model_dir=str(tmp_path), warm_start_from=FIXED)
    logits = _forward(X)
    p = 1 / (1 + np.exp(-logits))
    preds = list(est.predict(_input({"x": X})))
    np.testing.assert_allclose([q["logits"][0] for q in preds], logits, rtol=1e-6)
    np.testing.assert_allclose([q["probabilities"] for q in preds], np.stack([1 - p, p], 1), rtol=1e-6)
    np.testing.assert_array_equal([q["class_ids"][0] for q in preds], (logits > 0).astype(int))
    y = np.array([1, 0, 0])
    xent = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    result = est.evaluate(_input({"x": X}, y))
    assert result["loss"] == pytest.approx(xent.mean(), rel=1e-5)
    assert result["average_loss"] == pytest.approx(xent.mean(), rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    assert result["prediction/mean"] == pytest.approx(p.mean(), rel=1e-5)


def test_dnn_regressor_embedding_input_layer_and_adagrad_step(tmp_path):
    cat = fc.categorical_column_with_identity("id", 3)
    cols = [fc.embedding_column(cat, 2, combiner="mean"), fc.numeric_column("x", shape=2)]
    table = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    ids = np.array([[0, 2], [1, -1], [-1, -1]])
    # input layer: columns sorted by name -> id_embedding (2 wide) then x (2 wide)
    emb = np.array([(table[0] + table[2]) / 2, table[1], [0.0, 0.0]])
    k0 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [0.5, 0.5]])
    weights = {"dnn/input_from_feature_columns/input_layer/id_embedding/embedding_weights": table,
               "dnn/hiddenlayer_0/kernel": k0, "dnn/hiddenlayer_0/bias": B0,
               "dnn/logits/kernel": K1, "dnn/logits/bias": B1}
    est = DNNRegressor([2], cols, model_dir=str(tmp_path), warm_start_from=weights)
    features = {"id": ids, "x": X}
    out = (np.maximum(np.concatenate([emb, X], 1) @ k0 + B0, 0) @ K1 + B1)[:, 0]
    preds = [q["predictions"][0] for q in est.predict(_input(features))]
    np.testing.assert_allclose(preds, out, rtol=1e-6)
    y = np.array([1.0, 2.0, 3.0], np.float32)
    est.train(_input(features, y), steps=1)
    assert "dnn/input_from_feature_columns/input_layer/id_embedding/embedding_weights" in est.get_variable_names()
    # default optimizer: Adagrad at the keras class's rate 0.001 (TF 2.15: dnn_default_Adagrad_effective_lr
    # = 0.001, scripts/tf_goldens/probe_tf_parity.py), initial accumulator 0.1;
    # d loss / d logits bias = mean(2 (f - y))
    g = np.mean(2 * (out - y))
    np.testing.assert_allclose(est.get_variable_value("dnn/logits/bias"),
                               B1 - 0.001 * g / np.sqrt(0.1 + g * g), rtol=1e-5)
    sgd = DNNRegressor([2], cols, model_dir=str(tmp_path / "sgd"), warm_start_from=weights, optimizer="SGD")
    sgd.train(_input(features, y), steps=1)
    # TF 2.15: dnn_default_SGD_effective_lr = 0.01
    np.testing.assert_allclose(sgd.get_variable_value("dnn/logits/bias"), B1 - 0.01 * g, rtol=1e-5)


def test_dnn_dropout_and_batch_norm_train_with_tf_names(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype(np.float32)
    y = (x[:, 0] - x[:, 1]).astype(np.float32)
    est = DNNRegressor([8, 4], [fc.numeric_column("x", shape=2)], model_dir=str(tmp_path), dropout=0.2,
                       batch_norm=True, optimizer="Adam", learning_rate=0.05)
    est.train(lambda: [({"x": x}, y)] * 5)
    names = est.get_variable_names()
    assert {"dnn/hiddenlayer_1/batchnorm_1/gamma", "dnn/hiddenlayer_1/batchnorm_1/moving_mean",
            "dnn/hiddenlayer_0/kernel", "dnn/logits/kernel", "global_step"} <= set(names)
    assert est.get_variable_value("global_step") == 5
    assert est.evaluate(_input({"x": x}, y))["average_loss"] < np.mean(y ** 2)


def test_dnn_rejects_categorical_columns_without_a_wrapper(tmp_path):
    est = DNNRegressor([2], [fc.categorical_column_with_identity("id", 3)], model_dir=str(tmp_path))
    with pytest.raises(Exception, match="embedding_column or indicator_column"):
        list(est.predict(_input({"id": np.array([1])})))
