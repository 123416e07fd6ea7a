"""Evaluation / prediction job run by tests/estimator/test_multiprocess_eval.py under scripts/launch_local.py.

    python _eval_job.py OUT_DIR NAME=DATA_GLOB [NAME=DATA_GLOB ...] [--batch B]
        [--train_steps N --train_data GLOB]

A linear model ``prediction = w * x + b`` with fixed weights (warm-started from constants,
no checkpoint) is evaluated, then used for prediction, on each data set with
``make_csv_dataset`` defaults (``seed=None``, shuffled, one epoch). Every process writes
``OUT_DIR/<NAME>-<process>.json``: the evaluation results (or the EstimatorError's
message), the ``id`` column of every batch this process evaluated (for the test's oracle
of ``loss``, the mean of per-batch losses), the ``(id, prediction)`` pairs it predicted and
the weights. With ``--train_steps``, the model is then trained that many steps on
``--train_data`` and every data set is evaluated again from the checkpoint, as
``trained-<NAME>``. Without training, each data set is also evaluated with ``steps=2``
(key ``steps2``: its results and batches).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import Estimator, EstimatorError, EstimatorSpec, ModeKeys, RunConfig, metrics, nn
from input_pipelines import make_csv_dataset

W, B = 0.7, -0.2


def model_fn(features: Any, labels: Any, mode: str) -> EstimatorSpec:
    """``w * x + b``; squared-error loss; metrics that ignore weights, as most model_fns do."""
    w = nn.get_parameter("w", (1,))
    b = nn.get_parameter("b", (1,))
    prediction = features["x"].astype(jnp.float32) * w[0] + b[0]
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"id": features["id"], "prediction": prediction})
    labels = labels.astype(jnp.float32)
    loss = jnp.mean((prediction - labels) ** 2)
    if mode == ModeKeys.TRAIN:
        return EstimatorSpec(mode, loss=loss, optimizer=optax.sgd(0.05))
    eval_metrics = {
        "rmse": metrics.RootMeanSquaredError()(labels, prediction),
        "mae": metrics.MeanAbsoluteError()(labels, prediction),
        "mean_id": metrics.Mean()(features["id"].astype(jnp.float32)),
        "precision": metrics.Precision()(labels > 1.0, jax.nn.sigmoid(prediction)),
        "auc": metrics.AUC()(labels > 1.0, jax.nn.sigmoid(prediction)),
    }
    return EstimatorSpec(mode, loss=loss, eval_metrics=eval_metrics)


def dataset(data_glob: str, batch: int, num_epochs: int | None = None) -> Any:
    """``make_csv_dataset`` with its defaults, the columns typed (a header-only file has nothing to infer)."""
    return make_csv_dataset(data_glob, batch, column_defaults=[0, 0.0, 0.0], label_name="label",
                            num_epochs=num_epochs)


class Recorded:
    """Iterates a dataset and records the ``id`` column of every batch it hands out."""

    def __init__(self, dataset: Any, seen: list[list[int]]):
        self._iterator, self._seen = iter(dataset), seen

    def __iter__(self) -> Recorded:
        return self

    def __next__(self) -> Any:
        features, labels = next(self._iterator)
        self._seen.append(np.asarray(features["id"]).tolist())
        return features, labels


def run_all(est: Estimator, out_dir: str, datasets: list[str], batch: int, prefix: str,
            weights: dict[str, float]) -> None:
    """Evaluates and predicts on every ``NAME=DATA_GLOB``; writes ``<prefix><NAME>-<process>.json``."""
    for item in datasets:
        name, data_glob = item.split("=", 1)
        seen: list[list[int]] = []

        def input_fn(data_glob=data_glob, seen=seen):
            return Recorded(dataset(data_glob, batch, num_epochs=1), seen)

        try:
            outcome = {"results": est.evaluate(input_fn)}
        except EstimatorError as error:
            outcome = {"error": str(error)}
        if "results" in outcome and not prefix:
            first_two: list[list[int]] = []
            outcome["steps2"] = {"results": est.evaluate(lambda seen=first_two: input_fn(seen=seen), steps=2),
                                 "batches": first_two}
        predicted = [(int(p["id"]), float(p["prediction"])) for p in est.predict(
            lambda data_glob=data_glob: dataset(data_glob, batch, num_epochs=1))]
        with open(os.path.join(out_dir, f"{prefix}{name}-{jax.process_index()}.json"), "w") as f:
            json.dump({**outcome, "batches": seen, "predicted": predicted, "weights": weights}, f)


def main() -> None:
    """Evaluates and predicts on every data set; writes what this process saw and got."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("datasets", nargs="+", help="NAME=DATA_GLOB")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train_steps", type=int, default=None)
    parser.add_argument("--train_data", default=None)
    args = parser.parse_args()
    faulthandler.dump_traceback_later(180, exit=True)  # a hang fails with every thread's stack, not silently
    est = Estimator(model_fn, model_dir=os.path.join(args.out_dir, "model"), config=RunConfig(random_seed=0),
                    warm_start_from={"w": np.array([W], np.float32), "b": np.array([B], np.float32)})
    run_all(est, args.out_dir, args.datasets, args.batch, "", {"w": W, "b": B})
    if args.train_steps:
        est.train(lambda: dataset(args.train_data, args.batch), max_steps=args.train_steps)
        weights = {k: float(est.get_variable_value(k)[0]) for k in ("w", "b")}
        run_all(est, args.out_dir, args.datasets, args.batch, "trained-", weights)
    print(f"process {jax.process_index()} of {jax.process_count()}, devices {jax.device_count()}: done", flush=True)


if __name__ == "__main__":
    main()
