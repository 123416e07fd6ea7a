"""The runs the FSDP test compares: ``python _fsdp_job.py`` (4 fake devices) prints JSON results.

An MLP 3 -> 64 -> 32 -> 1 trains 8 steps with replicated parameters, and with
``param_sharding="fsdp"`` in two ``train`` calls (4 + 4 steps: the second
restores the sharded state from the checkpoint). After every step a hook
records how the live arrays shaped like the two kernels (the parameter and
Adam's two moments) are laid out over the devices.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from _toy import LossRecorder, input_fn  # noqa: E402

from estimator import Estimator, EstimatorSpec, Hook, RunConfig, nn  # noqa: E402

KERNELS = {"hidden/kernel": (3, 64), "hidden2/kernel": (64, 32)}


def model_fn(features, labels, mode, params):
    """MSE regression with two hidden layers, Adam."""
    h = nn.Dense(64, activation="relu", name="hidden")(features["x"])
    h = nn.Dense(32, activation="relu", name="hidden2")(h)
    out = nn.Dense(1, name="out")(h)
    return EstimatorSpec(mode, predictions=out, loss=jnp.mean((out - labels) ** 2), optimizer=optax.adam(0.01))


class LayoutRecorder(Hook):
    """After each call: for each kernel shape, the per-device shard shapes of the live arrays of that shape."""

    def __init__(self):
        self.layouts: list[dict[str, list]] = []

    def after_run(self, run_context, values):
        """Inspects ``jax.live_arrays()`` (the new training state is live; the donated one is not)."""
        seen = {}
        for name, shape in KERNELS.items():
            arrays = [a for a in jax.live_arrays() if a.shape == shape and not a.is_deleted()]
            seen[name] = [[len(a.sharding.device_set), list(a.sharding.shard_shape(shape))] for a in arrays]
        self.layouts.append(seen)


def run(model_dir: str, param_sharding: str, splits: tuple[int, ...]) -> dict:
    """Trains to each step in ``splits`` in turn (a new Estimator each time: a resume)."""
    losses, layouts = [], []
    for max_steps in splits:
        recorder, layout = LossRecorder(), LayoutRecorder()
        est = Estimator(model_fn, model_dir, config=RunConfig(random_seed=5, param_sharding=param_sharding))
        est.train(input_fn(n=64, batch_size=8, epochs=None, shuffle_seed=1), hooks=[recorder, layout],
                  max_steps=max_steps)
        losses += recorder.losses
        layouts += layout.layouts
    return {"losses": losses, "layouts": layouts, "eval": est.evaluate(input_fn(n=64, batch_size=16))}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        result = {"device_count": jax.device_count(),
                  "replicated": run(a, "replicated", (8,)),
                  "fsdp": run(b, "fsdp", (4, 8))}
    print("RESULT " + json.dumps(result))
