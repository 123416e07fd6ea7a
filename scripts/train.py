"""Train, evaluate and export a model from a YAML task config.

    python scripts/train.py --config configs/taxi_fare.yaml --set train.max_steps=2000 model.hidden_units=[64,32]

Writes checkpoints, TensorBoard events (``tensorboard --logdir <run.model_dir>``),
the resolved config and exports into ``run.model_dir``; prints the final metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from estimator import ModeKeys
from estimator import config as config_lib
from estimator.hooks import ProgressHook
from estimator.training import EvalSpec, TrainSpec, train_and_evaluate
from models import task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments shared by the task scripts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML task config, e.g. configs/taxi_fare.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. train.max_steps=2000 model.hidden_units=[64,32]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the whole job; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = task.load_task_config(args.config, args.set)
    except config_lib.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    est = task.build_estimator(config)
    os.makedirs(est.model_dir, exist_ok=True)
    config_lib.dump(config, os.path.join(est.model_dir, "config.yaml"))
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
