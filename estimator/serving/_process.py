"""Running the server: one process, or ``--workers N`` processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import resource
import signal
import socket
import time

log = logging.getLogger("estimator.serving")
MAX_QUICK_DEATHS = 5


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


def serve_workers(args: argparse.Namespace) -> int:
    """``--workers N``: N server processes, each with its own SO_REUSEPORT socket on the port
    (the kernel spreads connections evenly). A worker that dies is restarted; one that dies
    ``MAX_QUICK_DEATHS`` times in a row within a minute of its start stops the server."""
    ctx = multiprocessing.get_context("spawn")
    _reuseport_socket(args.host, args.port).close()  # fail here, clearly, if the port is taken
    procs = [ctx.Process(target=_worker, args=(args,), name=f"worker-{i}") for i in range(args.workers)]
    started = [time.monotonic()] * len(procs)
    quick_deaths = [0] * len(procs)
    for p in procs:
        p.start()
    stopping, exit_code = False, 0

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
                quick_deaths[i] = quick_deaths[i] + 1 if time.monotonic() - started[i] < 60 else 1
                if quick_deaths[i] >= MAX_QUICK_DEATHS:
                    log.error("Worker %d died %d times in a row right after starting (exit code %s); stopping.",
                              i, quick_deaths[i], p.exitcode)
                    stop(signal.SIGTERM, None)
                    exit_code = 1
                    break
                log.warning("Worker %d exited with code %s; restarting it.", i, p.exitcode)
                procs[i] = ctx.Process(target=_worker, args=(args,), name=f"worker-{i}")
                procs[i].start()
                started[i] = time.monotonic()
    for p in procs:
        p.join(15)
        if p.is_alive():
            p.kill()
    return exit_code


