"""Tiny models, data and a checkpointable input iterator shared by the core's tests.

Also imported by ``_train_job.py`` (a subprocess), so it depends only on the public API.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import EstimatorSpec, Hook, ModeKeys, metrics, nn

N_FEATURES = 3
HIDDEN = 8
VARIABLES = ["dnn/hiddenlayer_0/bias", "dnn/hiddenlayer_0/kernel", "dnn/logits/bias", "dnn/logits/kernel"]


def regression_data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` [n, 3] float32 and ``y = x @ w + 0.5 + noise`` [n, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    w = np.array([[1.0], [-2.0], [0.5]], np.float32)
    y = (x @ w + 0.5 + 0.1 * rng.normal(size=(n, 1))).astype(np.float32)
    return x, y


class ArrayIterator:
    """Batches of ``({"x": x}, y)``, ``epochs`` times (None: forever), reshuffled per epoch when seeded.

    The last batch of an epoch is short when ``batch_size`` does not divide the rows.

    The position is ``state()`` / ``restore(state)``, as input_pipelines iterators offer.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int, epochs: int | None = 1,
                 shuffle_seed: int | None = None):
        self.x, self.y, self.batch_size, self.epochs = x, y, batch_size, epochs
        self.shuffle_seed = shuffle_seed
        self.epoch, self.index = 0, 0

    def _order(self) -> np.ndarray:
        if self.shuffle_seed is None:
            return np.arange(len(self.x))
        return np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(len(self.x))

    def __iter__(self) -> ArrayIterator:
        return self

    def __next__(self) -> Any:
        if self.index >= len(self.x):
            self.epoch, self.index = self.epoch + 1, 0
        if self.epochs is not None and self.epoch >= self.epochs:
            raise StopIteration
        rows = self._order()[self.index:self.index + self.batch_size]
        self.index += self.batch_size
        features = {"x": self.x[rows]}
        return features if self.y is None else (features, self.y[rows])

    def state(self) -> dict[str, int]:
        """The position: epoch and index within it."""
        return {"epoch": self.epoch, "index": self.index}

    def restore(self, state: dict[str, int]) -> None:
        """Continues from a ``state()``."""
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def input_fn(n: int = 64, batch_size: int = 8, epochs: int | None = 1, shuffle_seed: int | None = None,
             seed: int = 0, labels: bool = True):
    """An ``input_fn`` over ``regression_data`` returning a fresh ``ArrayIterator``."""
    x, y = regression_data(n, seed)

    def fn():
        return ArrayIterator(x, y if labels else None, batch_size, epochs, shuffle_seed)

    return fn


def forward(features: dict[str, Any], hidden_name: str = "hiddenlayer_0", dropout: float = 0.0,
            training: bool = False) -> tuple[jax.Array, jax.Array]:
    """The toy MLP 3 -> 8 (relu, dropout) -> 1 under scope ``dnn``; returns (hidden, output)."""
    with nn.scope("dnn"):
        hidden = nn.Dense(HIDDEN, activation="relu", name=hidden_name)(features["x"])
        if dropout:
            hidden = nn.Dropout(dropout)(hidden, training=training)
        out = nn.Dense(1, name="logits")(hidden)
    return hidden, out


def model_fn(features, labels, mode, params):
    """Regression MLP: MSE loss, RMSE/MAE metrics.

    ``params`` may give ``optimizer`` (default adam(learning_rate=0.01)),
    ``hidden_name`` (the hidden layer's name, default ``hiddenlayer_0``) and a
    ``dropout`` rate (default 0: no dropout).
    """
    hidden, out = forward(features, params.get("hidden_name", "hiddenlayer_0"), params.get("dropout", 0.0),
                          mode == ModeKeys.TRAIN)
    predictions = {"predictions": out, "hidden": hidden}
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions=predictions)
    loss = jnp.mean((out - labels) ** 2)
    optimizer = params.get("optimizer") or optax.adam(params.get("learning_rate", 0.01))
    eval_metrics = {
        "rmse": metrics.RootMeanSquaredError()(labels, out),
        "mae": metrics.MeanAbsoluteError()(labels, out),
    }
    return EstimatorSpec(mode, predictions=predictions, loss=loss, optimizer=optimizer,
                         eval_metrics=eval_metrics)


def numpy_forward(variables: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The toy MLP in numpy, from variables named as ``get_variable_value`` names them."""
    v = {k: np.asarray(a, np.float64) for k, a in variables.items()}
    hidden = np.maximum(x @ v["dnn/hiddenlayer_0/kernel"] + v["dnn/hiddenlayer_0/bias"], 0.0)
    return hidden @ v["dnn/logits/kernel"] + v["dnn/logits/bias"]


def variables_of(est) -> dict[str, np.ndarray]:
    """The toy model's variables in ``est``'s latest checkpoint."""
    return {name: est.get_variable_value(name) for name in VARIABLES}


class LossRecorder(Hook):
    """A hook keeping every call's ``(step, loss)`` as Python numbers."""

    def __init__(self):
        self.losses: list[tuple[int, float]] = []

    def after_run(self, run_context, values):
        """Reads the call's loss."""
        self.losses.append((values.step, float(values.loss)))
