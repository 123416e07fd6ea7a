"""EstimatorSpec and ModeKeys: mode values and per-mode validation with clear errors."""

from __future__ import annotations

import jax.numpy as jnp
import optax
import pytest

from estimator import EstimatorSpec, EstimatorSpecError, ModeKeys, metrics

LOSS = jnp.float32(1.0)
PRED = {"y": jnp.zeros((4, 1))}


def test_mode_keys_have_tf_estimator_values():
    assert (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT) == ("train", "eval", "infer")


@pytest.mark.parametrize(
    "spec",
    [
        EstimatorSpec(ModeKeys.TRAIN, loss=LOSS, optimizer=optax.sgd(0.1)),
        EstimatorSpec(ModeKeys.EVAL, loss=LOSS, eval_metrics={"m": metrics.Mean()(jnp.ones(3))}),
        EstimatorSpec(ModeKeys.PREDICT, predictions=PRED),
    ],
    ids=["train", "eval", "predict"],
)
def test_complete_specs_validate_and_return_themselves(spec):
    assert spec.validate() is spec


@pytest.mark.parametrize(
    "spec, words",
    [
        (EstimatorSpec(ModeKeys.TRAIN, optimizer=optax.sgd(0.1)), ["'train'", "no loss"]),
        (EstimatorSpec(ModeKeys.TRAIN, loss=LOSS), ["'train'", "no optimizer"]),
        (EstimatorSpec(ModeKeys.TRAIN, loss=LOSS, optimizer="adam"), ["GradientTransformation", "str"]),
        (EstimatorSpec(ModeKeys.EVAL, predictions=PRED), ["'eval'", "no loss"]),
        (EstimatorSpec(ModeKeys.EVAL, loss=jnp.ones((4,))), ["scalar", "(4,)"]),
        (EstimatorSpec(ModeKeys.TRAIN, loss=jnp.ones((2, 1)), optimizer=optax.sgd(0.1)), ["scalar", "(2, 1)"]),
        (EstimatorSpec(ModeKeys.PREDICT), ["'infer'", "no predictions"]),
        (EstimatorSpec("training", loss=LOSS), ["'training'", "expected one of"]),
        (EstimatorSpec(ModeKeys.EVAL, loss=LOSS, eval_metrics={"acc": 0.5}), ["eval_metrics['acc']", "MetricOp"]),
    ],
    ids=["train-loss", "train-optimizer", "optimizer-type", "eval-loss", "eval-vector-loss",
         "train-matrix-loss", "predict-predictions", "bad-mode", "metric-not-op"],
)
def test_incomplete_specs_say_what_is_missing(spec, words):
    with pytest.raises(EstimatorSpecError) as info:
        spec.validate()
    for word in words:
        assert word in str(info.value)


def test_predict_does_not_need_loss_or_optimizer_and_eval_not_optimizer():
    EstimatorSpec(ModeKeys.PREDICT, predictions=jnp.zeros(3)).validate()
    EstimatorSpec(ModeKeys.EVAL, loss=LOSS).validate()
