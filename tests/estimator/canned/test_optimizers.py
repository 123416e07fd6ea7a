"""Optimizers of the canned estimators: FTRL vs TensorFlow's update rule in numpy, names, errors."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from estimator.canned import optimizers


def _ftrl_numpy(w, grads, lr, l1=0.0, l2=0.0, shrink=0.0, beta=0.0, init_acc=0.1):
    """tf ApplyFtrlV2 with learning_rate_power=-0.5 (training_ops.cc), keras' beta folded into l2."""
    n, z = np.full_like(w, init_acc), np.zeros_like(w)
    l2 = l2 + beta / (2 * lr)
    for g in grads:
        g_shrunk = g + 2 * shrink * w
        n_new = n + g * g
        z = z + g_shrunk - (np.sqrt(n_new) - np.sqrt(n)) / lr * w
        quadratic = np.sqrt(n_new) / lr + 2 * l2
        w = np.where(np.abs(z) > l1, (np.sign(z) * l1 - z) / quadratic, 0.0)
        n = n_new
    return w


@pytest.mark.parametrize("kw", [{}, {"l1": 0.05, "l2": 0.1}, {"shrink": 0.2, "beta": 0.5}])
def test_ftrl_matches_tensorflow_update_rule(kw):
    w0 = np.array([0.3, -0.2, 0.0, 1.0])
    grads = [np.array([0.5, -1.0, 0.02, 0.3]), np.array([-0.2, 0.4, 0.01, 0.3]), np.array([0.1, 0.1, -0.3, 0.0])]
    opt = optimizers.ftrl(0.2, l1_regularization_strength=kw.get("l1", 0.0),
                          l2_regularization_strength=kw.get("l2", 0.0),
                          l2_shrinkage_regularization_strength=kw.get("shrink", 0.0), beta=kw.get("beta", 0.0))
    params = {"w": jnp.asarray(w0, jnp.float32)}
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params["w"]), _ftrl_numpy(w0, grads, 0.2, **kw), rtol=1e-5, atol=1e-7)


def test_get_optimizer_by_name_mapping_and_transformation():
    params = {"w": jnp.ones(2)}
    g = {"w": jnp.array([1.0, -2.0])}
    sgd = optimizers.get_optimizer("sgd", default_learning_rate=0.1)
    updates, _ = sgd.update(g, sgd.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1, 0.2])
    adagrad = optimizers.get_optimizer({"name": "Adagrad", "learning_rate": 0.5})
    updates, _ = adagrad.update(g, adagrad.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5 * np.array([1.0, -2.0]) / np.sqrt(0.1 + np.array([1.0, 4.0])),
                               rtol=1e-5)
    adam = optax.adam(1e-3)
    assert optimizers.get_optimizer(adam) is adam
    assert optimizers.get_optimizer(lambda: adam) is adam
    for name in optimizers.NAMES:
        assert isinstance(optimizers.get_optimizer(name, 0.01), optax.GradientTransformation)


def test_get_optimizer_errors_name_the_problem():
    with pytest.raises(optimizers.OptimizerError, match="unknown optimizer 'Adamw'"):
        optimizers.get_optimizer("Adamw", 0.1)
    with pytest.raises(optimizers.OptimizerError, match="needs a 'name'"):
        optimizers.get_optimizer({"learning_rate": 0.1})


def test_a_name_without_a_rate_gets_the_keras_class_default_like_tf():
    # TF: keras_legacy_default_lr (scripts/tf_goldens/probe_tf_parity.py, tensorflow-cpu 2.15.1)
    tf_defaults = {"Adagrad": 0.001, "Adam": 0.001, "Ftrl": 0.001, "RMSProp": 0.001, "SGD": 0.01}
    params, g = {"w": jnp.ones(1)}, {"w": jnp.array([2.0])}
    sgd = optimizers.get_optimizer("SGD")
    np.testing.assert_allclose(sgd.update(g, sgd.init(params), params)[0]["w"], [-tf_defaults["SGD"] * 2.0])
    for name, rate in tf_defaults.items():
        assert optimizers.KERAS_DEFAULT_LEARNING_RATES[name.lower()] == rate
        assert isinstance(optimizers.get_optimizer({"name": name}), optax.GradientTransformation)
