"""Multi-process training of the taxi model (scripts/launch_local.py, fake CPU devices).

* 2 processes x 2 devices, each reading its own file shard, train like 1 process
  x 4 devices reading both shards into the same global batches.
* A 2-process run killed mid-way and restarted ends exactly like an
  uninterrupted one: every process resumes its own input position.
* Time-based checkpoints are decided by process 0 for all processes.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from estimator.checkpoint import CheckpointStore
from models import taxi_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = os.path.join(ROOT, "tests", "estimator", "_taxi_job.py")
LAUNCHER = os.path.join(ROOT, "scripts", "launch_local.py")
STEPS = 8
KILL_AT = 5  # after the checkpoint of step 2 is complete (a save waits for the previous one)


def _launch(model_dir: str, data_glob: str, num_processes: int, devices_per_process: int,
            *job_args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, LAUNCHER, "--num_processes", str(num_processes), "--devices_per_process",
               str(devices_per_process), "--grace_secs", "1", "--", sys.executable, JOB, model_dir, data_glob,
               str(STEPS), *job_args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as launcher:
        try:
            out, err = launcher.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            launcher.terminate()  # the launcher then stops its processes (SIGTERM, then SIGKILL)
            out, err = launcher.communicate(timeout=60)
            pytest.fail(f"the job hung for 150 s: {out[-3000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(command, launcher.returncode, out, err)


def _train(model_dir: str, data_glob: str, num_processes: int, devices_per_process: int, *job_args: str) -> str:
    result = _launch(model_dir, data_glob, num_processes, devices_per_process, *job_args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _steps_on_disk(model_dir: str) -> list[int]:
    return sorted(int(name) for name in os.listdir(os.path.join(model_dir, "checkpoints")) if name.isdigit())


def _state(model_dir: str, step: int) -> dict[str, np.ndarray]:
    """Every array of the training state at ``step`` (params, optimizer slots, step, rng) by path."""
    state = CheckpointStore(model_dir, read_only=True).restore_arrays(step)
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


@pytest.fixture(scope="module")
def taxi_files(tmp_path_factory) -> str:
    """4 CSV shards x 200 rows of synthetic taxi trips; returns their glob."""
    folder = tmp_path_factory.mktemp("taxi")
    taxi_data.write_taxi_shards(str(folder), rows=800, shards=4, seed=1)
    return str(folder / "*.csv")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, taxi_files) -> tuple[str, str]:
    """An uninterrupted run of 2 processes x 2 devices: (model_dir, its output)."""
    model_dir = str(tmp_path_factory.mktemp("two") / "model")
    return model_dir, _train(model_dir, taxi_files, num_processes=2, devices_per_process=2)


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batches(tmp_path, taxi_files, two_process_run):
    two, out = two_process_run
    assert "[p0] process 0 of 2, devices 4" in out and "[p1] process 1 of 2, devices 4" in out
    assert "[p0] done" in out and "[p1] done" in out
    one = str(tmp_path / "one")
    out = _train(one, taxi_files, num_processes=1, devices_per_process=4)
    assert "[p0] process 0 of 1, devices 4" in out

    got, want = _state(two, STEPS), _state(one, STEPS)
    params = sorted(k for k in want if k.startswith("['params']"))
    assert len(params) > 10 and sorted(got) == sorted(want)
    assert int(got["['step']"]) == STEPS
    for name in params:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    assert _steps_on_disk(two) == [2, 4, 6, 8]
    # Summaries come from process 0 only: one event file.
    assert len(glob.glob(os.path.join(two, "events.out.tfevents.*"))) == 1
    # Each process saved its own input position; the single process saved both pipelines'.
    two_positions = CheckpointStore(two, read_only=True).restore_input_states(STEPS)
    (one_position,) = CheckpointStore(one, read_only=True).restore_input_states(STEPS)
    assert two_positions == one_position["pipelines"]
    assert two_positions[0] != two_positions[1]


@pytest.mark.slow
def test_a_killed_run_resumes_every_process_at_its_own_input_position(tmp_path, taxi_files, two_process_run):
    straight, _ = two_process_run
    killed = str(tmp_path / "killed")
    crash = _launch(killed, taxi_files, 2, 2, "--kill_at", str(KILL_AT))
    assert crash.returncode != 0 and f"[p1] killing process 1 at step {KILL_AT}" in crash.stdout, crash.stdout[-3000:]
    resumed_from = _steps_on_disk(killed)[-1]
    assert 2 <= resumed_from < KILL_AT

    out = _train(killed, taxi_files, num_processes=2, devices_per_process=2)
    assert "[p0] done" in out and "[p1] done" in out
    got, want = _state(killed, STEPS), _state(straight, STEPS)
    assert sorted(got) == sorted(want)
    for name in want:  # parameters, optimizer slots, step and rng: bit for bit
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert (CheckpointStore(killed, read_only=True).restore_input_states(STEPS)
            == CheckpointStore(straight, read_only=True).restore_input_states(STEPS))


@pytest.mark.slow
def test_time_based_checkpoints_are_taken_by_all_processes_together(tmp_path, taxi_files):
    """Process 0's clock runs a second ahead of process 1's: they still save at the same steps (no hang)."""
    model_dir = str(tmp_path / "timed")
    out = _train(model_dir, taxi_files, 2, 2, "--checkpoint_secs", "1.0")
    assert "[p0] done" in out and "[p1] done" in out
    steps = _steps_on_disk(model_dir)
    assert steps[-1] == STEPS and len(steps) >= 2, steps  # one by time, one at the end
    assert all(s % 2 == 0 for s in steps), steps  # checked on the summary cadence (every 2 steps)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_all_at_the_same_step_and_resumes_exactly(tmp_path, taxi_files,
                                                                             two_process_run):
    straight, _ = two_process_run
    preempted = str(tmp_path / "preempted")
    stopped = _launch(preempted, taxi_files, 2, 2, "--sigterm_at", "3")
    out = stopped.stdout
    assert stopped.returncode == 143 and "[p1] SIGTERM to process 1 at step 3" in out, out[-3000:]
    # process 0 never got the signal: it learns of it at the next agreement (the summary cadence, step 4)
    assert "[p0] interrupted at step 4" in out and "[p1] interrupted at step 4" in out, out[-3000:]
    assert _steps_on_disk(preempted)[-1] == 4

    out = _train(preempted, taxi_files, num_processes=2, devices_per_process=2)
    assert "[p0] done" in out and "[p1] done" in out
    got, want = _state(preempted, STEPS), _state(straight, STEPS)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.slow
def test_two_processes_with_data_and_model_dir_in_a_gcs_bucket_equal_the_local_run(gcs_bucket, taxi_files,
                                                                                    two_process_run):
    from input_pipelines import fs
    local, _ = two_process_run
    for path in sorted(glob.glob(taxi_files)):
        with open(path, "rb") as f:
            fs.write_atomically(f"{gcs_bucket}/data/{os.path.basename(path)}", f.read())
    model_dir = f"{gcs_bucket}/model"
    out = _train(model_dir, f"{gcs_bucket}/data/*.csv", num_processes=2, devices_per_process=2)
    assert "[p0] done" in out and "[p1] done" in out
    got, want = _state(model_dir, STEPS), _state(local, STEPS)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert CheckpointStore(model_dir, read_only=True).restore_input_states(STEPS) == \
        CheckpointStore(local, read_only=True).restore_input_states(STEPS)
    assert len(fs.glob(f"{model_dir}/events.out.tfevents.*")) == 1  # process 0 only
