"""Devices: a run over 4 (fake CPU) devices shards the batch and matches the 1-device run."""

from __future__ import annotations

import numpy as np
import pytest
from _distribute_job import run
from _fake_devices import run_job


@pytest.fixture(scope="module")
def four_devices() -> dict:
    return run_job("_distribute_job.py")


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> dict:
    import jax

    if jax.device_count() != 1:
        pytest.skip("this process already has several devices")
    return run(str(tmp_path_factory.mktemp("one_device")))


def test_the_batch_is_split_over_four_devices(four_devices):
    assert four_devices["device_count"] == 4
    assert four_devices["layouts"]["batch"] == {"devices": 4, "replicated": False, "shard_shape": [2, 3]}


def test_four_devices_match_the_one_device_loss_curve(four_devices, one_device):
    assert one_device["layouts"]["batch"]["devices"] == 1
    steps = [step for step, _ in one_device["losses"]]
    assert steps == [step for step, _ in four_devices["losses"]] == list(range(1, 21))
    np.testing.assert_allclose([loss for _, loss in four_devices["losses"]],
                               [loss for _, loss in one_device["losses"]], rtol=1e-5, atol=1e-6)


def test_four_devices_match_evaluate_and_predict(four_devices, one_device):
    assert four_devices["eval"]["global_step"] == one_device["eval"]["global_step"] == 20
    for key in ("loss", "rmse", "mae"):
        np.testing.assert_allclose(four_devices["eval"][key], one_device["eval"][key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(four_devices["predictions"], one_device["predictions"], rtol=1e-5, atol=1e-6)
