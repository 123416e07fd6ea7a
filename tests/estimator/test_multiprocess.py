"""2 processes x 2 fake CPU devices train like 1 process x 4 devices on the same global batches."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = os.path.join(ROOT, "tests", "estimator", "_multiprocess_job.py")
LAUNCHER = os.path.join(ROOT, "scripts", "launch_local.py")
STEPS = 6


def _train(model_dir: str, num_processes: int, devices_per_process: int) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, LAUNCHER, "--num_processes", str(num_processes), "--devices_per_process",
         str(devices_per_process), "--", sys.executable, JOB, model_dir, str(STEPS)],
        capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _variables(model_dir: str) -> dict[str, np.ndarray]:
    from _multiprocess_job import model_fn

    from estimator import Estimator

    est = Estimator(model_fn, model_dir=model_dir)
    return {name: est.get_variable_value(name) for name in est.get_variable_names()}


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    out = _train(two, num_processes=2, devices_per_process=2)
    assert "[p0] process 0 of 2, devices 4" in out and "[p1] process 1 of 2, devices 4" in out
    assert "[p0] done" in out and "[p1] done" in out
    out = _train(one, num_processes=1, devices_per_process=4)
    assert "[p0] process 0 of 1, devices 4" in out

    got, want = _variables(two), _variables(one)
    assert sorted(got) == sorted(want) == ["global_step", "hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    assert int(got["global_step"]) == STEPS
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(two, "checkpoints", "[0-9]*")))
    assert steps == [STEPS // 2, STEPS]
    # Summaries come from process 0 only: one event file.
    assert len(glob.glob(os.path.join(two, "events.out.tfevents.*"))) == 1
