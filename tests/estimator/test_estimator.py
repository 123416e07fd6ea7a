"""Estimator train / evaluate / predict semantics, warm start, caching, input_fn args, debugging."""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _toy import VARIABLES, input_fn, model_fn, numpy_forward, regression_data, variables_of

from estimator import (
    Estimator,
    EstimatorError,
    EstimatorSpec,
    EstimatorSpecError,
    Hook,
    InputContext,
    ModeKeys,
    ModelFnError,
    RunConfig,
    WarmStartError,
    WarmStartSettings,
    metrics,
)

FROZEN = {"optimizer": optax.sgd(0.0)}  # training that leaves the parameters where they started


def _estimator(tmp_path, name="model", **kwargs) -> Estimator:
    return Estimator(kwargs.pop("model_fn", model_fn), str(tmp_path / name), **kwargs)


def _predictions(est: Estimator, **kwargs) -> np.ndarray:
    batches = est.predict(input_fn(labels=False), yield_single_examples=False, **kwargs)
    return np.concatenate([b["predictions"] for b in batches])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Estimator:
    """An Estimator trained 20 steps (read only by the tests that use it)."""
    est = Estimator(model_fn, str(tmp_path_factory.mktemp("trained")))
    return est.train(input_fn(epochs=None), max_steps=20)


# ----------------------------------------------------------------------------- train


def test_steps_are_incremental_and_max_steps_absolute(tmp_path, caplog):
    est = _estimator(tmp_path)
    assert est.train(input_fn(epochs=None), steps=5) is est
    assert est.get_variable_value("global_step") == 5
    est.train(input_fn(epochs=None), steps=3)
    assert est.get_variable_value("global_step") == 8
    est.train(input_fn(epochs=None), max_steps=10)
    assert est.get_variable_value("global_step") == 10
    checkpoint = est.latest_checkpoint()

    calls = []
    with caplog.at_level(logging.INFO, logger="estimator"):
        est.train(lambda: calls.append(1) or input_fn()(), max_steps=10)
        est.train(lambda: calls.append(1) or input_fn()(), max_steps=4)
    assert calls == [], "max_steps already reached: input_fn must not even be called"
    assert "max_steps" in caplog.text
    assert est.latest_checkpoint() == checkpoint
    assert est.get_variable_value("global_step") == 10
    assert sorted(est.get_variable_names()) == sorted([*VARIABLES, "global_step"])


@pytest.mark.parametrize(
    "kwargs, words",
    [({"steps": 2, "max_steps": 4}, "not both"), ({"steps": 0}, "steps"), ({"max_steps": -3}, "max_steps"),
     ({"steps": 1.5}, "steps")],
)
def test_bad_steps_are_errors(tmp_path, kwargs, words):
    with pytest.raises(EstimatorError, match=words):
        _estimator(tmp_path).train(input_fn(), **kwargs)


def test_training_ends_when_the_input_is_exhausted(tmp_path):
    est = _estimator(tmp_path)
    est.train(input_fn(n=40, batch_size=8), steps=1000)  # 5 batches
    assert est.get_variable_value("global_step") == 5
    # the restored input position says that input is used up: nothing more to train on
    est.train(input_fn(n=40, batch_size=8))
    assert est.get_variable_value("global_step") == 5
    # an input without state()/restore() (a plain list of batches) starts over; no limit at all
    x, y = regression_data(24)
    est.train(lambda: [({"x": x[i:i + 8]}, y[i:i + 8]) for i in range(0, 24, 8)])
    assert est.get_variable_value("global_step") == 8


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_returns_metrics_loss_and_global_step(trained):
    x, y = regression_data(60)  # 7 batches of 8 and a short one of 4
    result = trained.evaluate(input_fn(n=60, batch_size=8))
    out = numpy_forward(variables_of(trained), x)
    batch_losses = [np.mean((out[i:i + 8] - y[i:i + 8]) ** 2) for i in range(0, 60, 8)]
    assert set(result) == {"loss", "rmse", "mae", "global_step"}
    assert result["global_step"] == 20
    # loss: the mean of the per-batch mean losses (tf.estimator), not of all examples
    np.testing.assert_allclose(result["loss"], np.mean(batch_losses), rtol=1e-5)
    assert not np.isclose(np.mean(batch_losses), np.mean((out - y) ** 2), rtol=1e-4)
    # metrics: merged over all examples
    np.testing.assert_allclose(result["rmse"], np.sqrt(np.mean((out - y) ** 2)), rtol=1e-5)
    np.testing.assert_allclose(result["mae"], np.mean(np.abs(out - y)), rtol=1e-5)


