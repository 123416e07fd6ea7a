"""``python -m estimator.serving --model_name taxi --model_base_path DIR --port 8501``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from estimator.serving.app import ServerConfig, build_app


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The server's flags (named as TensorFlow Serving's model server names them)."""
    p = argparse.ArgumentParser(prog="python -m estimator.serving", description=__doc__)
    p.add_argument("--model_name", required=True, help="name in /v1/models/<name>")
    p.add_argument("--model_base_path", required=True, help="directory of integer version subdirectories")
    p.add_argument("--port", "--rest_api_port", dest="port", type=int, default=8501)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--max_batch_size", type=int, default=64, help="most examples merged into one device call")
    p.add_argument("--batch_timeout_micros", type=int, default=0,
                   help="how long a batch of several requests may wait for more (a lone request never waits)")
    p.add_argument("--enable_batching", type=_bool, default=True, help="merge concurrent requests (default true)")
    p.add_argument("--max_body_bytes", type=int, default=4 * 1024 * 1024, help="larger request bodies get 413")
    p.add_argument("--poll_secs", "--file_system_poll_wait_seconds", dest="poll_secs", type=float, default=2.0,
                   help="how often to look for a new version")
    p.add_argument("--predict_in_thread", type=_bool, default=False,
                   help="run device calls in a worker thread so request parsing overlaps them (for models "
                        "taking milliseconds per batch); default false: on the event loop, cheapest for small models")
    p.add_argument("--log_level", default="info")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the model server until interrupted."""
    import uvicorn

    args = parse_args(argv)
    import jax

    # CPU backend: execute on the calling thread. Async dispatch hands every call to another
    # thread, which costs ~70 us of CPU per device call for nothing when the caller waits anyway.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing chatter
    config = ServerConfig(
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        enable_batching=args.enable_batching,
        max_body_bytes=args.max_body_bytes,
        poll_secs=args.poll_secs,
        predict_in_thread=args.predict_in_thread,
    )
    uvicorn.run(build_app(config), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
