"""The public host-side contract: ``Estimator(preprocessing=...)`` and the deprecated private hooks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _toy import input_fn, model_fn, regression_data

from estimator import Estimator, RunConfig, canned
from estimator import feature_column as fc
from estimator.canned.head import MultiClassHead
from estimator.preprocessing import FeatureColumnPreprocessing, NoPreprocessing, Preprocessing

CONFIG = RunConfig(random_seed=3)
SCALE, LABEL_SCALE = 10.0, 0.5


class ScaledPreprocessing(NoPreprocessing):
    """Divides x by SCALE and labels by 1 / LABEL_SCALE on the host; adds ``double`` to predictions."""

    def features(self, batch):
        return {"x": batch["x"] / SCALE}

    def labels(self, batch):
        return batch * LABEL_SCALE

    def predictions(self, batch):
        return {**batch, "double": 2.0 * batch["predictions"]}

    def to_json(self):
        return {"scale": SCALE}


def _scaled_input_fn():
    """The toy input as the model sees it after ScaledPreprocessing, computed without it."""
    x, y = regression_data(64)
    return lambda: [({"x": x[i:i + 8] / SCALE}, y[i:i + 8] * LABEL_SCALE) for i in range(0, 64, 8)]


def test_preprocessing_runs_on_features_labels_and_predictions(tmp_path):
    given = Estimator(model_fn, str(tmp_path / "a"), CONFIG, preprocessing=ScaledPreprocessing())
    oracle = Estimator(model_fn, str(tmp_path / "b"), CONFIG)
    given.train(input_fn(epochs=2))
    oracle.train(lambda: _scaled_input_fn()() * 2)
    for name in given.get_variable_names():
        np.testing.assert_array_equal(given.get_variable_value(name), oracle.get_variable_value(name))

    x, _ = regression_data(64)
    got = list(given.predict(lambda: [{"x": x}], predict_keys=["predictions", "double"]))
    want = [p["predictions"] for p in oracle.predict(lambda: [{"x": x / SCALE}])]
    assert sorted(got[0]) == ["double", "predictions"]
    np.testing.assert_allclose([p["predictions"] for p in got], want, rtol=1e-6)
    np.testing.assert_allclose([p["double"] for p in got], 2.0 * np.asarray(want), rtol=1e-6)


def test_to_json_is_what_the_export_stores(tmp_path):
    est = Estimator(model_fn, str(tmp_path), CONFIG, preprocessing=ScaledPreprocessing())
    est.train(input_fn(), steps=1)
    path = est.export_saved_model(str(tmp_path / "export"), {"x": ("float32", [3])})
    with open(os.path.join(path, "preprocessing.json"), encoding="utf-8") as f:
        assert json.load(f) == {"scale": SCALE}


def test_default_is_the_identity_and_a_partial_object_is_refused(tmp_path):
    est = Estimator(model_fn, str(tmp_path), CONFIG)
    assert isinstance(est.preprocessing, NoPreprocessing) and isinstance(est.preprocessing, Preprocessing)
    batch = {"x": np.ones((2, 3), np.float32)}
    assert est.preprocessing.features(batch) is batch and est.preprocessing.to_json() == {}

    class FeaturesOnly:
        def features(self, batch):
            return batch

    with pytest.raises(TypeError, match=r"lacks \['labels', 'predictions', 'to_json'\]"):
        Estimator(model_fn, str(tmp_path), CONFIG, preprocessing=FeaturesOnly())


def test_feature_column_preprocessing_with_a_head():
    color = fc.categorical_column_with_vocabulary_list("color", ["red", "green"])
    columns = [fc.numeric_column("size"), fc.indicator_column(color)]
    head = MultiClassHead(3, label_vocabulary=["a", "b", "c"])
    prep = FeatureColumnPreprocessing(columns, head)
    raw = {"size": np.array([1.0, 2.0], np.float32), "color": np.array(["green", "blue"])}
    np.testing.assert_array_equal(prep.features(raw)["color__ids"], fc.HostTransform(columns)(raw)["color__ids"])
    np.testing.assert_array_equal(np.ravel(prep.labels(np.array(["c", "a"]))), [2, 0])
    out = prep.predictions({"class_ids": np.array([[1], [2]])})
    assert [list(c) for c in out["classes"]] == [[b"b"], [b"c"]]
    assert prep.to_json() == {**fc.preprocessing_config(columns), "label_vocabulary": ["a", "b", "c"],
                              "class_names": ["a", "b", "c"]}
    with pytest.raises(fc.FeatureColumnError, match="must be feature columns"):
        FeatureColumnPreprocessing(["size"])


CANNED = [canned.LinearRegressor, canned.LinearClassifier, canned.DNNRegressor, canned.DNNClassifier,
          canned.DNNLinearCombinedRegressor, canned.DNNLinearCombinedClassifier, canned.BaselineRegressor,
          canned.BaselineClassifier, canned.DNNEstimator, canned.LinearEstimator, canned.BaselineEstimator,
          canned.DNNLinearCombinedEstimator]


@pytest.mark.parametrize("cls", CANNED, ids=lambda c: c.__name__)
def test_canned_estimators_use_only_the_public_contract(cls):
    assert cls.predict is Estimator.predict
    assert cls.model_fn is Estimator.model_fn  # the model_fn is passed to Estimator.__init__
    for hook in ("_host_preprocess", "_host_preprocess_labels", "_export_preprocessing", "_predict_apply",
                 "_restore_params"):
        assert hook not in vars(cls) and getattr(cls, hook) is getattr(Estimator, hook), hook


def test_canned_classifier_preprocessing_maps_label_strings_and_yields_classes(tmp_path):
    column = fc.numeric_column("x", shape=3)
    est = canned.LinearClassifier([column], str(tmp_path), n_classes=3, label_vocabulary=["lo", "mid", "hi"],
                                  config=CONFIG)
    assert isinstance(est.preprocessing, FeatureColumnPreprocessing)
    x, y = regression_data(64)
    labels = np.array(["lo", "mid", "hi"])[np.digitize(y[:, 0], [-1.0, 1.0])]
    est.train(lambda: [({"x": x}, labels)] * 5)
    got = list(est.predict(lambda: [{"x": x}], predict_keys=["classes", "class_ids"]))
    assert sorted(got[0]) == ["class_ids", "classes"]
    names = [b"lo", b"mid", b"hi"]
    assert [p["classes"][0] for p in got] == [names[int(p["class_ids"][0])] for p in got]


class LegacyScaled(Estimator):
    """A subclass written against the old private hooks."""

    def _host_preprocess(self, features):
        return {"x": features["x"] / SCALE}

    def _host_preprocess_labels(self, labels):
        return labels * LABEL_SCALE

    def _export_preprocessing(self):
        return {"scale": SCALE}


def test_old_private_hooks_still_work_with_a_deprecation_warning(tmp_path):
    with pytest.warns(DeprecationWarning, match=r"LegacyScaled\._host_preprocess overrides .* features\(batch\)"):
        legacy = LegacyScaled(model_fn, str(tmp_path / "a"), CONFIG)
    oracle = Estimator(model_fn, str(tmp_path / "b"), CONFIG)
    legacy.train(input_fn())
    oracle.train(_scaled_input_fn())
    for name in legacy.get_variable_names():
        np.testing.assert_array_equal(legacy.get_variable_value(name), oracle.get_variable_value(name))
    assert legacy.preprocessing.to_json() == {"scale": SCALE} == legacy.servable().preprocessing
    assert legacy.preprocessing.predictions({"p": 1}) == {"p": 1}