def test_evaluate_steps_limits_the_batches(trained):
    x, y = regression_data(64)
    result = trained.evaluate(input_fn(), steps=2)
    out = numpy_forward(variables_of(trained), x[:16])
    np.testing.assert_allclose(result["rmse"], np.sqrt(np.mean((out - y[:16]) ** 2)), rtol=1e-5)
    with pytest.raises(EstimatorError, match="steps"):
        trained.evaluate(input_fn(), steps=0)


@pytest.mark.parametrize("reserved", ["loss", "global_step"])
def test_a_metric_named_like_a_reserved_key_is_an_error(tmp_path, reserved):
    def fn(features, labels, mode, params):
        spec = model_fn(features, labels, mode, params)
        if mode == ModeKeys.EVAL:
            spec = spec._replace(eval_metrics={reserved: metrics.Mean()(spec.loss)})
        return spec

    with pytest.raises(EstimatorSpecError, match=reserved):
        _estimator(tmp_path, model_fn=fn).evaluate(input_fn())


# ----------------------------------------------------------------------------- predict


def test_predict_per_example_and_per_batch(trained):
    x, _ = regression_data(64)
    want = numpy_forward(variables_of(trained), x)
    examples = list(trained.predict(input_fn(labels=False)))
    assert len(examples) == 64
    assert set(examples[0]) == {"predictions", "hidden"}
    assert examples[0]["predictions"].shape == (1,) and examples[0]["hidden"].shape == (8,)
    np.testing.assert_allclose(np.stack([e["predictions"] for e in examples]), want, rtol=1e-5, atol=1e-6)

    batches = list(trained.predict(input_fn(), yield_single_examples=False))  # (features, labels) input
    assert len(batches) == 8 and batches[0]["predictions"].shape == (8, 1)
    np.testing.assert_allclose(np.concatenate([b["predictions"] for b in batches]), want, rtol=1e-5, atol=1e-6)


def test_predict_keys(trained):
    examples = list(trained.predict(input_fn(n=16, labels=False), predict_keys=["hidden"]))
    assert len(examples) == 16 and set(examples[0]) == {"hidden"}
    with pytest.raises(EstimatorError, match="nope"):
        list(trained.predict(input_fn(labels=False), predict_keys=["nope"]))


def test_single_array_predictions_are_split_per_example(tmp_path):
    def fn(features, labels, mode):
        _, out = _forward_only(features)
        return EstimatorSpec(mode, predictions=out)

    est = _estimator(tmp_path, model_fn=fn)
    examples = list(est.predict(input_fn(n=16, labels=False)))
    assert len(examples) == 16 and examples[0].shape == (1,)


def _forward_only(features):
    from _toy import forward

    return forward(features)


# ----------------------------------------------------------------------------- fresh parameters


def test_evaluate_and_predict_without_checkpoint_warn_and_use_fresh_parameters(tmp_path, caplog):
    est = _estimator(tmp_path, params=FROZEN)
    with caplog.at_level(logging.WARNING, logger="estimator"):
        fresh = _predictions(est)
    assert "Could not find trained model" in caplog.text and "predict" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="estimator"):
        result = est.evaluate(input_fn())
    assert "Could not find trained model" in caplog.text and "evaluate" in caplog.text
    assert result["global_step"] == 0
    # one step with a zero learning rate checkpoints exactly the initial parameters
    est.train(input_fn(), steps=1)
    x, y = regression_data(64)
    out = numpy_forward(variables_of(est), x)
    np.testing.assert_allclose(fresh, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["rmse"], np.sqrt(np.mean((out - y) ** 2)), rtol=1e-5)


