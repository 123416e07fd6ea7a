"""The taxi job with its data and model_dir in a GCS bucket (the emulator): train, SIGKILL, resume,
export and serve from the bucket, equal to the same job run on local files."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from _taxi_runs import CONFIG, REPO, env, overrides, run, script

from input_pipelines import fs

sys.path.insert(0, str(REPO / "tests" / "estimator"))
from _model_server import Server  # noqa: E402

pytestmark = pytest.mark.slow

STEPS = 400
# Evaluation and export once, at the end; a checkpoint every 50 steps to be killed between.
SETTINGS = [f"train.max_steps={STEPS}", "eval.every_n_steps=null", "eval.throttle_secs=100000",
            "run.save_checkpoints_steps=50", "run.steps_per_loop=1"]
TRIP = {"pickuplon": -73.98, "pickuplat": 40.75, "dropofflon": -73.95, "dropofflat": 40.78, "passengers": 1}


def _upload(local_dir: Path, url: str) -> None:
    for path in sorted(glob.glob(str(local_dir / "*" / "*.csv"))):
        rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
        fs.write_atomically(fs.join(url, rel), Path(path).read_bytes())


def _wait_for_checkpoint(model_dir: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not fs.glob(f"{model_dir}/checkpoints/*/commit_success.txt"):
        assert proc.poll() is None, f"exited {proc.returncode} before a checkpoint:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no checkpoint in {model_dir} after {timeout} s"
        time.sleep(0.2)


def _served_prediction(base_path: str) -> float:
    server = Server(base_path, "taxi")
    try:
        reply = httpx.post(f"{server.url}/v1/models/taxi:predict", json={"instances": [TRIP]}, timeout=30)
        assert reply.status_code == 200, reply.text
        return float(np.ravel(json.loads(reply.text)["predictions"][0])[0])
    finally:
        server.stop()


def _final_params(model_dir: str) -> tuple[int, list[np.ndarray]]:
    import jax

    from estimator.checkpoint import CheckpointStore
    store = CheckpointStore(model_dir, read_only=True)
    step = store.latest_step()
    return step, [np.asarray(x) for x in jax.tree.leaves(store.restore_arrays(step))]


def test_taxi_in_a_gcs_bucket_killed_resumed_exported_and_served(tiny_data, tmp_path, gcs_bucket):
    straight_dir = tmp_path / "straight"
    straight = run(script("train"), "--config", CONFIG, *overrides(tiny_data, straight_dir, *SETTINGS),
                   cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    data, model_dir = f"{gcs_bucket}/data", f"{gcs_bucket}/runs/taxi"
    _upload(tiny_data, data)
    args = ["--config", CONFIG, *overrides(data, model_dir, *SETTINGS)]
    assert f"data.train_files={data}/train/*.csv" in args

    log = tmp_path / "killed.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, script("train"), *args], cwd=tmp_path, env=env(),
                                stdout=subprocess.DEVNULL, stderr=f)
    try:
        _wait_for_checkpoint(model_dir, proc, log)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at, _ = _final_params(model_dir)
    assert 0 < killed_at < STEPS, "the run ended before it was killed: make it longer"

    resumed = run(script("train"), *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restored training state from {model_dir}/checkpoints/" in resumed.stderr

    step_local, params_local = _final_params(str(straight_dir))
    step_bucket, params_bucket = _final_params(model_dir)
    assert step_local == step_bucket == STEPS
    assert all(np.array_equal(a, b) for a, b in zip(params_local, params_bucket, strict=True))

    assert fs.glob(f"{model_dir}/export/final/*/saved_model.json"), "no export in the bucket"
    assert fs.glob(f"{model_dir}/events.out.tfevents.*"), "no TensorBoard events in the bucket"
    served = _served_prediction(f"{model_dir}/export/final")
    expected = _served_prediction(str(straight_dir / "export" / "final"))
    assert served == pytest.approx(expected, rel=1e-6)
    assert 2.0 < served < 100.0  # a plausible fare in dollars
