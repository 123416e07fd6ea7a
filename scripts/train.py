"""Train, evaluate and export a model from a YAML task config.

    python scripts/train.py --config configs/taxi_fare.yaml --set train.max_steps=2000 model.hidden_units=[64,32]

Writes checkpoints, TensorBoard events (``tensorboard --logdir <run.model_dir>``),
the resolved config and exports into ``run.model_dir``; prints the final metrics.
Under several processes (scripts/launch_local.py, SLURM, TF_CONFIG, ...) every process runs
this same command; a TF_CONFIG ``evaluator`` task runs the continuous evaluator instead.
"""

from __future__ import annotations

import json
import os
import sys

from estimator import ModeKeys, ProgressHook, distribute
from estimator import config as config_lib
from estimator.training import EvalSpec, TrainSpec, train_and_evaluate
from models import task


def main(argv: list[str] | None = None) -> int:
    """Runs the whole job; returns the process exit code."""
    config = task.config_from_args(task.argument_parser(__doc__).parse_args(argv))
    if distribute.is_evaluator():  # the TF_CONFIG "evaluator" task evaluates while the others train
        from evaluate import run_continuous

        return run_continuous(config, poll_secs=5.0, timeout_secs=None)
    est = task.build_estimator(config)
    os.makedirs(est.model_dir, exist_ok=True)
    config_lib.dump(config.to_dict(), os.path.join(est.model_dir, "config.yaml"))
    train_spec = TrainSpec(task.input_fn(config, ModeKeys.TRAIN), max_steps=config.train.max_steps,
                           hooks=[ProgressHook(config.train.max_steps)])
    eval_spec = EvalSpec(task.input_fn(config, ModeKeys.EVAL), steps=config.eval.steps, name=config.eval.name,
                         exporters=task.exporters(config), throttle_secs=config.eval.throttle_secs,
                         every_n_steps=config.eval.every_n_steps)
    metrics, exports = train_and_evaluate(est, train_spec, eval_spec)
    print(json.dumps({"metrics": metrics, "exports": exports}, indent=2, default=float))
    print(f"TensorBoard: tensorboard --logdir {est.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
