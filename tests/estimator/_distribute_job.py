"""The run the device test compares: ``python _distribute_job.py`` prints its results as JSON.

Trains the toy model 20 steps (batch 8), records every step's loss and, at trace
time, how the batch and a kernel are laid out over the devices; then evaluates
(with a short last batch) and predicts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from _toy import LossRecorder, input_fn, model_fn  # noqa: E402

from estimator import Estimator, ModeKeys, RunConfig  # noqa: E402


def _layout(sharding, shape) -> dict:
    return {"devices": len(sharding.device_set), "replicated": bool(sharding.is_fully_replicated),
            "shard_shape": list(sharding.shard_shape(tuple(shape)))}


def run(model_dir: str) -> dict:
    """Trains, evaluates and predicts; returns losses, metrics, predictions and layouts."""
    layouts = {}

    def inspected_model_fn(features, labels, mode, params):
        spec = model_fn(features, labels, mode, params)
        if mode == ModeKeys.TRAIN:
            x = features["x"]
            jax.debug.inspect_array_sharding(x, callback=lambda s: layouts.update(batch=_layout(s, x.shape)))
        return spec

    recorder = LossRecorder()
    est = Estimator(inspected_model_fn, model_dir, config=RunConfig(random_seed=4))
    est.train(input_fn(n=64, batch_size=8, epochs=None, shuffle_seed=2), hooks=[recorder], max_steps=20)
    result = est.evaluate(input_fn(n=60, batch_size=8))
    predictions = [p["predictions"].tolist() for p in est.predict(input_fn(n=16, labels=False))]
    return {"device_count": jax.device_count(), "losses": recorder.losses, "eval": result,
            "predictions": predictions, "layouts": layouts}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        print("RESULT " + json.dumps(run(folder)))
