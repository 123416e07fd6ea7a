"""predict / evaluate / get_variable_value restore a checkpoint once and reuse it while it is read again."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from _toy import VARIABLES, input_fn, model_fn, numpy_forward, regression_data, variables_of

from estimator import Estimator, RunConfig
from estimator.checkpoint import CheckpointStore


@pytest.fixture
def restores(monkeypatch):
    """Counts the checkpoint restores (reads of the array data) of every Estimator."""
    calls: list[int] = []
    original = CheckpointStore.restore_arrays

    def counting(self, step):
        calls.append(step)
        return original(self, step)

    monkeypatch.setattr(CheckpointStore, "restore_arrays", counting)
    return calls


def _trained(model_dir, steps, seed=0) -> Estimator:
    est = Estimator(model_fn, str(model_dir), config=RunConfig(random_seed=seed))
    return est.train(input_fn(n=32, batch_size=8, epochs=None), max_steps=steps)


def _predict(est, **kwargs) -> np.ndarray:
    return np.concatenate([p["predictions"] for p in
                           est.predict(input_fn(n=16, labels=False), yield_single_examples=False, **kwargs)])


def test_predicting_and_reading_variables_again_restores_once(tmp_path, restores):
    est = _trained(tmp_path, 4)
    restores.clear()
    first = _predict(est)
    second = _predict(est)
    variables = variables_of(est)  # every variable by name, and global_step
    assert est.get_variable_value("global_step") == 4
    assert sorted(est.get_variable_names()) == sorted([*VARIABLES, "global_step"])
    est.evaluate(input_fn(n=16))
    assert restores == [4]
    np.testing.assert_array_equal(first, second)
    x, _ = regression_data(16)
    np.testing.assert_allclose(first, numpy_forward(variables, x), rtol=1e-5, atol=1e-5)



def test_evaluate_reuses_a_kept_checkpoint_but_keeps_none_itself(tmp_path, restores):
    _trained(tmp_path, 4)
    est = Estimator(model_fn, str(tmp_path), config=RunConfig(random_seed=0))
    restores.clear()
    est.evaluate(input_fn(n=16))
    est.evaluate(input_fn(n=16))  # between training chunks: the memory is not held
    _predict(est)
    est.evaluate(input_fn(n=16))  # the checkpoint predict kept
    assert restores == [4, 4, 4]


def test_a_newer_checkpoint_is_restored_not_served_from_the_cache(tmp_path, restores):
    est = _trained(tmp_path, 4)
    before = _predict(est)
    est.train(input_fn(n=32, batch_size=8, epochs=None), max_steps=8)
    restores.clear()
    after = _predict(est)
    assert restores == [8] and est.get_variable_value("global_step") == 8
    fresh = Estimator(model_fn, str(tmp_path), config=RunConfig(random_seed=0))  # its own, empty cache
    np.testing.assert_array_equal(after, _predict(fresh))
    assert not np.array_equal(before, after)
    # an explicit older checkpoint is read from disk, and then the latest again
    older = _predict(est, checkpoint_path=os.path.join(str(tmp_path), "checkpoints", "4"))
    np.testing.assert_array_equal(older, before)
    np.testing.assert_array_equal(_predict(est), after)
    assert restores == [8, 8, 4, 8]


def test_a_model_dir_retrained_from_scratch_to_the_same_step_is_read_anew(tmp_path, restores):
    est = _trained(tmp_path, 4, seed=0)
    old = _predict(est)
    shutil.rmtree(tmp_path)
    _trained(tmp_path, 4, seed=7)  # the same step number, other values
    new = _predict(est)
    assert not np.array_equal(old, new)
    np.testing.assert_array_equal(new, _predict(Estimator(model_fn, str(tmp_path))))
