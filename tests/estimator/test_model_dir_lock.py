"""One trainer per model_dir: the lock file, its stale rules, and Estimator.train holding it."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from _toy import input_fn, model_fn

from estimator import Estimator, EstimatorError, RunConfig
from estimator.model_dir_lock import LOCK_FILE, ModelDirLock, ModelDirLockError, read_holder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(model_dir, **holder) -> str:
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    with open(path, "w") as f:
        json.dump(holder, f)
    return path


def test_second_lock_fails_naming_the_holder_and_the_first_releases_on_exception(tmp_path):
    first = ModelDirLock(str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"), first:
        holder = read_holder(first.path)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(ModelDirLockError) as error:
            ModelDirLock(str(tmp_path)).acquire()
        assert f"pid {os.getpid()}" in str(error.value) and socket.gethostname() in str(error.value)
        assert first.path in str(error.value)
        raise RuntimeError("boom")
    assert not os.path.exists(first.path)


def test_lock_is_reentrant(tmp_path):
    lock = ModelDirLock(str(tmp_path))
    with lock, lock:
        pass
    assert os.path.exists(lock.path) is False


def test_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _dead_pid()
    _plant(tmp_path, host=socket.gethostname(), pid=pid, start_time=time.time())
    with caplog.at_level(logging.WARNING, logger="estimator"), ModelDirLock(str(tmp_path)) as lock:
        assert read_holder(lock.path)["pid"] == os.getpid()
    assert f"pid {pid}" in caplog.text and "no longer alive" in caplog.text


def test_lock_of_another_host_is_honoured_until_it_times_out_or_is_broken(tmp_path, caplog):
    path = _plant(tmp_path, host="other-host", pid=1, start_time=time.time())
    with pytest.raises(ModelDirLockError, match="other-host"):
        ModelDirLock(str(tmp_path), timeout_secs=60).acquire()
    with ModelDirLock(str(tmp_path), timeout_secs=60, break_lock=True):
        pass
    path = _plant(tmp_path, host="other-host", pid=1, start_time=time.time() - 7200)
    old = time.time() - 7200
    os.utime(path, (old, old))
    with caplog.at_level(logging.WARNING, logger="estimator"), ModelDirLock(str(tmp_path), timeout_secs=3600):
        pass
    assert "not refreshed" in caplog.text


def test_a_second_trainer_on_the_model_dir_fails_and_leaves_the_checkpoints_alone(tmp_path):
    model_dir = str(tmp_path / "m")
    first = Estimator(model_fn, model_dir, config=RunConfig(random_seed=1))
    first.train(input_fn(n=32, batch_size=8), max_steps=4)
    before = first.get_variable_value("dnn/logits/kernel")
    second = Estimator(model_fn, model_dir, config=RunConfig(random_seed=2), params={"learning_rate": 0.5})
    with first.writer_lock():  # the first trainer is still running
        with pytest.raises(ModelDirLockError, match=f"pid {os.getpid()}"):
            second.train(input_fn(n=32, batch_size=8, epochs=None), max_steps=8)
    assert np.array_equal(first.get_variable_value("dnn/logits/kernel"), before)
    assert first.get_variable_value("global_step") == 4
    second.train(input_fn(n=32, batch_size=8, epochs=None), max_steps=8)  # free again: the lock was released
    assert second.get_variable_value("global_step") == 8
    assert not os.path.exists(os.path.join(model_dir, LOCK_FILE))


def test_readers_need_no_lock(tmp_path):
    model_dir = str(tmp_path / "m")
    est = Estimator(model_fn, model_dir)
    est.train(input_fn(n=16, batch_size=8), max_steps=2)
    with est.writer_lock():
        reader = Estimator(model_fn, model_dir)
        assert reader.evaluate(input_fn(n=16, batch_size=8))["global_step"] == 2
        assert len(list(reader.predict(input_fn(n=16, batch_size=8, labels=False)))) == 16


def test_a_lock_whose_pid_was_reused_by_a_newer_process_is_stale(tmp_path):
    if not os.path.isdir(f"/proc/{os.getpid()}"):
        pytest.skip("needs /proc")
    # this process, but "taken" long before it started: the pid was reused
    _plant(tmp_path, host=socket.gethostname(), pid=os.getpid(), start_time=time.time() - 10 * 365 * 86400)
    with ModelDirLock(str(tmp_path)) as lock:
        assert read_holder(lock.path)["start_time"] > time.time() - 60


def test_a_model_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(EstimatorError, match="is a file, not a directory"):
        Estimator(model_fn, str(tmp_path / "f"))
