"""A training job for the SIGKILL test: ``python _train_job.py MODEL_DIR MAX_STEPS``.

Trains the toy model (with dropout, shuffled endless input) to MAX_STEPS,
checkpointing every few steps, resuming from whatever MODEL_DIR holds.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _toy import input_fn, model_fn  # noqa: E402

from estimator import Estimator, RunConfig  # noqa: E402

PARAMS = {"dropout": 0.25, "learning_rate": 0.01}


def train(model_dir: str, max_steps: int) -> Estimator:
    """Trains (or resumes) the job's model in ``model_dir`` up to ``max_steps``."""
    config = RunConfig(save_checkpoints_steps=5, keep_checkpoint_max=3, random_seed=3)
    est = Estimator(model_fn, model_dir, config=config, params=PARAMS)
    return est.train(input_fn(n=40, batch_size=4, epochs=None, shuffle_seed=11), max_steps=max_steps)


if __name__ == "__main__":
    train(sys.argv[1], int(sys.argv[2]))
