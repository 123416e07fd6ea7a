"""``Estimator.servable()``: the public value an export holds, and what ``export_saved_model`` accepts."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest
from _toy import VARIABLES, input_fn, model_fn, numpy_forward, regression_data, variables_of

from estimator import Estimator, EstimatorError, RunConfig, nn
from estimator.export import ExportError, Servable, export_saved_model, load

SPEC = {"x": ("float32", [3])}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    est = Estimator(model_fn, str(tmp_path_factory.mktemp("model")), RunConfig(save_checkpoints_steps=3))
    est.train(input_fn(), steps=7)  # checkpoints at 3, 6 and 7
    return est


def test_servable_holds_the_checkpoints_arrays_and_its_predict_function(trained):
    servable = trained.servable()
    assert isinstance(servable, Servable) and servable.global_step == 7
    assert servable.preprocessing == {} and servable.model_state == {}
    flat = nn.flatten_names(servable.params)
    assert sorted(flat) == VARIABLES
    for name in VARIABLES:
        np.testing.assert_array_equal(flat[name], trained.get_variable_value(name))
    x, _ = regression_data(16)
    out = servable.predict_fn(servable.params, servable.model_state, {"x": jnp.asarray(x)})
    np.testing.assert_allclose(out["predictions"], numpy_forward(variables_of(trained), x), rtol=1e-5, atol=1e-6)


def test_servable_of_an_older_checkpoint_is_what_export_writes(trained, tmp_path):
    path = os.path.join(os.path.dirname(trained.latest_checkpoint()), "3")
    servable = trained.servable(path)
    assert servable.global_step == 3
    assert not np.array_equal(nn.flatten_names(servable.params)["dnn/logits/kernel"],
                              trained.get_variable_value("dnn/logits/kernel"))
    x, _ = regression_data(16)
    from_estimator = load(trained.export_saved_model(str(tmp_path / "a"), SPEC, checkpoint_path=path))
    from_servable = load(export_saved_model(servable, str(tmp_path / "b"), SPEC))
    assert from_estimator.signature["global_step"] == from_servable.signature["global_step"] == 3
    want = servable.predict_fn(servable.params, servable.model_state, {"x": jnp.asarray(x)})["predictions"]
    for predictor in (from_estimator, from_servable):
        np.testing.assert_allclose(predictor({"x": x})["predictions"], want, rtol=1e-5, atol=1e-6)


def test_servable_without_a_checkpoint_and_a_servable_with_a_checkpoint_path(tmp_path):
    with pytest.raises(EstimatorError, match="No checkpoint in .* train first"):
        Estimator(model_fn, str(tmp_path)).servable()
    servable = Servable(lambda p, s, f: {"y": f["x"] * p["w"]}, {"w": np.float32(2.0)})
    with pytest.raises(ExportError, match="checkpoint_path=.* was given for a Servable"):
        export_saved_model(servable, str(tmp_path / "e"), SPEC, checkpoint_path="/some/ckpt")
    with pytest.raises(ExportError, match="Cannot export int"):
        export_saved_model(3, str(tmp_path / "e"), SPEC)


class _OldExportable:
    """An object exported through the private hooks of the release before."""

    def _predict_apply(self, params, model_state, features):
        return {"y": features["x"] * params["w"] + model_state["b"]}

    def _restore_params(self, checkpoint_path=None):
        return {"w": np.float32(2.0)}, {"b": np.float32(1.0)}, 5

    def _export_preprocessing(self):
        return {}


def test_the_old_private_export_hooks_still_export_with_a_deprecation_warning(tmp_path):
    with pytest.warns(DeprecationWarning, match="servable"):
        path = export_saved_model(_OldExportable(), str(tmp_path), {"x": "float32"})
    predictor = load(path)
    assert predictor.signature["global_step"] == 5
    np.testing.assert_allclose(predictor({"x": np.array([1.0, 3.0], np.float32)})["y"], [3.0, 7.0])


class _OldPredictApply(Estimator):
    def _predict_apply(self, params, model_state, features):
        return {"twice": 2.0 * super()._predict_apply(params, model_state, features)["predictions"]}


def test_an_overridden_predict_apply_is_still_used_by_predict_and_servable(trained):
    with pytest.warns(DeprecationWarning, match="_predict_apply overrides"):
        est = _OldPredictApply(model_fn, trained.model_dir)
    x, _ = regression_data(8)
    got = np.array([p["twice"] for p in est.predict(lambda: [{"x": x}])])
    np.testing.assert_allclose(got, 2.0 * numpy_forward(variables_of(trained), x), rtol=1e-5, atol=1e-6)
    servable = est.servable()
    np.testing.assert_allclose(servable.predict_fn(servable.params, servable.model_state, {"x": x})["twice"], got,
                               rtol=1e-6)
