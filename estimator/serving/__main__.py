"""``python -m estimator.serving --model_name taxi --model_base_path DIR|gs://...|s3://... --port 8501 [--workers N]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from estimator.serving._process import serve, serve_workers


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _labels(text: str) -> dict[str, int]:
    labels = {}
    for item in filter(None, text.split(",")):
        label, sep, version = item.partition("=")
        if not sep or not label or not version.isdigit():
            raise argparse.ArgumentTypeError(f"expected label=version[,label=version...], got {item!r}")
        labels[label] = int(version)
    return labels


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The server's flags (named as TensorFlow Serving's model server names them)."""
    p = argparse.ArgumentParser(prog="python -m estimator.serving", description=__doc__)
    p.add_argument("--model_name", required=True, help="name in /v1/models/<name>")
    p.add_argument("--model_base_path", required=True,
                   help="directory of integer version subdirectories: a local path or a gs:// / s3:// URL "
                        "(needs the [gcs] / [s3] extra and the cloud's usual credentials)")
    p.add_argument("--port", "--rest_api_port", dest="port", type=int, default=8501)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the port (SO_REUSEPORT); each loads the model and batches "
                        "on its own: use about one per core")
    p.add_argument("--max_batch_size", type=int, default=64, help="most examples merged into one device call")
    p.add_argument("--batch_timeout_micros", type=int, default=0,
                   help="how long a batch of several requests may wait for more (a lone request never waits)")
    p.add_argument("--enable_batching", type=_bool, default=True, help="merge concurrent requests (default true)")
    p.add_argument("--max_body_bytes", type=int, default=4 * 1024 * 1024, help="larger request bodies get 413")
    p.add_argument("--poll_secs", "--file_system_poll_wait_seconds", dest="poll_secs", type=float, default=2.0,
                   help="how often to look for a new version")
    p.add_argument("--max_num_load_retries", type=int, default=5,
                   help="retries of a version that fails to load (then given up until its files change)")
    p.add_argument("--load_retry_backoff_secs", type=float, default=1.0,
                   help="wait before the first load retry; doubles per retry, at most 60 s")
    p.add_argument("--version_labels", type=_labels, default={},
                   help="labels for /labels/<label> routes: stable=1700000000,canary=1700000100")
    p.add_argument("--request_timeout_secs", type=float, default=30.0,
                   help="a client must send a request's headers and body within this; else 408 and close")
    p.add_argument("--idle_timeout_secs", "--timeout_keep_alive", dest="idle_timeout_secs", type=float, default=30.0,
                   help="idle keep-alive connections are closed after this")
    p.add_argument("--predict_in_thread", type=_bool, default=False,
                   help="run device calls in a worker thread so request parsing overlaps them (for models "
                        "taking milliseconds per batch); default false: on the event loop, cheapest for small models")
    p.add_argument("--log_level", default="info")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the model server until interrupted."""
    args = parse_args(argv)
    if args.workers == 1:
        serve(args)
    else:
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        sys.exit(serve_workers(args))


if __name__ == "__main__":
    main()
