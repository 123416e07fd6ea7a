"""Evaluate a trained model on its config's eval files, once or continuously.

    python scripts/evaluate.py --config configs/taxi_fare.yaml [--checkpoint PATH]
    python scripts/evaluate.py --config configs/taxi_fare.yaml --continuous [--poll_secs 5]

Prints the metrics as JSON and writes them as TensorBoard events under the model's eval directory.
With ``--continuous`` (the evaluator beside a training job, also what the TF_CONFIG ``evaluator``
task runs) it watches ``run.model_dir``, evaluates each new checkpoint once, runs the configured
exporters after each evaluation, and stops after evaluating a step >= ``train.max_steps``.
"""

from __future__ import annotations

import json
import sys

from estimator import ModeKeys
from models import task


def main(argv: list[str] | None = None) -> int:
    """Evaluates the latest (or given) checkpoint, or every new one with --continuous; returns the exit code."""
    parser = task.argument_parser(__doc__)
    parser.add_argument("--checkpoint", default=None, help="checkpoint path (default: the latest in run.model_dir)")
    parser.add_argument("--continuous", action="store_true",
                        help="evaluate each new checkpoint until train.max_steps is evaluated")
    parser.add_argument("--poll_secs", type=float, default=5.0, help="--continuous: seconds between looks")
    parser.add_argument("--timeout_secs", type=float, default=None,
                        help="--continuous: stop when no new checkpoint appears for this long (default: never)")
    args = parser.parse_args(argv)
    config = task.config_from_args(args)
    if args.continuous:
        if args.checkpoint:
            parser.error("--checkpoint and --continuous exclude each other.")
        return task.evaluate_continuously(config, args.poll_secs, args.timeout_secs)
    est = task.build_estimator(config)
    metrics = est.evaluate(task.input_fn(config, ModeKeys.EVAL), steps=config.eval.steps,
                           checkpoint_path=args.checkpoint, name=config.eval.name)
    print(json.dumps(metrics, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(task.run_script(main))
