"""Classifier exports over real HTTP: the keys and values Estimator.predict yields, classes as strings."""

from __future__ import annotations

import numpy as np
import pytest
from _model_server import Server

from estimator import RunConfig
from estimator import feature_column as fc
from estimator.canned import DNNClassifier, LinearClassifier, LinearRegressor

COLORS = ["red", "green", "blue"]
SERVING = {"size": "float32", "color": "string"}


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return {"size": rng.normal(size=n).astype(np.float32),
            "color": np.array(rng.choice(COLORS + ["pink"], n), dtype=object)}


def _columns(embed: bool):
    color = fc.categorical_column_with_vocabulary_list("color", COLORS)
    return [fc.numeric_column("size"), fc.embedding_column(color, 2) if embed else color]


CASES = {
    "dnn_binary_vocab": lambda d: DNNClassifier([4], _columns(True), model_dir=d, n_classes=2,
                                                label_vocabulary=["no", "yes"], config=RunConfig(random_seed=1)),
    "dnn_multiclass_vocab": lambda d: DNNClassifier([4], _columns(True), model_dir=d, n_classes=3,
                                                    label_vocabulary=["cat", "dog", "fish"],
                                                    config=RunConfig(random_seed=2)),
    "linear_binary": lambda d: LinearClassifier(_columns(False), model_dir=d, n_classes=2,
                                                config=RunConfig(random_seed=3)),
    "linear_multiclass_vocab": lambda d: LinearClassifier(_columns(False), model_dir=d, n_classes=3,
                                                          label_vocabulary=["a", "b", "c"],
                                                          config=RunConfig(random_seed=4)),
}


def _labels(est, n, seed):
    head = est.head
    names = list(head.label_vocabulary) if head.label_vocabulary else None
    ids = np.random.default_rng(seed).integers(0, head.n_classes, n)
    return np.array([names[i] for i in ids], dtype=object) if names else ids.astype(np.int32)


SLOW = {"dnn_binary_vocab", "linear_multiclass_vocab"}  # the fast run covers one binary, one multi-class


@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in sorted(CASES)])
def served_classifier(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    est = CASES[request.param](str(tmp / "model"))
    feats = _data()
    labels = _labels(est, len(feats["size"]), 0)
    est.train(lambda: iter([(feats, labels)] * 3), max_steps=3)
    est.export_saved_model(str(tmp / "export"), SERVING)
    server = Server(str(tmp / "export"), "clf")
    yield server, est
    server.stop()


def test_served_predictions_are_estimator_predict_with_string_classes(served_classifier):
    server, est = served_classifier
    feats = _data(7, seed=5)
    want = list(est.predict(lambda: iter([feats])))
    rows = [{"size": float(s), "color": c} for s, c in zip(feats["size"], feats["color"], strict=True)]
    r = server.predict({"instances": rows})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)  # exactly the keys Estimator.predict yields
        assert {"classes", "all_classes", "class_ids", "probabilities", "logits"} <= set(g)
        for key, value in w.items():
            if np.asarray(value).dtype == object:  # classes: bytes from predict, UTF-8 strings over JSON
                assert g[key] == np.vectorize(bytes.decode, otypes=[object])(value).tolist()
            else:
                np.testing.assert_allclose(g[key], value, rtol=1e-5, atol=1e-6)
    columnar = server.predict({"inputs": {"size": feats["size"].tolist(), "color": feats["color"].tolist()}})
    outputs = columnar.json()["outputs"]
    assert outputs["classes"] == [p["classes"] for p in got]
    assert outputs["all_classes"][0] == list(est.head.class_names)
    meta = server.status("/metadata").json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert meta["outputs"]["classes"]["dtype"] == "DT_STRING"


def test_classify_answers_class_score_pairs_and_regress_is_refused(served_classifier):
    server, est = served_classifier
    feats = _data(3, seed=6)
    want = list(est.predict(lambda: iter([feats])))
    r = server.post(":classify", {"examples": [{"color": c} for c in feats["color"]],
                                  "context": {"size": 0.0}})
    assert r.status_code == 200, r.text
    context_feats = {"size": np.zeros(3, np.float32), "color": feats["color"]}
    want = list(est.predict(lambda: iter([context_feats])))
    results = r.json()["results"]
    for res, w in zip(results, want, strict=True):
        assert [c for c, _ in res] == [b.decode() for b in w["all_classes"]]
        np.testing.assert_allclose([s for _, s in res], w["probabilities"], rtol=1e-5, atol=1e-6)
    refused = server.post(":regress", {"examples": [{"size": 1.0, "color": "red"}]})
    assert refused.status_code == 400 and "not a regressor" in refused.json()["error"]


def test_regress_on_a_regressor_and_classify_refused(tmp_path):
    est = LinearRegressor(_columns(False), model_dir=str(tmp_path / "m"), config=RunConfig(random_seed=0))
    feats = _data()
    est.train(lambda: iter([(feats, feats["size"] * 2)] * 2), max_steps=2)
    est.export_saved_model(str(tmp_path / "e"), SERVING)
    server = Server(str(tmp_path / "e"), "reg")
    try:
        r = server.post(":regress", {"examples": [{"size": 1.5, "color": "blue"}, {"size": -1.0, "color": "x"}]})
        assert r.status_code == 200, r.text
        want = list(est.predict(lambda: iter([{"size": np.array([1.5, -1.0], np.float32),
                                               "color": np.array(["blue", "x"], dtype=object)}])))
        np.testing.assert_allclose(r.json()["results"], [float(w["predictions"][0]) for w in want], rtol=1e-5)
        refused = server.post(":classify", {"examples": [{"size": 1.0, "color": "red"}]})
        assert refused.status_code == 400 and "not a classifier" in refused.json()["error"]
    finally:
        server.stop()