def test_same_seed_same_parameters_other_seed_other_parameters(tmp_path):
    a = _predictions(_estimator(tmp_path, "a", config=RunConfig(random_seed=1)))
    b = _predictions(_estimator(tmp_path, "b", config=RunConfig(random_seed=1)))
    c = _predictions(_estimator(tmp_path, "c", config=RunConfig(random_seed=2)))
    assert np.array_equal(a, b) and not np.allclose(a, c)


# ----------------------------------------------------------------------------- warm start


def _values(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"dnn/hiddenlayer_0/kernel": (3, 8), "dnn/hiddenlayer_0/bias": (8,),
              "dnn/logits/kernel": (8, 1), "dnn/logits/bias": (1,)}
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def test_warm_start_from_a_mapping_in_predict_and_train(tmp_path):
    values = _values(0)
    x, _ = regression_data(64)
    est = _estimator(tmp_path, warm_start_from=values, params=FROZEN)
    np.testing.assert_allclose(_predictions(est), numpy_forward(values, x), rtol=1e-5, atol=1e-5)
    est.train(input_fn(), steps=1)
    for name, value in values.items():
        np.testing.assert_array_equal(est.get_variable_value(name), value)


def test_warm_start_from_a_checkpoint_dir_keeps_the_step_at_zero(trained, tmp_path):
    est = _estimator(tmp_path, warm_start_from=trained.model_dir, params=FROZEN)
    np.testing.assert_array_equal(_predictions(est), _predictions(trained))
    est.train(input_fn(), steps=2)
    assert est.get_variable_value("global_step") == 2
    for name, value in variables_of(trained).items():
        np.testing.assert_array_equal(est.get_variable_value(name), value)


def test_warm_start_settings_regex_and_rename(trained, tmp_path):
    fresh = variables_of(_estimator(tmp_path, "fresh", params=FROZEN).train(input_fn(), steps=1))
    old = variables_of(trained)

    settings = WarmStartSettings(trained.latest_checkpoint(), vars_to_warm_start="dnn/hiddenlayer_0/.*")
    est = _estimator(tmp_path, "regex", warm_start_from=settings, params=FROZEN).train(input_fn(), steps=1)
    got = variables_of(est)
    for name in VARIABLES:
        want = old[name] if "hiddenlayer_0" in name else fresh[name]
        np.testing.assert_array_equal(got[name], want, err_msg=name)

    renamed = {"dnn/hidden/kernel": "dnn/hiddenlayer_0/kernel", "dnn/hidden/bias": "dnn/hiddenlayer_0/bias"}
    settings = WarmStartSettings(trained.model_dir, vars_to_warm_start=["dnn/hidden/.*", "dnn/logits/.*"],
                                 var_name_to_prev_var_name=renamed)
    est = _estimator(tmp_path, "renamed", warm_start_from=settings, params={**FROZEN, "hidden_name": "hidden"})
    np.testing.assert_array_equal(_predictions(est), _predictions(trained))


def test_warm_start_errors_name_both_sides(trained, tmp_path):
    cases = [
        ({"dnn/hiddenlayer_9/kernel": np.zeros((3, 8))}, ["dnn/hiddenlayer_9/kernel", "dnn/hiddenlayer_0/kernel"]),
        ({"dnn/logits/kernel": np.zeros((4, 1))}, ["dnn/logits/kernel", "(8, 1)", "(4, 1)"]),
        (WarmStartSettings(trained.model_dir, vars_to_warm_start="dnn/hidden/kernel",
                           var_name_to_prev_var_name={"dnn/hidden/kernel": "dnn/old/kernel"}),
         ["dnn/hidden/kernel", "dnn/old/kernel"]),
        (WarmStartSettings(trained.model_dir, vars_to_warm_start="output/.*"), ["output/.*", "dnn/logits/bias"]),
    ]
    for i, (source, words) in enumerate(cases):
        est = _estimator(tmp_path, f"e{i}", warm_start_from=source, params={"hidden_name": "hidden"} if i == 2 else {})
        with pytest.raises(WarmStartError) as info:
            list(est.predict(input_fn(labels=False)))
        for word in words:
            assert word in str(info.value), (word, str(info.value))


