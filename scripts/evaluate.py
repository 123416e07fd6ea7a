"""Evaluate a trained model on its config's eval files.

    python scripts/evaluate.py --config configs/taxi_fare.yaml [--checkpoint PATH]

Prints the metrics as JSON and writes them as TensorBoard events under the model's eval directory.
"""

from __future__ import annotations

import json
import sys

from estimator import ModeKeys
from models import task


def main(argv: list[str] | None = None) -> int:
    """Evaluates the latest (or given) checkpoint; returns the exit code."""
    parser = task.argument_parser(__doc__)
    parser.add_argument("--checkpoint", default=None, help="checkpoint path (default: the latest in run.model_dir)")
    args = parser.parse_args(argv)
    config = task.config_from_args(args)
    est = task.build_estimator(config)
    metrics = est.evaluate(task.input_fn(config, ModeKeys.EVAL), steps=config.eval.steps,
                           checkpoint_path=args.checkpoint, name=config.eval.name)
    print(json.dumps(metrics, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
