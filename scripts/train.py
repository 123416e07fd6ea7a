"""Train, evaluate and export a model from a YAML task config.

    python scripts/train.py --config configs/taxi_fare.yaml --set train.max_steps=2000 model.hidden_units=[64,32]

Writes checkpoints, TensorBoard events (``tensorboard --logdir <run.model_dir>``),
the resolved config and exports into ``run.model_dir``; prints the final metrics.
Under several processes (scripts/launch_local.py, SLURM, TF_CONFIG, ...) every process runs
this same command; a TF_CONFIG ``evaluator`` task runs the continuous evaluator instead.

One trainer per model_dir: a second one exits 1 naming the first (``run.break_model_dir_lock=true``
takes over a lock whose holder is known to be gone). SIGTERM (preemption) or Ctrl-C saves a
checkpoint at the next step boundary and exits 143 or 130 (128 + the signal, like a process the
signal killed, so schedulers restart a preempted job); the same command then resumes exactly, and
an evaluation or export a kill interrupted is redone first.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from estimator import ModeKeys, ProgressHook, distribute
from estimator import config as config_lib
from estimator.training import EvalSpec, TrainSpec, train_and_evaluate
from input_pipelines import fs
from models import task


def main(argv: list[str] | None = None) -> int:
    """Runs the whole job; returns the process exit code."""
    config = task.config_from_args(task.argument_parser(__doc__).parse_args(argv))
    if distribute.is_evaluator():  # the TF_CONFIG "evaluator" task evaluates while the others train
        return task.evaluate_continuously(config, poll_secs=5.0, timeout_secs=None)
    est = task.build_estimator(config)
    with est.writer_lock():  # a second trainer on this model_dir fails here, before touching config.yaml
        config_lib.dump(config.to_dict(), fs.join(est.model_dir, "config.yaml"))
        return _train(config, est)


def _train(config: task.TaskConfig, est: Any) -> int:
    """train_and_evaluate with the config's specs; prints the metrics and export paths."""
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
    sys.exit(task.run_script(main))