def test_warm_start_is_not_applied_when_model_dir_has_a_checkpoint(tmp_path):
    first = _estimator(tmp_path).train(input_fn(), steps=2)
    trained_values = variables_of(first)
    zeros = {k: np.zeros_like(v) for k, v in trained_values.items()}
    again = Estimator(model_fn, first.model_dir, warm_start_from=zeros)
    np.testing.assert_array_equal(_predictions(again), _predictions(first))
    again.train(input_fn(), steps=1)  # one adam step of 0.01 from the trained values, not from zeros
    assert again.get_variable_value("global_step") == 3
    for name, value in trained_values.items():
        moved = again.get_variable_value(name)
        np.testing.assert_allclose(moved, value, atol=0.011, err_msg=name)
        assert not np.allclose(moved, 0.0, atol=0.011), name


# ----------------------------------------------------------------------------- caching


def test_second_predict_and_evaluate_do_not_retrace_model_fn(tmp_path):
    calls = {"n": 0}

    def counting_model_fn(features, labels, mode, params):
        calls["n"] += 1
        return model_fn(features, labels, mode, params)

    est = _estimator(tmp_path, model_fn=counting_model_fn)
    _predictions(est)  # no checkpoint: fresh parameters
    before = calls["n"]
    _predictions(est)
    assert calls["n"] == before, "predict without a checkpoint traced model_fn again"
    est.train(input_fn(), steps=2)
    _predictions(est)
    est.evaluate(input_fn())
    before = calls["n"]
    first = _predictions(est)
    est.evaluate(input_fn())
    assert np.array_equal(first, _predictions(est))
    assert calls["n"] == before, "a second predict/evaluate call traced model_fn again"


# ----------------------------------------------------------------------------- subclass, input_fn args


class _SubclassedRegressor(Estimator):
    def model_fn(self, features, labels, mode, params):
        return model_fn(features, labels, mode, {"learning_rate": 0.05})


def test_subclass_overriding_model_fn(tmp_path):
    est = _SubclassedRegressor(model_dir=str(tmp_path))
    est.train(input_fn(epochs=None), steps=30)
    assert est.get_variable_value("global_step") == 30
    x, y = regression_data(64)
    result = est.evaluate(input_fn())
    np.testing.assert_allclose(result["rmse"], np.sqrt(np.mean((numpy_forward(variables_of(est), x) - y) ** 2)),
                               rtol=1e-5)
    assert len(list(est.predict(input_fn(labels=False)))) == 64
    with pytest.raises(EstimatorError, match="model_fn"):
        Estimator(model_dir=str(tmp_path / "none"))


def test_input_fn_gets_params_mode_config_and_input_context_by_signature(tmp_path):
    seen = []
    data = input_fn(n=16)

    def fn(mode, params, config, input_context):
        seen.append((mode, params, config, input_context))
        return data()

    est = _estimator(tmp_path, params={"hp": 1}, config=RunConfig(random_seed=7))
    est.train(fn, steps=1)
    est.evaluate(fn)
    list(est.predict(fn))
    assert [s[0] for s in seen] == [ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT]
    for _, params, config, context in seen:
        assert params == {"hp": 1}
        assert config.random_seed == 7 and config.model_dir == est.model_dir
        assert isinstance(context, InputContext)
        assert (context.num_input_pipelines, context.input_pipeline_id) == (1, 0)
        assert context.num_replicas_in_sync == jax.device_count()

    only_params = []
    est.evaluate(lambda params: only_params.append(params) or data())
    assert only_params == [{"hp": 1}]


# ----------------------------------------------------------------------------- debugging


