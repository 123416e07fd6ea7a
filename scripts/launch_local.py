"""Run one command as N local JAX processes (multi-process training on one machine).

    python scripts/launch_local.py --num_processes 2 --devices_per_process 2 -- \
        python scripts/train.py --config configs/taxi_fare.yaml

Every process gets ``JAX_COORDINATOR_ADDRESS=127.0.0.1:<port>``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID`` and ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (D fake CPU
devices each), so ``estimator.distribute.initialize()`` (called by the Estimator) joins them
into one job. Output lines are prefixed with ``[p<i>] ``. When a process exits with an
error, the others are stopped (SIGTERM, then SIGKILL after ``--grace_secs``) and the
launcher exits with that process's code; it exits 0 when all processes do.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO


class LaunchError(ValueError):
    """The launcher's arguments cannot work."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(base: dict[str, str], process_id: int, num_processes: int, port: int,
                devices_per_process: int) -> dict[str, str]:
    """The environment of process ``process_id``: coordinator, process count/id, fake device count."""
    env = dict(base)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices_per_process}".strip()
    env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
    env["JAX_NUM_PROCESSES"] = str(num_processes)
    env["JAX_PROCESS_ID"] = str(process_id)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TF_CONFIG", None)
    return env


def _pump(stream: IO[bytes], prefix: str, out: IO[str], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with lock:
            out.write(f"{prefix}{line}\n")
            out.flush()
    stream.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_all(procs: Sequence[subprocess.Popen], grace_secs: float) -> None:
    """SIGTERM to every live process group, SIGKILL to those still alive after ``grace_secs``."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_secs
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)  # also reaps stray children of a process that exited
    for proc in procs:
        proc.wait()


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def launch(command: Sequence[str], num_processes: int, devices_per_process: int = 1, port: int | None = None,
           grace_secs: float = 5.0, out: IO[str] | None = None) -> int:
    """Runs ``command`` as ``num_processes`` processes; returns the launcher's exit code.

    0 when every process exits 0; otherwise the code of the first process that
    failed (128 + signal for a killed one), after stopping the others.
    """
    if not command:
        raise LaunchError("launch_local: no command given; put it after '--'.")
    if num_processes < 1 or devices_per_process < 1:
        raise LaunchError(f"launch_local: --num_processes ({num_processes}) and --devices_per_process "
                          f"({devices_per_process}) must be at least 1.")
    out = out or sys.stdout
    port = port or free_port()
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        for pid in range(num_processes):
            proc = subprocess.Popen(list(command), env=process_env(dict(os.environ), pid, num_processes, port,
                                                                   devices_per_process),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            pump = threading.Thread(target=_pump, args=(proc.stdout, f"[p{pid}] ", out, lock), daemon=True)
            pump.start()
            pumps.append(pump)
        code = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, c = failed[0]
                with lock:
                    print(f"[launch_local] process {i} exited with code {c}; stopping the others.",
                          file=sys.stderr, flush=True)
                code = _exit_code(c)
                break
            if all(c == 0 for c in codes):
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        code = 130
    finally:
        _stop_all(procs, grace_secs)
        for pump in pumps:
            pump.join(timeout=2)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def main(argv: list[str] | None = None) -> int:
    """Parses ``[options] -- command...`` and runs the job; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("error: put the command after '--', e.g. launch_local.py --num_processes 2 -- python train.py",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_processes", type=int, required=True, help="processes to start")
    parser.add_argument("--devices_per_process", type=int, default=1, help="fake CPU devices per process")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--grace_secs", type=float, default=5.0, help="SIGTERM to SIGKILL delay when stopping")
    args = parser.parse_args(argv[:split])
    try:
        return launch(argv[split + 1:], args.num_processes, args.devices_per_process, args.port, args.grace_secs)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
