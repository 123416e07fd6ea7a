"""``RunConfig(param_sharding="fsdp")`` on 4 fake CPU devices (a subprocess).

FSDP gives the losses of replicated parameters, and the large parameters and
their optimizer moments really are split over the devices, also after a resume.
"""

from __future__ import annotations

import numpy as np
import pytest
from _fake_devices import run_job


@pytest.fixture(scope="module")
def runs() -> dict:
    return run_job("_fsdp_job.py")


def test_fsdp_and_replicated_give_the_same_losses(runs):
    assert runs["device_count"] == 4
    replicated, fsdp = runs["replicated"], runs["fsdp"]
    assert [s for s, _ in fsdp["losses"]] == [s for s, _ in replicated["losses"]] == list(range(1, 9))
    np.testing.assert_allclose([x for _, x in fsdp["losses"]], [x for _, x in replicated["losses"]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fsdp["eval"]["loss"], replicated["eval"]["loss"], rtol=1e-5)


@pytest.mark.parametrize("kernel, shard", [("hidden/kernel", [3, 16]), ("hidden2/kernel", [16, 32])])
def test_fsdp_splits_parameters_and_optimizer_state_over_the_devices(runs, kernel, shard):
    for step, layouts in enumerate(runs["fsdp"]["layouts"], start=1):
        arrays = layouts[kernel]
        assert len(arrays) >= 3, f"step {step}: expected the parameter and two Adam moments, got {arrays}"
        assert all(a == [4, shard] for a in arrays), f"step {step}: {kernel} laid out as {arrays}"
    full = list(next(iter(runs["replicated"]["layouts"]))[kernel])
    assert all(shape == [4, [3, 64] if kernel == "hidden/kernel" else [64, 32]] for shape in full)