def test_debug_runs_model_fn_eagerly(tmp_path):
    seen = []

    def fn(features, labels, mode, params):
        x = features["x"]
        seen.append((mode, isinstance(x, jax.core.Tracer), float(jnp.sum(x))))  # float() fails on a tracer
        return model_fn(features, labels, mode, params)

    est = _estimator(tmp_path, model_fn=fn, config=RunConfig(debug=True, steps_per_loop=4))
    est.train(input_fn(n=8), steps=1)
    list(est.predict(input_fn(n=8, labels=False)))
    assert {s[0] for s in seen} == {ModeKeys.TRAIN, ModeKeys.PREDICT}
    assert not any(s[1] for s in seen)
    x, _ = regression_data(8)
    assert any(np.isclose(s[2], x.sum(), rtol=1e-5) for s in seen if s[0] == ModeKeys.TRAIN)


def test_a_shape_error_in_model_fn_names_the_mode_and_features(tmp_path):
    def broken(features, labels, mode):
        out = features["x"] @ jnp.ones((5, 1))  # x has 3 columns
        return EstimatorSpec(mode, predictions=out, loss=jnp.mean(out), optimizer=optax.sgd(0.1))

    est = _estimator(tmp_path, model_fn=broken)
    with pytest.raises(ModelFnError) as info:
        est.train(input_fn(), steps=1)
    message = str(info.value)
    assert "'train'" in message and "x: float32[8, 3]" in message and "(5,)" in message
    with pytest.raises(ModelFnError, match=r"'infer'.*x: float32\[8, 3\]"):
        list(est.predict(input_fn(labels=False)))


def test_a_missing_feature_key_in_model_fn_names_the_mode_and_the_features(tmp_path):
    def wants_age(features, labels, mode):
        out = features["age"] * 2.0
        return EstimatorSpec(mode, predictions=out, loss=jnp.mean(out), optimizer=optax.sgd(0.1))

    est = _estimator(tmp_path, model_fn=wants_age)
    with pytest.raises(ModelFnError, match=r"'train' with features \{x: float32\[8, 3\]\}.*'age'"):
        est.train(input_fn(), steps=1)


@pytest.mark.parametrize("mode", [ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT])
def test_string_features_reaching_the_device_name_the_mode_and_the_feature(tmp_path, mode):
    x, y = regression_data(8)
    batch = {"x": x, "city": np.array(["nyc"] * 8)}
    est = _estimator(tmp_path)
    with pytest.raises(EstimatorError, match=rf"{mode} input: feature\(s\) \['city'\] \(<U3\) hold strings"):
        if mode == ModeKeys.TRAIN:
            est.train(lambda: iter([(batch, y)]), steps=1)
        elif mode == ModeKeys.EVAL:
            est.evaluate(lambda: iter([(batch, y)]))
        else:
            list(est.predict(lambda: iter([batch])))


class _RssAt(Hook):
    """Records the process's resident memory (MiB) at the given steps."""

    def __init__(self, steps: set[int]):
        self.steps, self.rss = steps, {}

    def after_run(self, run_context, values):
        """Reads /proc/self/statm at the recorded steps."""
        if values.step in self.steps:
            with open("/proc/self/statm") as f:
                self.rss[values.step] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_memory_growth_over_60k_steps_with_checkpoints_summaries_and_logs(tmp_path):
    config = RunConfig(save_checkpoints_steps=2000, save_summary_steps=100, log_step_count_steps=1000,
                       steps_per_loop=10, keep_checkpoint_max=2)
    rss = _RssAt({10_000, 60_000})
    est = _estimator(tmp_path, config=config)
    est.train(input_fn(n=64, batch_size=8, epochs=None, shuffle_seed=1), hooks=[rss], max_steps=60_000)
    assert est.get_variable_value("global_step") == 60_000
    growth = rss.rss[60_000] - rss.rss[10_000]
    print(f"RSS MiB by step: {rss.rss}")
    assert growth < 40, f"resident memory grew {growth:.1f} MiB from step 10k to 60k ({rss.rss})"
