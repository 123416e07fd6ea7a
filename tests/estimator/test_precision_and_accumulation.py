"""RunConfig's big-model options: ``compute_dtype="bfloat16"`` and ``gradient_accumulation_steps``.

Mixed precision keeps parameters and optimizer state float32 (checked in the
checkpoint) while the layers compute in bf16, and lands close to float32
training. Accumulating k micro-batches of B gives the parameters of training on
batches of k*B with the plain optimizer (same data order; ``step`` counts
micro-batches, so ``max_steps = k * big_steps``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _toy import LossRecorder, input_fn, model_fn, variables_of

from estimator import Estimator, ModeKeys, RunConfig
from estimator.checkpoint import CheckpointStore


def _train(model_dir, config, batch_size, max_steps, params=None, model=model_fn):
    recorder = LossRecorder()
    est = Estimator(model, str(model_dir), config=config, params=params)
    est.train(input_fn(n=64, batch_size=batch_size, epochs=None, shuffle_seed=3), hooks=[recorder],
              max_steps=max_steps)
    return est, recorder.losses


def test_bfloat16_computes_in_bf16_but_stores_float32(tmp_path):
    seen = {}

    def recording_model_fn(features, labels, mode, params):
        spec = model_fn(features, labels, mode, params)
        if mode == ModeKeys.TRAIN:
            seen["hidden"] = spec.predictions["hidden"].dtype
        return spec

    est, losses = _train(tmp_path, RunConfig(compute_dtype="bfloat16", random_seed=1), 8, 10,
                         model=recording_model_fn)
    assert seen["hidden"] == jnp.bfloat16
    assert all(np.isfinite(loss) for _, loss in losses)
    state = CheckpointStore(est.model_dir, read_only=True).restore_arrays(10)
    dtypes = {str(leaf.dtype) for part in ("params", "opt_state")
              for leaf in jax.tree.leaves(state[part]) if jnp.issubdtype(leaf.dtype, jnp.floating)}
    assert dtypes == {"float32"}
    assert {v.dtype for v in variables_of(est).values()} == {np.dtype(np.float32)}


def test_bfloat16_training_lands_close_to_float32(tmp_path):
    runs = {}
    for dtype in (None, "bfloat16"):
        est, losses = _train(tmp_path / str(dtype), RunConfig(compute_dtype=dtype, random_seed=1), 8, 30)
        runs[dtype] = (variables_of(est), losses, est.evaluate(input_fn(n=64, batch_size=16)))
    (v32, l32, e32), (v16, l16, e16) = runs[None], runs["bfloat16"]
    for name in v32:
        np.testing.assert_allclose(v16[name], v32[name], atol=5e-3, err_msg=name)
    np.testing.assert_allclose([x for _, x in l16], [x for _, x in l32], rtol=2e-2)
    first, last = np.mean([x for _, x in l32[:8]]), np.mean([x for _, x in l32[-8:]])
    assert last < first
    np.testing.assert_allclose(e16["loss"], e32["loss"], rtol=1e-2)


@pytest.mark.parametrize("k, optimizer", [(2, "adam"), (4, "sgd")])
def test_accumulating_k_micro_batches_equals_one_k_times_larger_batch(tmp_path, k, optimizer):
    opt = optax.adam(0.01) if optimizer == "adam" else optax.sgd(0.05)
    big_steps, micro = 4, 8
    big, big_losses = _train(tmp_path / "big", RunConfig(random_seed=2), k * micro, big_steps,
                             params={"optimizer": opt})
    acc, micro_losses = _train(tmp_path / "acc", RunConfig(random_seed=2, gradient_accumulation_steps=k),
                               micro, k * big_steps, params={"optimizer": opt})
    assert [s for s, _ in micro_losses] == list(range(1, k * big_steps + 1))
    big_params, acc_params = variables_of(big), variables_of(acc)
    for name in big_params:
        np.testing.assert_allclose(acc_params[name], big_params[name], rtol=0, atol=1e-6, err_msg=name)
    # Within a window the parameters do not move, so the micro losses average to the big-batch loss.
    window_means = np.mean(np.reshape([x for _, x in micro_losses], (big_steps, k)), axis=1)
    np.testing.assert_allclose(window_means, [x for _, x in big_losses], rtol=1e-5)
    assert int(acc.get_variable_value("global_step")) == k * big_steps


def test_accumulation_resumes_mid_window_exactly(tmp_path):
    config = RunConfig(random_seed=2, gradient_accumulation_steps=3)
    straight, _ = _train(tmp_path / "straight", config, 8, 9)
    resumed, _ = _train(tmp_path / "resumed", config, 8, 4)  # stops inside the second window
    resumed, _ = _train(tmp_path / "resumed", config, 8, 9)
    a, b = variables_of(straight), variables_of(resumed)
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
