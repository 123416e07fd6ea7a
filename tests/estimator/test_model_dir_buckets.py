"""model_dir in a bucket: gs:// trains, resumes exactly (also after SIGKILL), keeps N checkpoints, writes
TensorBoard events, results and progress files, best_eval.json and the lock there; evaluate, predict, the
continuous evaluator and warm start read from it. s3:// is refused at construction (orbax cannot write
checkpoints there), while TensorBoard events on s3:// work.

Runs against fake-gcs-server and moto (tests/object_storage.py); skipped when those are not installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import object_storage
import optax
import pytest
from _toy import (
    VARIABLES,
    LossRecorder,
    input_fn,
    model_fn,
    numpy_forward,
    regression_data,
    variables_of,
)

from estimator import (
    BestExporter,
    Estimator,
    EstimatorError,
    RunConfig,
    UnsupportedCheckpointLocationError,
)
from estimator import model_dir_lock as lock_lib
from estimator.checkpoint import CheckpointStore
from estimator.eval_history import JOURNAL_FILE, RESULTS_FILE, read_eval_history
from estimator.exporter import BEST_EVAL_FILE
from estimator.model_dir_lock import LOCK_FILE, ModelDirLock, ModelDirLockError, read_holder
from estimator.summary import SummaryWriter
from estimator.training import EvalSpec, TrainSpec, continuous_evaluate, train_and_evaluate
from input_pipelines import fs

HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS = {"dropout": 0.25}  # the train rng must resume too
CONFIG = RunConfig(random_seed=1, save_checkpoints_steps=5, keep_checkpoint_max=2, save_summary_steps=2)


def _data(epochs=None):
    return input_fn(n=40, batch_size=4, epochs=epochs, shuffle_seed=5)


def _train(model_dir: str, max_steps: int, hooks=()) -> Estimator:
    est = Estimator(model_fn, model_dir, config=CONFIG, params=PARAMS)
    return est.train(_data(), max_steps=max_steps, hooks=list(hooks))


def _steps_in(model_dir: str) -> list[int]:
    """Step folders that are really in the store (not orbax's view of them)."""
    try:
        return sorted(int(n) for n in fs.listdir(fs.join(model_dir, "checkpoints")) if n.isdigit())
    except FileNotFoundError:
        return []


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for name in VARIABLES:
        assert np.array_equal(a[name], b[name]), f"{name} differs"


@pytest.fixture(scope="module")
def trained_gcs() -> str:
    """A gs:// model_dir trained to step 10 (checkpoints 5 and 10), shared by the tests that only read it."""
    reason = object_storage.gcs_missing()
    if reason:
        pytest.skip(f"GCS emulator unavailable: {reason}")
    model_dir = object_storage.new_bucket("gs") + "/model"
    _train(model_dir, 10)
    return model_dir


# ---------------------------------------------------------------- checkpoints: resume, keep-N, partial steps
def test_resume_on_gcs_equals_an_uninterrupted_local_run_keeps_n_and_ignores_a_partial_step(gcs_bucket, tmp_path):
    straight_losses = LossRecorder()
    straight = _train(str(tmp_path / "straight"), 20, [straight_losses])

    model_dir = gcs_bucket + "/model/"  # the trailing slash is dropped, the URL is never made absolute
    first = _train(model_dir, 10)
    assert first.model_dir == gcs_bucket + "/model"
    assert _steps_in(first.model_dir) == [5, 10]
    # A write killed half-way on a bucket: the objects of step 15 without orbax's commit markers.
    store = fs.filesystem(gcs_bucket)
    for url in fs.glob(first.model_dir + "/checkpoints/10/**"):
        if not url.endswith("commit_success.txt"):
            store.copy(url, url.replace("/checkpoints/10/", "/checkpoints/15/"))
    assert CheckpointStore(first.model_dir, read_only=True).all_steps() == [5, 10]

    resumed_losses = LossRecorder()
    resumed = _train(model_dir, 20, [resumed_losses])
    assert resumed.get_variable_value("global_step") == 20
    _same(variables_of(straight), variables_of(resumed))
    assert resumed_losses.losses == [(s, loss) for s, loss in straight_losses.losses if s > 10]
    assert _steps_in(resumed.model_dir) == [15, 20]  # keep_checkpoint_max=2, deleted from the bucket
    assert not os.path.exists("gs:"), "a bucket path was written as a local directory"


def _truncate_largest_data_object(step_url: str) -> None:
    objects = [u for u in fs.glob(step_url + "/state/**") if "/d/" in u]
    largest = max(objects, key=fs.getsize)
    fs.write_atomically(largest, fs.read_bytes(largest)[: fs.getsize(largest) // 2])


BUCKET_DAMAGES = {
    "_METADATA deleted": lambda step_url: fs.remove(step_url + "/state/_METADATA"),
    "a data object truncated": _truncate_largest_data_object,
}


@pytest.fixture(scope="module")
def straight_to_20(tmp_path_factory) -> dict[str, np.ndarray]:
    return variables_of(_train(str(tmp_path_factory.mktemp("straight") / "m"), 20))


@pytest.mark.parametrize("damage", list(BUCKET_DAMAGES))
def test_a_damaged_checkpoint_on_gcs_is_skipped_and_moved_aside(gcs_bucket, straight_to_20, damage, caplog):
    model_dir = gcs_bucket + "/damaged"
    _train(model_dir, 15)
    bad = model_dir + "/checkpoints/15"
    BUCKET_DAMAGES[damage](bad)
    with caplog.at_level(logging.WARNING):
        assert Estimator(model_fn, model_dir).evaluate(input_fn(n=8))["global_step"] == 10  # readers move nothing
    assert bad in caplog.text and fs.isdir(bad)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resumed = _train(model_dir, 20)
    assert bad in caplog.text and "corrupt_checkpoints" in caplog.text
    _same(straight_to_20, variables_of(resumed))
    assert _steps_in(model_dir) == [15, 20]  # 15 written again
    (moved,) = fs.listdir(model_dir + "/corrupt_checkpoints")
    assert moved.startswith("15-") and fs.isfile(f"{model_dir}/corrupt_checkpoints/{moved}/state/manifest.ocdbt")


def test_sigkilled_trainer_on_gcs_restarted_resumes_exactly(gcs_bucket, tmp_path):
    from _train_job import train

    max_steps = 100  # 20 checkpoints: the kill lands before the end also on a fast machine
    model_dir = gcs_bucket + "/killed"
    command = [sys.executable, os.path.join(HERE, "_train_job.py"), model_dir, str(max_steps)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while process.poll() is None and time.time() < deadline and not _steps_in(model_dir):
            time.sleep(0.05)
        time.sleep(random.Random(7).uniform(0.0, 0.3))
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read().decode()[-3000:]
    process.stderr.close()
    assert killed and process.returncode == -signal.SIGKILL, f"the job was not killed mid-way: {stderr}"
    assert 0 < _steps_in(model_dir)[-1] < max_steps
    # The lock of the killed trainer (same host, dead pid) is taken over on restart.
    assert read_holder(fs.join(model_dir, LOCK_FILE))["pid"] == process.pid

    finished = subprocess.run(command, capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    assert not fs.exists(fs.join(model_dir, LOCK_FILE))
    clean = train(str(tmp_path / "clean"), max_steps)
    resumed = Estimator(model_fn, model_dir)
    assert resumed.get_variable_value("global_step") == max_steps
    _same(variables_of(clean), variables_of(resumed))


# ---------------------------------------------------------------- reading a bucket model_dir
def test_evaluate_and_predict_read_the_bucket_and_results_are_one_object(trained_gcs):
    est = Estimator(model_fn, trained_gcs)
    x, y = regression_data(16, seed=3)
    predictions = np.concatenate([p["predictions"][None] for p in est.predict(
        input_fn(n=16, batch_size=4, seed=3, labels=False))])
    np.testing.assert_allclose(predictions, numpy_forward(variables_of(est), x), rtol=1e-5, atol=1e-6)

    for _ in range(2):  # the same step evaluated again replaces its line: the object is rewritten whole
        metrics = est.evaluate(input_fn(n=16, batch_size=4, seed=3), name="check")
    assert metrics["global_step"] == 10
    assert metrics["loss"] == pytest.approx(float(np.mean((predictions - y) ** 2)), rel=1e-5)
    history = read_eval_history(est.eval_dir("check"))
    assert [r["global_step"] for r in history] == [10]
    assert history[0]["loss"] == pytest.approx(metrics["loss"])
    assert fs.isfile(fs.join(trained_gcs, "eval_check", RESULTS_FILE))
    assert json.loads(fs.read_text(fs.join(trained_gcs, "run_config.json")))["params"] == PARAMS


def test_a_checkpoint_on_gcs_is_restored_once_and_again_when_written_anew(gcs_bucket, monkeypatch):
    restores: list[int] = []
    original = CheckpointStore.restore_arrays
    monkeypatch.setattr(CheckpointStore, "restore_arrays", lambda self, step: restores.append(step) or original(self, step))
    model_dir = gcs_bucket + "/cache"

    def predict(est):
        return np.concatenate([p["predictions"] for p in est.predict(
            input_fn(n=8, labels=False), yield_single_examples=False)])

    est = Estimator(model_fn, model_dir, config=RunConfig(random_seed=0)).train(_data(), max_steps=2)
    restores.clear()
    first, second = predict(est), predict(est)
    assert restores == [2]  # the kept checkpoint's identity (its metadata object's generation) did not change
    np.testing.assert_array_equal(first, second)
    fs.rmtree(model_dir)
    Estimator(model_fn, model_dir, config=RunConfig(random_seed=1)).train(_data(), max_steps=2)
    third = predict(est)  # the same step, written anew by another run
    assert restores == [2, 2] and not np.array_equal(first, third)


def test_tensorboard_reads_train_and_eval_events_from_the_bucket(trained_gcs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    est = Estimator(model_fn, trained_gcs)
    metrics = est.evaluate(input_fn(n=16, batch_size=4, seed=4), name="tb")

    def scalars(logdir: str, tag: str) -> list[tuple[int, float]]:
        acc = EventAccumulator(logdir)
        acc.Reload()
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    train_curve = scalars(trained_gcs, "loss")  # what `tensorboard --logdir gs://... --load_fast=false` reads
    assert train_curve and train_curve[-1][0] == 10
    assert scalars(est.eval_dir("tb"), "loss") == [(10, pytest.approx(metrics["loss"]))]
    local = tmp_path / "downloaded"
    fs.filesystem(trained_gcs).get(trained_gcs, str(local), recursive=True)
    assert scalars(str(local), "loss") == train_curve


def test_continuous_evaluator_sees_checkpoints_another_process_writes_to_the_bucket(gcs_bucket):
    model_dir = gcs_bucket + "/watched"
    trainer = subprocess.Popen([sys.executable, os.path.join(HERE, "_train_job.py"), model_dir, "20"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        est = Estimator(model_fn, model_dir)  # before any checkpoint exists: every listing must be fresh
        assert est.latest_checkpoint() is None
        spec = EvalSpec(input_fn(n=16, batch_size=4, seed=5), steps=None, name="watch", start_delay_secs=0,
                        throttle_secs=0)
        metrics, exports = continuous_evaluate(est, spec, max_steps=20, poll_secs=0.1, timeout_secs=120)
        assert trainer.wait(timeout=120) == 0, trainer.stderr.read().decode()[-3000:]
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        trainer.stderr.close()
    assert metrics is not None and metrics["global_step"] == 20 and exports == []
    journal = json.loads(fs.read_text(fs.join(est.eval_dir("watch"), JOURNAL_FILE)))
    assert journal["20"] == {"exports": {}, "final": True}
    assert [r["global_step"] for r in read_eval_history(est.eval_dir("watch"))] == sorted(int(s) for s in journal)


def test_warm_start_from_a_gcs_checkpoint(trained_gcs, tmp_path):
    frozen = {"optimizer": optax.sgd(0.0)}  # one step without change: the variables are the warm start's
    est = Estimator(model_fn, str(tmp_path), params=frozen, warm_start_from=trained_gcs + "/checkpoints/10")
    est.train(_data(), max_steps=1)
    _same(variables_of(est), variables_of(Estimator(model_fn, trained_gcs)))


# ---------------------------------------------------------------- train_and_evaluate, BestExporter's record
class _RecordOnlyBestExporter(BestExporter):
    """BestExporter deciding as usual; its export writes nothing (exports to buckets are tested elsewhere)."""

    def _export(self, estimator, export_path, checkpoint_path):
        return fs.join(export_path, fs.basename(checkpoint_path))


def test_train_and_evaluate_on_gcs_writes_progress_results_and_best_eval(gcs_bucket):
    model_dir = gcs_bucket + "/tae"
    est = Estimator(model_fn, model_dir, config=CONFIG, params=PARAMS)
    exporter = _RecordOnlyBestExporter(serving_input={"x": ((3,), "float32")}, metric_key="loss")
    spec = EvalSpec(input_fn(n=16, batch_size=4, seed=6), steps=None, every_n_steps=5, exporters=[exporter])
    metrics, _ = train_and_evaluate(est, TrainSpec(_data(), max_steps=10), spec)
    history = read_eval_history(est.eval_dir())
    assert [r["global_step"] for r in history] == [5, 10] and history[-1]["loss"] == pytest.approx(metrics["loss"])
    journal = json.loads(fs.read_text(fs.join(est.eval_dir(), JOURNAL_FILE)))
    assert sorted(journal) == ["10", "5"] and journal["10"]["final"]
    best = json.loads(fs.read_text(fs.join(model_dir, "export", exporter.name, BEST_EVAL_FILE)))
    winner = min(history, key=lambda r: r["loss"])
    assert best["eval_result"]["loss"] == pytest.approx(winner["loss"])
    assert best["export"] == str(winner["global_step"])


# ---------------------------------------------------------------- the lock
def test_a_second_trainer_on_the_same_gcs_model_dir_fails_naming_the_holder(gcs_bucket):
    model_dir = gcs_bucket + "/locked"
    with ModelDirLock(model_dir) as held:
        assert read_holder(held.path)["pid"] == os.getpid()
        with pytest.raises(ModelDirLockError, match=rf"host {socket.gethostname()}, pid {os.getpid()}.*{LOCK_FILE}"):
            Estimator(model_fn, model_dir).train(_data(epochs=1), max_steps=1)
    assert not fs.exists(held.path)


def test_lock_of_another_host_on_gcs_is_stale_by_the_object_age_and_breakable(gcs_bucket, caplog):
    path = fs.join(gcs_bucket, "m", LOCK_FILE)
    other = {"host": "elsewhere", "pid": 1, "start_time": time.time(), "token": "theirs"}
    fs.write_atomically(path, json.dumps(other))
    with pytest.raises(ModelDirLockError, match="host elsewhere, pid 1"):
        ModelDirLock(fs.dirname(path), timeout_secs=3600).acquire()
    time.sleep(1.5)
    with caplog.at_level(logging.WARNING, logger="estimator"), ModelDirLock(fs.dirname(path), timeout_secs=1.0):
        assert read_holder(path)["pid"] == os.getpid()
    assert "not refreshed" in caplog.text
    fs.write_atomically(path, json.dumps(other))
    with ModelDirLock(fs.dirname(path), break_lock=True):
        assert read_holder(path)["pid"] == os.getpid()
    assert not fs.exists(path)


def test_held_lock_on_gcs_is_refreshed_but_never_overwrites_a_lock_taken_over(gcs_bucket, monkeypatch):
    monkeypatch.setattr(lock_lib, "HEARTBEAT_SECS", 0.2)
    lock = ModelDirLock(gcs_bucket + "/beat")
    with lock:
        written = fs.modified_time(lock.path)
        deadline = time.time() + 10
        while fs.modified_time(lock.path) <= written and time.time() < deadline:
            time.sleep(0.1)
        assert fs.modified_time(lock.path) > written
        assert read_holder(lock.path)["pid"] == os.getpid()
        theirs = {"host": "elsewhere", "pid": 2, "start_time": time.time(), "token": "theirs"}
        fs.write_atomically(lock.path, json.dumps(theirs))  # broken by another trainer
        time.sleep(0.8)
        assert read_holder(lock.path) == theirs
    assert read_holder(lock.path) == theirs  # released without deleting their lock


# ---------------------------------------------------------------- other paths
def test_a_gcs_object_as_model_dir_is_refused(gcs_bucket):
    fs.write_atomically(gcs_bucket + "/file", b"x")
    with pytest.raises(EstimatorError, match="is a file, not a directory"):
        Estimator(model_fn, gcs_bucket + "/file")


def test_s3_model_dir_is_refused_at_construction_naming_the_version_and_alternatives(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    version = importlib.metadata.version("orbax-checkpoint")
    with pytest.raises(UnsupportedCheckpointLocationError,
                       match=rf"orbax-checkpoint {version} cannot write checkpoints to s3://.*gs://.*mount") as error:
        Estimator(model_fn, "s3://some-bucket/model")
    assert isinstance(error.value, ValueError)
    with pytest.raises(UnsupportedCheckpointLocationError):
        Estimator(model_fn, str(tmp_path / "m"), warm_start_from="s3://some-bucket/model")
    assert not os.path.exists(tmp_path / "s3:"), "orbax wrote part of a checkpoint into a local 's3:' folder"


def test_s3_model_dir_in_a_task_config_is_a_config_error():
    from estimator.config import ConfigError
    from models import task

    with pytest.raises(ConfigError, match=r"config key 'run.model_dir'.*orbax-checkpoint .* s3://"):
        task.load_task_config(os.path.join(HERE, "..", "..", "configs", "taxi_fare.yaml"),
                              ["run.model_dir=s3://some-bucket/model"], check_files=False)


def test_tensorboard_events_on_s3_are_readable(s3_bucket, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = SummaryWriter(s3_bucket + "/tb")
    for step in range(1, 4):
        writer.scalars({"loss": 1.0 / step}, step)
        writer.flush()  # each flush uploads the whole event file again: the object grows
    writer.close()
    assert len(fs.glob(s3_bucket + "/tb/events.out.tfevents.*")) == 1
    fs.filesystem(s3_bucket).get(s3_bucket + "/tb", str(tmp_path / "tb"), recursive=True)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]


def test_an_objects_age_and_identity_change_when_it_is_rewritten(bucket):
    """What the lock's staleness and the restore cache rely on, on both stores."""
    url = bucket + "/object"
    fs.write_atomically(url, b"first")
    identity, written = fs.identity(url), fs.modified_time(url)
    assert abs(written - time.time()) < 60
    time.sleep(1.1)  # S3's LastModified has a resolution of one second
    fs.write_atomically(url, b"second")
    assert fs.identity(url) != identity and fs.modified_time(url) > written
    with pytest.raises(FileNotFoundError):
        fs.modified_time(bucket + "/missing")
    with pytest.raises(FileNotFoundError):
        fs.identity(bucket + "/missing")
