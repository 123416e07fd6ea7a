"""The pure train core used without an Estimator: closed-form oracles for one step, scan == steps, NaN step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from estimator import EstimatorSpec, ModeKeys, metrics, nn
from estimator.train_core import (
    TrainState,
    abstract_state,
    init_state,
    make_train_loop,
    make_train_step,
    spec_statics,
    zero_accumulator,
)

LR = 0.1
RNG = np.random.default_rng(3)
X = RNG.normal(size=(4, 8, 2)).astype(np.float32)  # 4 batches of 8 rows
Y = RNG.normal(size=(4, 8, 1)).astype(np.float32)


def _model(features, labels):
    predictions = nn.Dense(1, name="linear")(features["x"])
    eval_metrics = {"mae": metrics.MeanAbsoluteError()(labels, predictions)}
    return EstimatorSpec(ModeKeys.TRAIN, predictions=predictions, loss=jnp.mean((predictions - labels) ** 2),
                         optimizer=optax.sgd(LR), eval_metrics=eval_metrics)


TRANSFORMED = nn.transform(_model)
MESH = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))


def _start() -> TrainState:
    return init_state(TRANSFORMED, optax.sgd(LR), 0, {"x": X[0]}, Y[0])


def test_one_step_is_the_closed_form_sgd_step():
    state = _start()
    w, b = (np.asarray(state.params["linear"][k], np.float64) for k in ("kernel", "bias"))
    x, y = X[0].astype(np.float64), Y[0].astype(np.float64)
    residual = x @ w + b - y  # d/dw mean(r^2) = 2 x^T r / n
    want_w, want_b = w - LR * 2 * x.T @ residual / len(x), b - LR * 2 * residual.mean(0)

    step = jax.jit(make_train_step(TRANSFORMED, optax.sgd(LR)))
    new, acc, loss = step(state, zero_accumulator(MESH), {"x": X[0]}, Y[0])
    np.testing.assert_allclose(new.params["linear"]["kernel"], want_w, rtol=1e-5)
    np.testing.assert_allclose(new.params["linear"]["bias"], want_b, rtol=1e-5)
    assert float(loss) == pytest.approx(float(np.mean(residual**2)), rel=1e-5)
    assert int(new.step) == 1 and int(acc["count"]) == 1 and int(acc["nan_step"]) == -1


def test_the_scan_over_a_group_equals_one_step_per_batch():
    step = jax.jit(make_train_step(TRANSFORMED, optax.sgd(LR)))
    state, acc, losses = _start(), zero_accumulator(MESH), []
    for i in range(len(X)):
        state, acc, loss = step(state, acc, {"x": X[i]}, Y[i])
        losses.append(float(loss))
    group_state, group_acc, mean_loss = jax.jit(make_train_loop(TRANSFORMED, optax.sgd(LR)))(
        _start(), zero_accumulator(MESH), {"x": X}, Y)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(group_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert int(group_state.step) == len(X) and int(group_acc["count"]) == len(X)
    assert float(mean_loss) == pytest.approx(np.mean(losses), rel=1e-5)
    assert float(group_acc["loss_sum"]) == pytest.approx(sum(losses), rel=1e-5)


def test_the_accumulator_keeps_the_first_non_finite_step():
    y = Y.copy()
    y[2, 0, 0] = np.nan  # batch 3 (step 3) diverges; later steps stay NaN
    _, acc, _ = jax.jit(make_train_loop(TRANSFORMED, optax.sgd(LR)))(_start(), zero_accumulator(MESH), {"x": X}, y)
    assert int(acc["nan_step"]) == 3


def test_statics_and_the_abstract_state_compute_nothing_and_match_the_real_state():
    statics = spec_statics(TRANSFORMED, ModeKeys.TRAIN, {"x": X[0]}, Y[0])
    assert isinstance(statics.optimizer, optax.GradientTransformation)
    assert list(statics.metrics) == ["mae"] and callable(statics.metrics["mae"].merge)
    abstract, real = abstract_state(TRANSFORMED, statics.optimizer, 0, {"x": X[0]}, Y[0]), _start()
    assert jax.tree.structure(abstract) == jax.tree.structure(real)
    assert [(a.shape, a.dtype) for a in jax.tree.leaves(abstract)] == [(r.shape, r.dtype) for r in jax.tree.leaves(real)]
    assert TrainState.from_tree(real.to_tree()) == real and set(real.to_tree()) == set(TrainState._fields)
