"""Feature columns and heads against TensorFlow 2.15 on randomized cases (no TensorFlow needed).

The goldens under goldens/ hold the inputs and TensorFlow's outputs; they are written by
``scripts/make_tf_goldens.py`` (tensorflow-cpu 2.15.1 + tensorflow-estimator 2.15.0, fixed seed,
run in a separate virtualenv; see its docstring). Deliberate differences (README, "Where the
numbers differ from TensorFlow 2.15") are left out of the cases there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from estimator import ModeKeys, canned, metrics, nn
from estimator import feature_column as fc
from estimator.canned import head as head_lib

GOLDENS = Path(__file__).parent / "goldens"


def _cases(name):
    data = json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8"))
    assert data["tensorflow"] == "2.15.1"
    return data["cases"]


def _column(spec):
    key, kind = spec["key"], spec["type"]
    if kind.startswith("hash"):
        return fc.categorical_column_with_hash_bucket(key, spec["size"])
    if kind.startswith("vocab"):
        return fc.categorical_column_with_vocabulary_list(
            key, spec["vocab"], default_value=spec["default"], num_oov_buckets=spec["oov"])
    if kind == "identity":
        return fc.categorical_column_with_identity(key, spec["n"], spec["default"])
    return fc.bucketized_column(fc.numeric_column(key, shape=spec["width"]), spec["bounds"])


def _raw(spec, values):
    if spec["type"] in ("hash_str", "vocab_str", "raw_str"):
        return np.array(values, dtype=str).reshape(len(values), -1)
    if spec["type"] == "bucketized":
        return np.array(values, np.float32)
    return np.array(values, np.int64)


def _rows(ids):
    """Each example's valid ids, sorted (TF's sparse rows have no order to compare)."""
    return [sorted(int(i) for i in row if i != -1) for row in np.asarray(ids).tolist()]


def test_categorical_columns_give_tf_ids():
    cases = _cases("columns")
    assert len(cases) >= 300 and {c["column"]["type"] for c in cases} == {
        "hash_str", "hash_int", "vocab_str", "vocab_int", "identity", "bucketized"}
    for case in cases:
        spec = dict(case["column"], width=len(case["input"][0]))
        col = _column(spec)
        features = {"f": _raw(spec, case["input"])}
        if isinstance(col, fc.BucketizedColumn):  # bucketized on the device; its host ids agree
            ids = np.asarray(col.device_ids(features)[0])
            np.testing.assert_array_equal(ids, col.host_ids(features))
        else:
            ids = fc.transform_features(features, [col])[col.name + "__ids"]
        # TF's rows also hold the -1 of out-of-vocabulary values (no id here; only crosses see it)
        assert _rows(ids) == [[i for i in row if i != -1] for row in case["ids"]], case


@pytest.mark.parametrize("tables", [False, True])
def test_crossed_columns_give_tf_ids(tables):
    cases = _cases("crosses")
    assert len(cases) >= 200
    for case in cases:
        keys, features = [], {}
        for leaf in case["leaves"]:
            raw = case["input"][leaf["key"]]
            if leaf["type"].startswith("raw"):
                keys.append(leaf["key"])
            else:
                keys.append(_column(dict(leaf, width=len(raw[0]))))
            features[leaf["key"]] = _raw(leaf, raw)
        col = fc.crossed_column(keys, case["size"], case["hash_key"])
        ids = fc.HostTransform([col], cross_tables=tables)(features)[col.name + "__ids"]
        assert _rows(ids) == case["ids"], case


def _apply(fn, features, params):
    return np.asarray(nn.transform(fn).apply(params, {}, None, features)[0])


def test_weighted_columns_under_embedding_linear_and_indicator_match_tf():
    cases = _cases("weighted")
    assert len(cases) >= 150 and {c["combiner"] for c in cases} == {"sum", "mean", "sqrtn"}
    for case in cases:
        col = fc.weighted_categorical_column(fc.categorical_column_with_identity("id", case["buckets"]), "w")
        raw = {"id": np.array(case["ids"], np.int64), "w": np.array(case["weights"], np.float32)}
        features = fc.transform_features(raw, [col])
        emb = fc.embedding_column(col, 2, combiner=case["combiner"])
        table = np.array(case["table"], np.float32)
        got = _apply(lambda f, emb=emb: fc.input_layer(f, [emb]), features,
                     {"input_layer": {emb.name: {"embedding_weights": table}}})
        np.testing.assert_allclose(got, case["embedding"], rtol=1e-5, atol=1e-5, err_msg=str(case))
        weights = {"linear_model": {col.name: {"weights": np.array(case["linear_weights"], np.float32)[:, None]},
                                    "bias_weights": np.zeros(1, np.float32)}}
        combiner = case["combiner"]
        got = _apply(lambda f, col=col, combiner=combiner: fc.linear_model(f, [col], sparse_combiner=combiner),
                     features, weights)
        np.testing.assert_allclose(got, case["linear"], rtol=1e-5, atol=1e-5, err_msg=str(case))
        got = _apply(lambda f, col=col: fc.input_layer(f, [fc.indicator_column(col)]), features, {})
        np.testing.assert_allclose(got, case["indicator"], rtol=1e-6, atol=1e-6, err_msg=str(case))


def _head(case):
    kw = {"weight_column": "w" if case["weights"] is not None else None, "loss_reduction": case["reduction"]}
    if case["head"] == "binary":
        return head_lib.BinaryClassHead(thresholds=case["thresholds"], label_vocabulary=case["vocab"], **kw)
    if case["head"] == "multiclass":
        return head_lib.MultiClassHead(case["n"], label_vocabulary=case["vocab"], **kw)
    if case["head"] == "multilabel":
        return head_lib.MultiLabelHead(case["n"], thresholds=case["thresholds"], **kw)
    return head_lib.RegressionHead(label_dimension=case["n"], **kw)


def _decoded(value):
    value = np.asarray(value)
    return np.char.decode(value.astype(bytes), "utf-8") if value.dtype.kind in "SO" else value


def test_heads_losses_metrics_and_predictions_match_tf():
    cases = _cases("heads")
    assert len(cases) >= 200 and {c["head"] for c in cases} == {"binary", "multiclass", "multilabel", "regression"}
    for case in cases:
        head = _head(case)
        logits = np.array(case["logits"], np.float32)
        features = {} if case["weights"] is None else {"w": np.array(case["weights"], np.float32)}
        labels = head.host_labels(np.array(case["labels"]))
        spec = head.create_estimator_spec(features, ModeKeys.EVAL, logits, labels)
        assert float(spec.loss) == pytest.approx(case["loss"], rel=1e-5, abs=1e-6), case
        got = metrics.compute_all(spec.eval_metrics)
        assert set(got) == set(case["metrics"]), case
        for name, value in case["metrics"].items():
            assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-5), (name, case)
        predicted = head.create_estimator_spec(features, ModeKeys.PREDICT, logits).predictions
        predicted = head.host_predictions({k: np.asarray(v) for k, v in predicted.items()})
        for name, value in case["predictions"].items():
            want = np.array(value)
            if want.dtype.kind == "U":
                np.testing.assert_array_equal(_decoded(predicted[name]), want, err_msg=f"{name} {case}")
            else:
                np.testing.assert_allclose(predicted[name], want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {case}")


def _canned_column(spec):
    if spec["type"] == "numeric":
        return fc.numeric_column(spec["key"], shape=spec["shape"])
    if spec["type"] == "vocab":
        return fc.categorical_column_with_vocabulary_list(spec["key"], spec["vocab"])
    if spec["type"] == "embedding":
        return fc.embedding_column(_canned_column(spec["of"]), spec["dim"])
    return fc.indicator_column(_canned_column(spec["of"]))


def _canned(case, model_dir):
    kwargs = {k: v for k, v in case["kwargs"].items() if k != "lr"}
    kwargs.update({k: [_canned_column(c) for c in cols] for k, cols in case["columns"].items()})
    sgd = {"name": "SGD", "learning_rate": case["kwargs"]["lr"]}
    if case["estimator"].startswith("DNNLinearCombined"):
        kwargs.update(linear_optimizer=sgd, dnn_optimizer=sgd)
    else:
        kwargs["optimizer"] = sgd
    return getattr(canned, case["estimator"])(model_dir=model_dir, warm_start_from=case["init"], **kwargs)


def test_canned_estimators_one_sgd_step_evaluate_and_predict_match_tf(tmp_path):
    cases = _cases("canned")
    assert {c["estimator"] for c in cases} >= {"DNNClassifier", "DNNRegressor", "LinearClassifier",
                                               "LinearRegressor", "DNNLinearCombinedRegressor"}
    for i, case in enumerate(cases):
        f = case["features"]
        features = {"x": np.array(f["x"], np.float32), "c": np.array(f["c"]), "w": np.array(f["w"], np.float32)}
        labels = np.array(case["labels"])
        est = _canned(case, str(tmp_path / str(i)))
        est.train(lambda features=features, labels=labels: [(features, labels)], steps=1)
        for name, value in case["after_one_step"].items():
            np.testing.assert_allclose(est.get_variable_value(name), value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{case['estimator']} {name}")
        got = est.evaluate(lambda features=features, labels=labels: [(features, labels)])
        for name, value in case["evaluate"].items():
            assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), (case["estimator"], name)
        predicted = list(est.predict(lambda features=features: [features]))
        for name, value in case["predictions"].items():
            got = np.array([p[name] for p in predicted])
            want = np.array(value)
            if want.dtype.kind == "U":
                np.testing.assert_array_equal(_decoded(got), want, err_msg=f"{case['estimator']} {name}")
            else:
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{case['estimator']} {name}")
