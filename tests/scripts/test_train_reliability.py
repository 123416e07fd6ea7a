"""scripts/train.py under the ways users break training: a second trainer, signals, bad values, a full disk."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from _taxi_runs import CONFIG, REPO, env, overrides, run, script

from estimator import ModeKeys
from estimator.checkpoint import CheckpointStore
from estimator.model_dir_lock import LOCK_FILE
from models import task

sys.path.insert(0, str(REPO / "scripts"))
import evaluate  # noqa: E402
import export  # noqa: E402
import predict  # noqa: E402
import train  # noqa: E402

# Only training between the start and max_steps: no evaluation or export in between, one final checkpoint.
QUIET = ["eval.every_n_steps=null", "eval.throttle_secs=100000", "export.enabled=false",
         "run.save_checkpoints_steps=100000", "run.steps_per_loop=1"]


def _start(tmp_path: Path, args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, script("train"), "--config", CONFIG, *args], cwd=tmp_path,
                                env=env(), stdout=subprocess.DEVNULL, stderr=f)


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Waits until the process's log matches the regular expression ``text``."""
    deadline = time.time() + timeout
    while not re.search(text, log.read_text()):
        assert proc.poll() is None, f"exited {proc.returncode} before {text!r}:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no {text!r} after {timeout} s"
        time.sleep(0.05)


def _final_state(model_dir: Path) -> tuple[int, list[np.ndarray]]:
    store = CheckpointStore(str(model_dir), read_only=True)
    step = store.latest_step()
    return step, [np.asarray(x) for x in jax.tree.leaves(store.restore_arrays(step))]


def test_a_second_trainer_exits_1_naming_the_first_which_then_stops_on_sigterm(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    first_log = tmp_path / "first.log"
    first = _start(tmp_path, overrides(tiny_data, model_dir, *QUIET, "train.max_steps=10000000"), first_log)
    try:
        _wait_for(first_log, "Create new training state", first)
        second = run(script("train"), "--config", CONFIG,
                     *overrides(tiny_data, model_dir, *QUIET, "model.learning_rate=0.5"), cwd=tmp_path)
        assert second.returncode == 1, second.stderr[-3000:]
        assert f"pid {first.pid}" in second.stderr and "is locked by another trainer" in second.stderr
        assert "Traceback" not in second.stderr
        assert "learning_rate: 0.003" in (model_dir / "config.yaml").read_text()  # the first's config kept
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143, first_log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    log = first_log.read_text()
    assert "SIGTERM received" in log and "Run the same command again to resume" in log
    assert "Traceback" not in log
    step, _ = _final_state(model_dir)
    assert 0 < step < 10000000
    assert not (model_dir / LOCK_FILE).exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["SIGINT", "SIGTERM"])
def test_interrupted_by_a_signal_then_resumed_is_bit_identical(tiny_data, tmp_path, signum):
    steps = ["train.max_steps=1500"]
    straight = run(script("train"), "--config", CONFIG, *overrides(tiny_data, tmp_path / "straight", *QUIET, *steps),
                   cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    model_dir = tmp_path / "interrupted"
    log = tmp_path / "interrupted.log"
    proc = _start(tmp_path, overrides(tiny_data, model_dir, *QUIET, *steps), log)
    try:
        _wait_for(log, r"\b[1-9][0-9]*/1500 \[", proc)  # the progress bar moved: training runs
        proc.send_signal(signum)
        assert proc.wait(timeout=120) == 128 + signum, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    interrupted_at, _ = _final_state(model_dir)
    assert 0 < interrupted_at < 1500, "the run ended before the signal: make it longer"
    resumed = run(script("train"), "--config", CONFIG, *overrides(tiny_data, model_dir, *QUIET, *steps), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restored training state from {model_dir}/checkpoints/{interrupted_at}" in resumed.stderr
    step_a, leaves_a = _final_state(tmp_path / "straight")
    step_b, leaves_b = _final_state(model_dir)
    assert step_a == step_b == 1500
    assert all(np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b, strict=True))


def test_a_bad_config_value_exits_2_naming_the_key_without_a_traceback(tiny_data, tmp_path):
    """Each kind of bad value: tests/models/test_task.py; here the exit status and the output."""
    result = run(script("train"), "--config", CONFIG, *overrides(tiny_data, tmp_path / "run"), "data.batch_size=0",
                 cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "'data.batch_size'" in result.stderr and "Traceback" not in result.stderr


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs (skips where it cannot be mounted); unmounted afterwards."""
    path = tmp_path / "tmpfs"
    yield path
    subprocess.run(["umount", str(path)], capture_output=True)


def test_disk_full_says_no_space_left_naming_the_save_and_keeps_earlier_checkpoints(tiny_data, tmp_path, tmpfs):
    _mount_tmpfs(tmpfs, "1200k")
    model_dir = tmpfs / "run"
    result = run(script("train"), "--config", CONFIG,
                 *overrides(tiny_data, model_dir, "train.max_steps=100000", "run.save_checkpoints_steps=10",
                            "run.keep_checkpoint_max=100000", "export.enabled=false", "eval.every_n_steps=null",
                            "eval.throttle_secs=100000"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0]
    assert f"Could not save checkpoint {model_dir}/checkpoints/" in errors[0]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 60  # a few lines, not pages of library tracebacks
    step, _ = _final_state(model_dir)  # every complete checkpoint still reads back
    assert f"the latest complete checkpoint, {model_dir}/checkpoints/{step}, is intact" in errors[0]
    store = CheckpointStore(str(model_dir), read_only=True)
    for earlier in store.all_steps():
        store.restore_arrays(earlier)


def test_a_read_only_model_dir_still_evaluates_predicts_and_exports(tiny_data, tmp_path, tmpfs, capsys, caplog):
    _mount_tmpfs(tmpfs, "20m")
    model_dir = tmpfs / "run"
    sets = overrides(tiny_data, model_dir)[1:]
    config = task.load_task_config(CONFIG, sets)
    task.build_estimator(config).train(task.input_fn(config, ModeKeys.TRAIN), max_steps=20)
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remounted.stderr.decode().strip()}")
    with pytest.raises(OSError):
        (model_dir / "probe").write_text("")  # really read-only, also for root
    args = ["--config", CONFIG, "--set", *sets]

    assert evaluate.main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["global_step"] == 20 and "rmse" in metrics
    assert "results are returned but not saved" in caplog.text

    assert predict.main([*args, "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("predictions" in json.loads(line) for line in lines)

    assert export.main([*args, "--export_dir", str(tmp_path / "exports")]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert path.startswith(str(tmp_path / "exports")) and os.path.isdir(path)

    assert task.run_script(train.main, [*args, "train.max_steps=30"]) == 1  # training says why it cannot
    assert "is not writable" in capsys.readouterr().err
