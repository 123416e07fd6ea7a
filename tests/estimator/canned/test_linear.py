"""Linear estimators against predictions, losses and FTRL steps computed by hand in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from estimator import feature_column as fc
from estimator.canned import LinearClassifier, LinearRegressor

X = np.array([1.0, 2.0, 3.0], np.float32)
Y = np.array([3.0, 5.5, 9.0], np.float32)
COLOR = np.array(["r", "g", "zz"])  # "zz" is out of vocabulary: no weight


def _columns():
    x = fc.numeric_column("x")
    return [x, fc.bucketized_column(x, [1.5, 2.5]), fc.categorical_column_with_vocabulary_list("color", ["r", "g", "b"])]


WEIGHTS = {
    "linear/linear_model/x/weights": np.array([[2.0]]),
    "linear/linear_model/x_bucketized/weights": np.array([[0.1], [0.2], [0.3]]),
    "linear/linear_model/color/weights": np.array([[1.0], [2.0], [3.0]]),
    "linear/linear_model/bias_weights": np.array([0.5]),
}


def _input(features, labels=None):
    return lambda: [(features, labels) if labels is not None else features]


def test_linear_regressor_fixed_weights_predictions_and_metrics(tmp_path):
    est = LinearRegressor(_columns(), model_dir=str(tmp_path), warm_start_from=WEIGHTS)
    features = {"x": X, "color": COLOR, "key": np.array(["a", "b", "c"])}
    # by hand: 2x + bucket weight (x=1 -> b0, 2 -> b1, 3 -> b2) + color weight + bias
    expected = 2 * X + np.array([0.1, 0.2, 0.3]) + np.array([1.0, 2.0, 0.0]) + 0.5
    preds = [p["predictions"][0] for p in est.predict(_input(features))]
    np.testing.assert_allclose(preds, expected, rtol=1e-6)
    result = est.evaluate(_input(features, Y))
    assert result["average_loss"] == pytest.approx(np.mean((Y - expected) ** 2), rel=1e-6)
    assert result["loss"] == pytest.approx(np.mean((Y - expected) ** 2), rel=1e-6)
    assert result["label/mean"] == pytest.approx(Y.mean())
    assert result["prediction/mean"] == pytest.approx(expected.mean(), rel=1e-6)


def test_linear_regressor_default_ftrl_step_and_tf_variable_names(tmp_path):
    est = LinearRegressor([fc.numeric_column("x")], model_dir=str(tmp_path))
    est.train(_input({"x": X}, Y), steps=1)
    assert est.get_variable_names() == [
        "global_step", "linear/linear_model/bias_weights", "linear/linear_model/x/weights"]
    # one FTRL step (lr 0.2, initial accumulator 0.1) from zero weights: w = -g / (sqrt(0.1 + g^2) / 0.2)
    for name, g in (("x/weights", np.mean(-2 * Y * X)), ("bias_weights", np.mean(-2 * Y))):
        expected = -g / (np.sqrt(0.1 + g * g) / 0.2)
        got = est.get_variable_value(f"linear/linear_model/{name}")
        np.testing.assert_allclose(got.ravel(), [expected], rtol=1e-5)


def test_linear_classifier_weighted_mean_combiner_and_vocabulary(tmp_path):
    tags = fc.categorical_column_with_hash_bucket("tags", 4)
    feats = {"tags": np.array([["a", "b"], ["a", ""], ["", ""]]), "w": np.array([1.0, 2.0, 1.0])}
    ids = fc.transform_features(feats, [tags])["tags__ids"]
    table = np.array([[0.5], [-1.0], [2.0], [1.5]])
    est = LinearClassifier([tags], model_dir=str(tmp_path), weight_column="w", label_vocabulary=["no", "yes"],
                           sparse_combiner="mean",
                           warm_start_from={"linear/linear_model/tags/weights": table,
                                            "linear/linear_model/bias_weights": np.array([-0.25])})
    logits = np.array([(table[ids[0, 0], 0] + table[ids[0, 1], 0]) / 2, table[ids[1, 0], 0], 0.0]) - 0.25
    labels = np.array(["yes", "no", "no"])
    y = (labels == "yes").astype(float)
    p = 1 / (1 + np.exp(-logits))
    xent = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    w = feats["w"]
    result = est.evaluate(_input(feats, labels))
    assert result["loss"] == pytest.approx(np.sum(w * xent) / 3, rel=1e-5)
    assert result["average_loss"] == pytest.approx(np.sum(w * xent) / w.sum(), rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.sum(w * ((p > 0.5) == y)) / w.sum())
    preds = list(est.predict(_input(feats)))
    np.testing.assert_allclose([q["logistic"][0] for q in preds], p, rtol=1e-5)
    assert [q["classes"][0] for q in preds] == [b"yes" if v > 0.5 else b"no" for v in p]


def test_linear_multiclass_weights_shape_and_feature_engineering(tmp_path):
    def engineer(features):
        return {**features, "x2": features["x"] * 2.0}

    est = LinearClassifier([fc.numeric_column("x2")], model_dir=str(tmp_path), n_classes=3,
                           feature_engineering_fn=engineer,
                           warm_start_from={"linear/linear_model/x2/weights": np.array([[1.0, 0.0, -1.0]])})
    preds = list(est.predict(_input({"x": np.array([1.0, -1.0])})))
    np.testing.assert_allclose(preds[0]["logits"], [2.0, 0.0, -2.0])
    assert [int(q["class_ids"][0]) for q in preds] == [0, 2]
    assert [q["classes"][0] for q in preds] == [b"0", b"2"]


def test_two_default_ftrl_steps_match_tf(tmp_path):
    # TF: linear_ftrl_two_steps (scripts/tf_goldens/probe_tf_parity.py, tensorflow-estimator 2.15.0):
    # LinearRegressor's default FTRL at rate 0.2, two steps on one batch from zeros.
    tf_weights = {"linear/linear_model/bias_weights": [0.31248870491981506],
                  "linear/linear_model/c/weights": [0.2516748011112213, 0.3128111958503723],
                  "linear/linear_model/x/weights": [0.31519830226898193, -0.16289719939231873]}
    cols = [fc.numeric_column("x", shape=2), fc.categorical_column_with_vocabulary_list("c", ["a", "b"])]
    feats = {"x": np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], np.float32), "c": np.array([["a"], ["b"], ["zzz"]])}
    est = LinearRegressor(cols, model_dir=str(tmp_path))
    est.train(lambda: [(feats, np.array([[1.0], [2.0], [3.0]], np.float32))] * 2)
    for name, value in tf_weights.items():
        np.testing.assert_allclose(est.get_variable_value(name).ravel(), value, rtol=2e-6, err_msg=name)
