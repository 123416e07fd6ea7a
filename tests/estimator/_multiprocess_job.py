"""A small training job run by tests/estimator/test_multiprocess.py under scripts/launch_local.py.

    python _multiprocess_job.py MODEL_DIR STEPS

Every process builds the same global batches (8 rows each) and feeds only its
own contiguous share, as an input_fn given an ``InputContext`` does; the
Estimator joins the processes (``distribute.initialize`` from the JAX_*
environment) and lays the shares out over all devices.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import optax

from estimator import Estimator, EstimatorSpec, InputContext, RunConfig, nn

GLOBAL_BATCH = 8


def model_fn(features, labels, mode):
    """A one-hidden-layer regressor with a mean squared error loss."""
    hidden = jax.nn.relu(nn.Dense(8, name="hidden")(features["x"]))
    predictions = nn.Dense(1, name="out")(hidden)
    loss = None if labels is None else jax.numpy.mean((predictions - labels) ** 2)
    return EstimatorSpec(mode, predictions={"y": predictions}, loss=loss, optimizer=optax.adam(0.05))


def global_batches(steps: int):
    """The same ``steps`` global batches in every process."""
    rng = np.random.default_rng(7)
    for _ in range(steps):
        x = rng.normal(size=(GLOBAL_BATCH, 3)).astype(np.float32)
        y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
        yield x, y


def make_input_fn(steps: int):
    """An input_fn yielding this process's share of each global batch."""

    def input_fn(input_context: InputContext):
        share = input_context.get_per_process_batch_size(GLOBAL_BATCH)
        lo = input_context.input_pipeline_id * share
        for x, y in global_batches(steps):
            yield {"x": x[lo:lo + share]}, y[lo:lo + share]

    return input_fn


def main(model_dir: str, steps: int) -> None:
    """Trains ``steps`` steps into ``model_dir``."""
    config = RunConfig(model_dir=model_dir, save_checkpoints_steps=steps // 2, log_step_count_steps=2,
                       save_summary_steps=2, random_seed=3)
    est = Estimator(model_fn, config=config)
    print(f"process {jax.process_index()} of {jax.process_count()}, devices {jax.device_count()}", flush=True)
    est.train(make_input_fn(steps), max_steps=steps)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
