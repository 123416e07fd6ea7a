"""``python -m estimator.serving --model_name taxi --model_base_path DIR --port 8501 [--workers N]``."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("estimator.serving")


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
    p.add_argument("--model_base_path", required=True, help="directory of integer version subdirectories")
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


def _raise_fd_limit() -> None:
    """Lifts the soft open-files limit to the hard one: each connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace, sock: socket.socket | None = None) -> None:
    """Runs one server process until interrupted (on ``sock`` when given)."""
    import jax
    import uvicorn

    from estimator.serving._http import protocol_class
    from estimator.serving.app import ServerConfig, build_app

    # CPU backend: execute on the calling thread. Async dispatch hands every call to another
    # thread, which costs ~70 us of CPU per device call for nothing when the caller waits anyway.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing chatter
    _raise_fd_limit()
    config = ServerConfig(
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        enable_batching=args.enable_batching,
        max_body_bytes=args.max_body_bytes,
        poll_secs=args.poll_secs,
        predict_in_thread=args.predict_in_thread,
        max_load_retries=args.max_num_load_retries,
        load_retry_backoff_secs=args.load_retry_backoff_secs,
        version_labels=args.version_labels,
    )
    uv = uvicorn.Config(build_app(config), host=args.host, port=args.port, log_level=args.log_level,
                        access_log=False, lifespan="on", http=protocol_class(args.request_timeout_secs),
                        timeout_keep_alive=args.idle_timeout_secs, backlog=2048)
    uvicorn.Server(uv).run(sockets=[sock] if sock is not None else None)


def _worker(args: argparse.Namespace) -> None:
    serve(args, _reuseport_socket(args.host, args.port))


def serve_workers(args: argparse.Namespace) -> None:
    """``--workers N``: N server processes, each with its own SO_REUSEPORT socket on the port
    (the kernel spreads connections evenly); a worker that dies is restarted, at most once a second."""
    ctx = multiprocessing.get_context("spawn")
    _reuseport_socket(args.host, args.port).close()  # fail here, clearly, if the port is taken
    procs = [ctx.Process(target=_worker, args=(args,), name=f"worker-{i}") for i in range(args.workers)]
    for p in procs:
        p.start()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(1.0)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping:
                log.warning("Worker %d exited with code %s; restarting it.", i, p.exitcode)
                procs[i] = ctx.Process(target=_worker, args=(args,), name=f"worker-{i}")
                procs[i].start()
    for p in procs:
        p.join(15)
        if p.is_alive():
            p.kill()


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the model server until interrupted."""
    args = parse_args(argv)
    if args.workers == 1:
        serve(args)
    else:
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        serve_workers(args)
        sys.exit(0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
