"""Export a trained model for serving.

    python scripts/export.py --config configs/taxi_fare.yaml [--set run.model_dir=...]
        [--export_dir DIR] [--checkpoint PATH] [--serving_input '{"x": ["float32", [3]]}']

Exports the latest (or --checkpoint) checkpoint of the config's model to
``--export_dir`` (default ``<run.model_dir>/export/manual``) with the model's serving
input (the raw columns a client sends) unless --serving_input (JSON: name -> dtype or
[dtype, shape]) overrides it. Prints the export path.
"""

from __future__ import annotations

import json
import sys

from input_pipelines import fs
from models import task


def main(argv: list[str] | None = None) -> int:
    """Runs the export; returns the process exit code."""
    parser = task.argument_parser(__doc__)
    parser.add_argument("--export_dir", default=None,
                        help="export base dir, local or gs:// / s3:// (default <model_dir>/export/manual)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path (default: the latest)")
    parser.add_argument("--serving_input", default=None, help="JSON feature spec overriding the model's")
    parser.add_argument("--as_text", action="store_true", help="also write the StableHLO text")
    args = parser.parse_args(argv)
    config = task.config_from_args(args)
    est = task.build_estimator(config)
    if args.serving_input:
        try:
            spec = {k: v if isinstance(v, str) else tuple(v) for k, v in json.loads(args.serving_input).items()}
        except (ValueError, AttributeError, TypeError) as e:
            print(f"error: --serving_input must be a JSON object name -> dtype or [dtype, shape]: {e}", file=sys.stderr)
            return 2
    else:
        spec = task.serving_input(config)
    base = args.export_dir or fs.join(est.model_dir, "export", "manual")
    from estimator import EstimatorError
    from estimator.export import ExportError, export_saved_model

    try:
        print(export_saved_model(est, base, spec, checkpoint_path=args.checkpoint, as_text=args.as_text))
    except (EstimatorError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(task.run_script(main))
