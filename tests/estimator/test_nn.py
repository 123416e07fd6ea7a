"""Tests for estimator.nn: names, reuse, initialisers, layers vs numpy, purity, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from estimator import nn

KEY = jax.random.PRNGKey(0)


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _init(fn, *args, rng=KEY, **kwargs):
    return nn.transform(fn).init(rng, *args, **kwargs)


# ----------------------------------------------------------------------------- names


def test_hierarchical_names_and_nested_dicts():
    def fn(x):
        with nn.scope("dnn"):
            x = nn.Dense(4, activation="relu", name="hiddenlayer_0")(x)
            x = nn.Dense(3, name="hiddenlayer_1")(x)
        return nn.Dense(1, name="logits")(x)

    params, state = _init(fn, _rand(2, 5))
    assert state == {}
    assert set(nn.flatten_names(params)) == {
        "dnn/hiddenlayer_0/kernel", "dnn/hiddenlayer_0/bias",
        "dnn/hiddenlayer_1/kernel", "dnn/hiddenlayer_1/bias",
        "logits/kernel", "logits/bias"}
    assert params["dnn"]["hiddenlayer_0"]["kernel"].shape == (5, 4)
    assert params["logits"]["bias"].shape == (1,)


def test_keras_style_auto_names_per_scope():
    def fn(x):
        nn.Dense(2)(x)
        nn.Dense(2)(x)
        with nn.scope("tower"):
            nn.Dense(2)(x)
            nn.LayerNorm()(x)
        nn.BatchNorm()(x, training=False)
        nn.Embed(5, 2)(jnp.zeros((2,), jnp.int32))
        nn.Conv2D(2, 1)(x.reshape(2, 1, 1, 3))

    params, state = _init(fn, _rand(2, 3))
    assert sorted(nn.flatten_names(params)) == sorted([
        "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias",
        "tower/dense/kernel", "tower/dense/bias",
        "tower/layer_normalization/gamma", "tower/layer_normalization/beta",
        "batch_normalization/gamma", "batch_normalization/beta",
        "embedding/embeddings", "conv2d/kernel", "conv2d/bias"])
    assert sorted(nn.flatten_names(state)) == [
        "batch_normalization/moving_mean", "batch_normalization/moving_variance"]


def test_module_built_inside_a_module_nests_and_auto_names_skip_explicit_ones():
    class Block(nn.Module):
        default_name = "block"

        def __call__(self, x):
            with self.name_scope():
                return nn.Dense(2)(nn.Dense(2)(x))

    def fn(x):
        nn.Dense(2, name="dense")(x)
        nn.Dense(2)(x)  # "dense" is taken explicitly, so this one is dense_1
        Block()(x)
        Block()(x)

    names = set(nn.flatten_names(_init(fn, _rand(1, 2))[0]))
    assert {"dense/kernel", "dense_1/kernel", "block/dense/kernel", "block/dense_1/kernel",
            "block_1/dense/kernel", "block_1/dense_1/kernel"} <= names


def test_same_name_reuses_parameters():
    def fn(x):
        a = nn.Dense(3, name="shared")(x)
        b = nn.Dense(3, name="shared")(x)
        with nn.scope("s"):
            c = nn.get_parameter("w", (2,))
        with nn.scope("s"):
            d = nn.get_parameter("w", (2,))
        layer = nn.Dense(3)
        return a, b, c, d, layer(x), layer(x)

    model = nn.transform(fn)
    x = _rand(2, 4)
    params, state = model.init(KEY, x)
    assert sorted(nn.flatten_names(params)) == [
        "dense/bias", "dense/kernel", "s/w", "shared/bias", "shared/kernel"]
    (a, b, c, d, e, f), _ = model.apply(params, state, None, x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, d)
    np.testing.assert_array_equal(e, f)


def test_flatten_unflatten_roundtrip_and_conflict():
    tree = {"a": {"b": {"c": 1}, "d": 2}, "e": 3}
    flat = nn.flatten_names(tree)
    assert flat == {"a/b/c": 1, "a/d": 2, "e": 3}
    assert nn.unflatten_names(flat) == tree
    with pytest.raises(nn.InvalidNameError, match="a/b"):
        nn.unflatten_names({"a/b": 1, "a/b/c": 2})
    with pytest.raises(nn.InvalidNameError, match="'x/y'"):
        nn.flatten_names({"x/y": 1})


# ----------------------------------------------------------------------------- init


def test_glorot_uniform_bound_and_zero_bias():
    fan_in, fan_out = 200, 300
    params, _ = _init(lambda x: nn.Dense(fan_out)(x), np.zeros((1, fan_in), np.float32))
    kernel = np.asarray(params["dense"]["kernel"])
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.99 * limit
    np.testing.assert_allclose(kernel.var(), limit**2 / 3, rtol=0.02)  # var of U(-l, l)
    np.testing.assert_array_equal(params["dense"]["bias"], np.zeros(fan_out))


def test_conv_kernel_glorot_uses_receptive_field_and_embed_uniform():
    def fn(x, ids):
        nn.Conv2D(16, (3, 3))(x)
        nn.Embed(100, 50)(ids)

    params, _ = _init(fn, np.zeros((1, 4, 4, 8), np.float32), np.zeros((1,), np.int32))
    kernel = np.asarray(params["conv2d"]["kernel"])
    limit = np.sqrt(6.0 / (9 * 8 + 9 * 16))
    assert kernel.shape == (3, 3, 8, 16)
    assert limit * 0.98 < np.abs(kernel).max() <= limit
    table = np.asarray(params["embedding"]["embeddings"])
    assert -0.05 <= table.min() < -0.049 and 0.049 < table.max() <= 0.05


def test_init_is_deterministic_and_path_keyed():
    def small(x):
        return nn.Dense(3, name="a")(x)

    def bigger(x):
        nn.Dense(7, name="before")(x)
        return nn.Dense(3, name="a")(x)

    x = _rand(2, 4)
    p1, _ = _init(small, x)
    p2, _ = _init(small, x)
    p3, _ = _init(bigger, x)
    p4, _ = _init(small, x, rng=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(p1["a"]["kernel"], p2["a"]["kernel"])
    np.testing.assert_array_equal(p1["a"]["kernel"], p3["a"]["kernel"])
    assert not np.allclose(p1["a"]["kernel"], p4["a"]["kernel"])


# ----------------------------------------------------------------------------- layers


def test_dense_matches_numpy():
    model = nn.transform(lambda x: nn.Dense(3, activation="relu")(x))
    x = _rand(4, 5)
    params, state = model.init(KEY, x)
    params = nn.unflatten_names({"dense/kernel": _rand(5, 3, seed=1), "dense/bias": _rand(3, seed=2)})
    out, _ = model.apply(params, state, None, x)
    expected = np.maximum(x @ params["dense"]["kernel"] + params["dense"]["bias"], 0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_batchnorm_training_inference_and_running_stats():
    model = nn.transform(lambda x, training: nn.BatchNorm(name="bn")(x, training=training))
    x = _rand(6, 2, 3) * 3 + 1
    params, state = model.init(KEY, x, training=True)
    # init leaves the statistics at keras's initial values
    np.testing.assert_array_equal(state["bn"]["moving_mean"], np.zeros(3))
    np.testing.assert_array_equal(state["bn"]["moving_variance"], np.ones(3))
    gamma, beta = _rand(3, seed=1), _rand(3, seed=2)
    params = {"bn": {"gamma": gamma, "beta": beta}}

    out, new_state = model.apply(params, state, None, x, training=True)
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_state["bn"]["moving_mean"], 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["bn"]["moving_variance"], 0.99 + 0.01 * var, rtol=1e-5)

    stats = {"bn": {"moving_mean": _rand(3, seed=3), "moving_variance": np.full(3, 2.0, np.float32)}}
    out, same_state = model.apply(params, stats, None, x, training=False)
    expected = (x - stats["bn"]["moving_mean"]) / np.sqrt(2.0 + 1e-3) * gamma + beta
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(same_state["bn"]["moving_mean"], stats["bn"]["moving_mean"])


def test_layernorm_matches_numpy():
    model = nn.transform(lambda x: nn.LayerNorm()(x))
    x = _rand(2, 3, 4) * 2 + 5
    params, state = model.init(KEY, x)
    gamma, beta = _rand(4, seed=1), _rand(4, seed=2)
    params = {"layer_normalization": {"gamma": gamma, "beta": beta}}
    out, _ = model.apply(params, state, None, x)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta,
                               rtol=1e-4, atol=1e-5)


def _conv_direct(x, w, b, stride, pad):
    """Direct NHWC/HWIO convolution with explicit (low, high) zero padding."""
    x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    kh, kw, _, cout = w.shape
    n, h, wd, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, cout), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out + b


@pytest.mark.parametrize("stride,padding,pads", [
    (1, "SAME", ((1, 1), (1, 1))),
    (2, "valid", ((0, 0), (0, 0))),
    (2, "SAME", ((0, 1), (0, 1))),  # TF SAME: out 3 from 6 needs 1 pad, on the high side
])
def test_conv2d_matches_direct_computation(stride, padding, pads):
    model = nn.transform(lambda x: nn.Conv2D(2, 3, strides=stride, padding=padding)(x))
    x = _rand(2, 6, 6, 3)
    _, state = model.init(KEY, x)
    w, b = _rand(3, 3, 3, 2, seed=1), _rand(2, seed=2)
    out, _ = model.apply({"conv2d": {"kernel": w, "bias": b}}, state, None, x)
    np.testing.assert_allclose(out, _conv_direct(x, w, b, stride, pads), rtol=1e-4, atol=1e-4)


def test_embed_lookup():
    model = nn.transform(lambda ids: nn.Embed(10, 4)(ids))
    ids = np.array([[1, 9], [0, 1]], np.int32)
    params, state = model.init(KEY, ids)
    out, _ = model.apply(params, state, None, ids)
    assert out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out, np.asarray(params["embedding"]["embeddings"])[ids])


def test_dropout_rate_scaling_and_determinism():
    model = nn.transform(lambda x, training: nn.Dropout(0.3)(x, training=training))
    x = np.ones((200, 100), np.float32)
    params, state = model.init(KEY, x, training=False)
    out, _ = model.apply(params, state, jax.random.PRNGKey(1), x, training=True)
    out = np.asarray(out)
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    assert abs((out == 0).mean() - 0.3) < 0.01
    again, _ = model.apply(params, state, jax.random.PRNGKey(1), x, training=True)
    other, _ = model.apply(params, state, jax.random.PRNGKey(2), x, training=True)
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(out, other)
    same, _ = model.apply(params, state, None, x, training=False)
    np.testing.assert_array_equal(same, x)


def test_next_rng_key_gives_distinct_keys_per_call():
    model = nn.transform(lambda: (nn.next_rng_key(), nn.next_rng_key()))
    (k1, k2), _ = model.apply({}, {}, KEY)
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))


# ----------------------------------------------------------------------------- state, jit, grad


def test_state_persists_when_not_set_and_updates_when_set():
    def fn(bump):
        count = nn.get_state("count", (), jnp.int32)
        nn.get_state("untouched", (2,), init=jax.nn.initializers.ones)
        if bump:
            nn.set_state("count", count + 1)
        return count

    model = nn.transform(fn)
    params, state = model.init(KEY, True)
    assert params == {} and int(state["count"]) == 0
    _, state = model.apply(params, state, None, True)
    out, state = model.apply(params, state, None, True)
    assert int(out) == 1 and int(state["count"]) == 2
    _, kept = model.apply(params, state, None, False)
    assert int(kept["count"]) == 2
    np.testing.assert_array_equal(kept["untouched"], np.ones(2))


def test_apply_under_jit_and_grad_matches_closed_form():
    def fn(x):
        return nn.Dense(1, name="out")(x)[:, 0]

    model = nn.transform(fn)
    x, y = _rand(8, 3), _rand(8, seed=1)
    params, state = model.init(KEY, x)

    def loss(params):
        pred, _ = model.apply(params, state, None, x)
        return jnp.mean((pred - y) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    w = np.asarray(params["out"]["kernel"])
    b = np.asarray(params["out"]["bias"])
    r = x @ w[:, 0] + b[0] - y
    np.testing.assert_allclose(grads["out"]["kernel"][:, 0], 2 * x.T @ r / 8, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["out"]["bias"], [2 * r.mean()], rtol=1e-4, atol=1e-5)


def test_jitted_apply_with_batchnorm_and_dropout_is_pure():
    def fn(x, training):
        x = nn.Dense(4)(x)
        x = nn.BatchNorm()(x, training=training)
        return nn.Dropout(0.5)(x, training=training)

    model = nn.transform(fn)
    x = _rand(4, 3)
    params, state = model.init(KEY, x, training=True)
    apply = jax.jit(model.apply, static_argnames="training")
    out1, s1 = apply(params, state, KEY, x, training=True)
    out2, s2 = apply(params, state, KEY, x, training=True)
    eager, s3 = model.apply(params, state, KEY, x, training=True)
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_allclose(out1, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s1["batch_normalization"]["moving_mean"],
                               s3["batch_normalization"]["moving_mean"], rtol=1e-5, atol=1e-7)
    assert jax.tree.structure(s1) == jax.tree.structure(state)
    np.testing.assert_array_equal(state["batch_normalization"]["moving_mean"], np.zeros(4))
    with pytest.raises(nn.ScopeError):  # no frame left behind
        nn.get_parameter("w", (1,))


# ----------------------------------------------------------------------------- precision


def test_mixed_precision_computes_in_dtype_and_keeps_float32_params():
    def fn(x, ids):
        h = nn.Dense(4)(x)
        c = nn.Conv2D(2, 1)(x.reshape(2, 1, 1, 3))
        e = nn.Embed(5, 3)(ids)
        n = nn.LayerNorm()(h)
        b = nn.BatchNorm()(h, training=True)
        return h, c, e, n, b

    model = nn.transform(fn)
    x, ids = _rand(2, 3) * 100 + 1000, np.array([0, 4], np.int32)
    with nn.mixed_precision(jnp.bfloat16):
        assert nn.compute_dtype() == jnp.bfloat16
        params, state = model.init(KEY, x, ids)
        (h, c, e, n, b), new_state = model.apply(params, state, None, x, ids)
    assert nn.compute_dtype() == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((params, new_state)))
    assert {v.dtype for v in (h, c, e, n, b)} == {jnp.dtype(jnp.bfloat16)}
    # statistics in float32: a bfloat16 normalisation of large values would be far off
    h32 = np.asarray(h, np.float32)
    mean, var = h32.mean(-1, keepdims=True), h32.var(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(n, np.float32), (h32 - mean) / np.sqrt(var + 1e-3),
                               rtol=0.02, atol=0.02)
    with pytest.raises(ValueError, match="floating"):
        with nn.mixed_precision(jnp.int32):
            pass


# ----------------------------------------------------------------------------- errors


def test_reused_name_with_other_shape_names_path_and_shapes():
    def fn(x):
        with nn.scope("dnn"):
            nn.Dense(3, name="layer")(x)
            nn.Dense(3, name="layer")(x[:, :2])

    with pytest.raises(nn.ParameterShapeError, match=r"'dnn/layer/kernel'.*\(4, 3\).*\(2, 3\)"):
        _init(fn, _rand(2, 4))


def test_apply_errors_name_the_path():
    model = nn.transform(lambda x: nn.Dense(3, name="d")(x))
    x = _rand(2, 4)
    params, state = model.init(KEY, x)
    with pytest.raises(nn.MissingParameterError, match="'d/bias'"):
        model.apply({"d": {"kernel": params["d"]["kernel"]}}, state, None, x)
    with pytest.raises(nn.ParameterShapeError, match=r"'d/kernel'.*\(5, 3\).*\(4, 3\)"):
        model.apply({"d": {"kernel": np.zeros((5, 3)), "bias": np.zeros(3)}}, state, None, x)
    bn = nn.transform(lambda x: nn.BatchNorm()(x, training=True))
    bn_params, _ = bn.init(KEY, x)
    with pytest.raises(nn.MissingParameterError, match="'batch_normalization/moving_mean'"):
        bn.apply(bn_params, {}, None, x)


def test_calls_outside_transform_raise_scope_error():
    for call in (lambda: nn.get_parameter("w", (1,)), lambda: nn.get_state("s", (1,)),
                 lambda: nn.set_state("s", 1.0), nn.next_rng_key,
                 lambda: nn.scope("x").__enter__(), lambda: nn.Dense(2)(np.ones((1, 2)))):
        with pytest.raises(nn.ScopeError, match="outside nn.transform"):
            call()


def test_missing_rng_and_bad_names():
    model = nn.transform(lambda x: nn.Dropout(0.5)(x, training=True))
    with pytest.raises(nn.RngError, match="rng=None"):
        model.apply({}, {}, None, np.ones(3))
    with pytest.raises(nn.InvalidNameError, match="'a/b'"):
        nn.Dense(2, name="a/b")
    with pytest.raises(nn.InvalidNameError):
        _init(lambda: nn.get_parameter("", (1,)))
    with pytest.raises(nn.ScopeError):  # the failing init left no frame behind
        nn.next_rng_key()
