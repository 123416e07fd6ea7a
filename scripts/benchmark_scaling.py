#!/usr/bin/env python
"""Data-parallel scaling of the taxi model: examples/sec over devices and processes.

    python scripts/benchmark_scaling.py [--per_device_batch 512] [--steps 300]

Rows, each in its own child process with the per-device batch fixed (so the
global batch grows with the device count):

- 1, 2 and 4 devices in one process (fake CPU devices from
  ``--xla_force_host_platform_device_count``; with ``--platform cuda`` the
  machine's GPUs, so ``--devices`` must then match how many it has),
- 2 processes x 1 device, joined by ``jax.distributed`` through
  ``scripts/launch_local.py`` (CPU collectives over gloo).

Each child trains the wide-and-deep taxi model (``configs/taxi_fare.yaml``'s
model) with ``Estimator.train`` on synthetic trips held in memory, so the
numbers are the training step's and the host feature transform's, not the CSV
parser's. Scaling efficiency is examples/sec over (devices x the one-device
examples/sec). Fake CPU devices share the same cores, so on CPU the table shows
the framework's overhead of splitting a step, not extra compute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _child(model_dir: str, per_device_batch: int, warm: int, steps: int, steps_per_loop: int) -> None:
    """Trains the taxi model into ``model_dir`` (shared by all processes); prints one JSON line from process 0."""
    import logging

    import numpy as np

    from estimator import RunConfig
    from input_pipelines import Dataset
    from models import taxi_fare
    from models.benchmarking import SpanTimer
    from models.taxi_data import synthesize_trips

    logging.basicConfig(level=logging.WARNING)
    config = RunConfig(model_dir=model_dir, steps_per_loop=steps_per_loop, save_summary_steps=10**9,
                       log_step_count_steps=10**9, save_checkpoints_steps=10**9)
    est = taxi_fare.TaxiFareEstimator(taxi_fare.ModelParams(), with_time=False, config=config)
    import jax  # after the Estimator has joined the processes (jax.distributed)

    local_devices = jax.local_device_count()
    per_process_batch = per_device_batch * local_devices
    trips = synthesize_trips(np.random.default_rng(jax.process_index()), 16 * per_process_batch)
    labels = trips.pop("fare_amount").astype(np.float32)
    features = {k: trips[k].astype(np.float32) for k in taxi_fare.COURSE_COLUMNS[1:6]}

    def input_fn():
        dataset = Dataset.from_tensor_slices((features, labels)).repeat()
        return dataset.batch(per_process_batch, drop_remainder=True)

    timer = SpanTimer(warm, warm + steps)
    est.train(input_fn, hooks=[timer], max_steps=warm + steps)
    if jax.process_index() == 0:
        global_batch = per_process_batch * jax.process_count()
        print(json.dumps({"processes": jax.process_count(), "devices": local_devices * jax.process_count(),
                          "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
                          "global_batch": global_batch, "seconds": timer.seconds,
                          "examples_per_sec": steps * global_batch / timer.seconds}), flush=True)


def _run(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    line = [ln for ln in result.stdout.splitlines() if '{"processes"' in ln][-1]
    return json.loads(line[line.index("{"):])


def measure(devices: int, processes: int, args: argparse.Namespace, model_dir: str) -> dict[str, Any]:
    """Runs one configuration in fresh child process(es) training into ``model_dir``; returns its JSON result."""
    child = [sys.executable, os.path.abspath(__file__), "--child", model_dir, "--per_device_batch", str(args.per_device_batch),
             "--steps", str(args.steps), "--warm", str(args.warm), "--steps_per_loop", str(args.steps_per_loop)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    if processes == 1:
        env["JAX_PLATFORMS"] = args.platform
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
        return _run(child, env)
    env["JAX_PLATFORMS"] = "cpu"  # several processes on one host: fake CPU devices
    launcher = [sys.executable, os.path.join(HERE, "launch_local.py"), "--num_processes", str(processes),
                "--devices_per_process", str(devices // processes), "--"]
    return _run([*launcher, *child], env)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table with each row's speed-up and efficiency against the one-device row."""
    base = next(r["examples_per_sec"] for r in rows if r["devices"] == 1 and r["processes"] == 1)
    lines = [f"{'setup':<26}{'global batch':>13}{'examples/sec':>15}{'speed-up':>10}{'efficiency':>12}"]
    for r in rows:
        speedup = r["examples_per_sec"] / base
        setup = f"{r['processes']} proc x {r['devices'] // r['processes']} {r['platform']} dev"
        lines.append(f"{setup:<26}{r['global_batch']:>13}{r['examples_per_sec']:>15,.0f}"
                     f"{speedup:>9.2f}x{speedup / r['devices']:>11.0%}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per_device_batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warm", type=int, default=20, help="untimed steps first (compilation)")
    p.add_argument("--steps_per_loop", type=int, default=10)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--processes", type=int, default=2, help="the multi-process row: N processes x 1 device (0: none)")
    p.add_argument("--platform", default="cpu", help="JAX_PLATFORMS of the one-process rows (cpu, cuda, tpu)")
    p.add_argument("--child", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child, a.per_device_batch, a.warm, a.steps, a.steps_per_loop)
        return
    setups = [(d, 1) for d in a.devices] + ([(a.processes, a.processes)] if a.processes > 1 else [])
    rows = []
    for devices, processes in setups:
        with tempfile.TemporaryDirectory() as model_dir:
            rows.append(measure(devices, processes, a, model_dir))
    print(f"taxi wide-and-deep, per-device batch {a.per_device_batch}, {a.steps} timed steps after {a.warm}, "
          f"steps_per_loop {a.steps_per_loop}; {rows[0]['device_kind']}")
    print(format_table(rows))


if __name__ == "__main__":
    main()
