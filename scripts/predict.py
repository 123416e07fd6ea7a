"""Predict with a trained model over its config's eval files (or --files), one JSON line per example.

    python scripts/predict.py --config configs/taxi_fare.yaml [--files 'data/taxi/valid/*.csv'] [--limit 10]
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np

from estimator import ModeKeys
from models import task


def main(argv: list[str] | None = None) -> int:
    """Writes predictions to stdout; returns the exit code."""
    parser = task.argument_parser(__doc__)
    parser.add_argument("--files", default=None, help="CSV glob to predict on (default: data.eval_files)")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many examples")
    args = parser.parse_args(argv)
    if args.files:
        args.set = [*args.set, f"data.eval_files={args.files}"]
    config = task.config_from_args(args)
    est = task.build_estimator(config)
    predictions = est.predict(task.input_fn(config, ModeKeys.PREDICT))
    for example in itertools.islice(predictions, args.limit):
        print(json.dumps({k: np.asarray(v).tolist() for k, v in example.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(task.run_script(main))
