"""Checkpoints: exact resume (also after SIGKILL), keep_checkpoint_max, incomplete checkpoints ignored,
input positions per process, clear errors for a changed optimizer or model."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import optax
import pytest
from _toy import VARIABLES, input_fn, model_fn, variables_of

from estimator import CheckpointMismatchError, Estimator, Hook, RunConfig
from estimator.checkpoint import CheckpointCorruptError, CheckpointStore
from estimator.estimator import TrainingInterruptedError

HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS = {"dropout": 0.25}  # the train rng must resume too


def _steps_on_disk(model_dir: str) -> list[int]:
    folder = os.path.join(model_dir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def _train(model_dir: str, max_steps: int, config: RunConfig) -> Estimator:
    """A new Estimator on ``model_dir`` trained (or resumed) to ``max_steps`` on a shuffled endless input."""
    est = Estimator(model_fn, model_dir, config=config, params=PARAMS)
    return est.train(input_fn(n=40, batch_size=4, epochs=None, shuffle_seed=5), max_steps=max_steps)


def _assert_same_variables(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b) == sorted(VARIABLES)
    for name in VARIABLES:
        assert np.array_equal(a[name], b[name]), f"{name} differs after resuming"


@pytest.mark.parametrize(
    "config",
    [RunConfig(random_seed=1), RunConfig(random_seed=1, steps_per_loop=4, save_checkpoints_steps=8)],
    ids=["steps_per_loop=1", "steps_per_loop=4"],
)
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, config):
    straight = _train(str(tmp_path / "straight"), 100, config)
    _train(str(tmp_path / "resumed"), 40, config)
    resumed = _train(str(tmp_path / "resumed"), 100, config)  # a new Estimator object
    assert resumed.get_variable_value("global_step") == straight.get_variable_value("global_step") == 100
    _assert_same_variables(variables_of(straight), variables_of(resumed))
    if config.save_checkpoints_steps:
        assert _steps_on_disk(resumed.model_dir) == [72, 80, 88, 96, 100]


def test_without_a_restorable_input_position_the_run_differs(tmp_path):
    """Control for the test above: the comparison does see a replayed input."""
    config = RunConfig(random_seed=1)
    straight = _train(str(tmp_path / "straight"), 20, config)
    replayed = Estimator(model_fn, str(tmp_path / "replayed"), config=config, params=PARAMS)
    data = input_fn(n=40, batch_size=4, epochs=None, shuffle_seed=5)
    replayed.train(lambda: (batch for batch in data()), max_steps=10)  # a generator: no state()
    replayed.train(lambda: (batch for batch in data()), max_steps=20)  # reads the first batches again
    assert not np.array_equal(variables_of(straight)["dnn/logits/kernel"],
                              variables_of(replayed)["dnn/logits/kernel"])


def test_keep_checkpoint_max_and_checkpoint_path(tmp_path):
    config = RunConfig(save_checkpoints_steps=3, keep_checkpoint_max=2)
    est = Estimator(model_fn, str(tmp_path), config=config).train(input_fn(n=40, batch_size=4), max_steps=10)
    assert _steps_on_disk(est.model_dir) == [9, 10]
    assert est.latest_checkpoint() == os.path.join(est.model_dir, "checkpoints", "10")
    older = est.evaluate(input_fn(), checkpoint_path=os.path.join(est.model_dir, "checkpoints", "9"))
    assert older["global_step"] == 9
    assert est.evaluate(input_fn())["global_step"] == 10


def test_keep_checkpoint_max_none_keeps_all(tmp_path):
    config = RunConfig(save_checkpoints_steps=2, keep_checkpoint_max=None)
    est = Estimator(model_fn, str(tmp_path), config=config).train(input_fn(n=40, batch_size=4), max_steps=10)
    assert _steps_on_disk(est.model_dir) == [2, 4, 6, 8, 10]


def test_a_partially_written_checkpoint_is_never_picked(tmp_path):
    config = RunConfig(save_checkpoints_steps=5, keep_checkpoint_max=None)
    est = Estimator(model_fn, str(tmp_path), config=config).train(input_fn(n=40, batch_size=4), max_steps=10)
    folder = os.path.join(est.model_dir, "checkpoints")
    # what orbax leaves when killed while writing: a temporary folder, never renamed to its step
    for name in ("15.orbax-checkpoint-tmp", "20.orbax-checkpoint-tmp-1700000000"):
        partial = os.path.join(folder, name)
        shutil.copytree(os.path.join(folder, "10"), partial)
        shutil.rmtree(os.path.join(partial, "state"))
    est = Estimator(model_fn, str(tmp_path), config=config)
    assert est.latest_checkpoint() == os.path.join(folder, "10")
    assert est.get_variable_value("global_step") == 10
    assert est.evaluate(input_fn())["global_step"] == 10
    est.train(input_fn(n=40, batch_size=4, epochs=None), steps=2)
    assert est.get_variable_value("global_step") == 12


def test_single_process_checkpoint_holds_one_input_position_and_reads_the_old_layout(tmp_path):
    est = Estimator(model_fn, str(tmp_path)).train(input_fn(n=40, batch_size=4, epochs=None), max_steps=3)
    store = CheckpointStore(est.model_dir, read_only=True)
    assert store.restore_input_states(3) == [{"epoch": 0, "index": 12}]
    assert store.restore_input(3) == {"epoch": 0, "index": 12}
    # a checkpoint of the layout before per-process positions, {"iterator": state}, as it lies on disk
    with open(os.path.join(store.step_path(3), "input", "metadata"), "w", encoding="utf-8") as f:
        json.dump({"iterator": {"epoch": 1, "index": 4}}, f)
    assert CheckpointStore(est.model_dir, read_only=True).restore_input(3) == {"epoch": 1, "index": 4}


def test_a_checkpoint_of_another_process_count_restarts_the_input_with_a_warning(tmp_path, monkeypatch, caplog):
    from estimator import checkpoint

    # what two processes would have gathered, written by this one
    monkeypatch.setattr(checkpoint, "gather_input_states", lambda state: [state, {"epoch": 0, "index": 20}])
    store = CheckpointStore(str(tmp_path))
    store.save(4, {"w": np.ones(2, np.float32)}, {"epoch": 0, "index": 16})
    store.wait()
    assert store.restore_input_states(4) == [{"epoch": 0, "index": 16}, {"epoch": 0, "index": 20}]
    with caplog.at_level("WARNING", logger="estimator.checkpoint"):
        assert store.restore_input(4) is None
    assert "written by 2 processes, this job has 1" in caplog.text
    assert "input starts from its beginning" in caplog.text and "Run with 2 processes" in caplog.text
    store.close()


def test_resuming_with_another_optimizer_is_a_clear_error(tmp_path):
    old_dir, new_dir = str(tmp_path / "adam"), str(tmp_path / "momentum")
    data = input_fn(n=40, batch_size=4, epochs=None)
    Estimator(model_fn, old_dir).train(data, max_steps=2)  # adam
    momentum = {"optimizer": optax.sgd(0.01, momentum=0.9)}
    with pytest.raises(CheckpointMismatchError) as raised:
        Estimator(model_fn, old_dir, params=momentum).train(data, max_steps=4)
    message = str(raised.value)
    assert os.path.join(old_dir, "checkpoints", "2") in message and "(step 2)" in message
    assert "optimizer state in the checkpoint does not match the current optimizer" in message
    assert "in the checkpoint only: opt_state/0/count, opt_state/0/mu/dnn/hiddenlayer_0/bias" in message
    assert "not in the checkpoint: opt_state/0/trace/dnn/hiddenlayer_0/bias" in message
    assert f"warm_start_from={old_dir!r}" in message and "restore the original optimizer" in message
    assert _steps_on_disk(old_dir) == [2]  # nothing saved is lost

    # what the message advises: a new model_dir warm-started from the old weights
    est = Estimator(model_fn, new_dir, params=momentum, warm_start_from=old_dir).train(data, max_steps=1)
    assert est.get_variable_value("global_step") == 1


def test_resuming_a_changed_model_names_the_variables(tmp_path):
    data = input_fn(n=40, batch_size=4, epochs=None)
    Estimator(model_fn, str(tmp_path)).train(data, max_steps=1)
    with pytest.raises(CheckpointMismatchError, match=r"model's variables .* do not match the current model_fn"
                       r".*not in the checkpoint: params/dnn/hidden/bias, params/dnn/hidden/kernel"):
        Estimator(model_fn, str(tmp_path), params={"hidden_name": "hidden"}).train(data, max_steps=2)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    """Kills a training process 5 times (seeded random moments), restarts it, compares with a clean run."""
    from _train_job import train

    max_steps = 400
    model_dir = str(tmp_path / "killed")
    folder = os.path.join(model_dir, "checkpoints")
    command = [sys.executable, os.path.join(HERE, "_train_job.py"), model_dir, str(max_steps)]
    rng = random.Random(1234)
    kills = 0
    for _ in range(5):
        seen = _steps_on_disk(model_dir) if os.path.isdir(folder) else []
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # wait for this run's first new checkpoint, then kill at a random moment after it
            deadline = time.time() + 120
            while process.poll() is None and time.time() < deadline:
                if os.path.isdir(folder) and _steps_on_disk(model_dir) != seen:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.6))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                kills += 1
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read().decode()[-3000:]
        process.stderr.close()
    assert kills >= 3, "the job finished before it could be killed: make it longer"
    interrupted_at = _steps_on_disk(model_dir)[-1]
    assert interrupted_at < max_steps

    finished = subprocess.run(command, capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]

    clean = train(str(tmp_path / "clean"), max_steps)
    resumed = Estimator(model_fn, model_dir)
    assert resumed.get_variable_value("global_step") == max_steps
    _assert_same_variables(variables_of(clean), variables_of(resumed))


def test_reading_checkpoints_logs_no_warnings(tmp_path, caplog):
    Estimator(model_fn, str(tmp_path), RunConfig(save_checkpoints_steps=2)).train(input_fn(), max_steps=2)
    with caplog.at_level("WARNING"):
        store = CheckpointStore(str(tmp_path), read_only=True)
        assert store.all_steps() == [2]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= 30]


# ---------------------------------------------------------------- damaged checkpoints


def _empty_dir(path: str) -> None:
    shutil.rmtree(path)
    os.makedirs(path)


def _truncate_largest_data_file(path: str) -> None:
    """Half of the largest file of the merged OCDBT store (``state/d/``: what a restore reads)."""
    data = os.path.join(path, "state", "d")
    files = [os.path.join(data, name) for name in os.listdir(data)]
    largest = max(files, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)


def _truncate_all_data_files(path: str) -> None:
    for root, _, names in os.walk(os.path.join(path, "state")):
        for name in names:
            if os.path.basename(root) == "d":
                with open(os.path.join(root, name), "r+b") as f:
                    f.truncate(3)


DAMAGES = {
    "empty step dir": _empty_dir,
    "state item missing": lambda p: shutil.rmtree(os.path.join(p, "state")),
    "one data file truncated": _truncate_largest_data_file,
    "all data files truncated": _truncate_all_data_files,
    "_METADATA deleted": lambda p: os.remove(os.path.join(p, "state", "_METADATA")),
    "input JSON deleted": lambda p: shutil.rmtree(os.path.join(p, "input")),
    "input JSON truncated": lambda p: open(os.path.join(p, "input", "metadata"), "w").write('{"itera'),
    "meta JSON truncated": lambda p: open(os.path.join(p, "meta", "metadata"), "w").write("{"),
}
CONFIG = RunConfig(random_seed=1, save_checkpoints_steps=10, keep_checkpoint_max=None)


@pytest.fixture(scope="module")
def trained_to_30(tmp_path_factory):
    """A model_dir with checkpoints 10, 20, 30, and the variables of an uninterrupted run to 40."""
    base = tmp_path_factory.mktemp("damaged")
    _train(str(base / "pristine"), 30, CONFIG)
    return str(base / "pristine"), variables_of(_train(str(base / "straight"), 40, CONFIG))


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, trained_to_30, damage, caplog):
    pristine, straight = trained_to_30
    model_dir = str(tmp_path / "m")
    shutil.copytree(pristine, model_dir)
    bad = os.path.join(model_dir, "checkpoints", "30")
    DAMAGES[damage](bad)

    reader = Estimator(model_fn, model_dir, config=CONFIG, params=PARAMS)
    with caplog.at_level(logging.WARNING):
        assert reader.evaluate(input_fn())["global_step"] == 20  # readers fall back without moving anything
    assert bad in caplog.text
    assert os.path.isdir(bad)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resumed = _train(model_dir, 40, CONFIG)  # resumes from 20: same result as never interrupted
    assert bad in caplog.text and "corrupt_checkpoints" in caplog.text
    assert "was the model changed" not in caplog.text
    _assert_same_variables(straight, variables_of(resumed))
    assert _steps_on_disk(model_dir) == [10, 20, 30, 40]
    assert os.listdir(os.path.join(model_dir, "corrupt_checkpoints"))[0].startswith("30-")


def test_an_explicitly_named_damaged_checkpoint_is_an_error_naming_it(tmp_path, trained_to_30):
    model_dir = str(tmp_path / "m")
    shutil.copytree(trained_to_30[0], model_dir)
    bad = os.path.join(model_dir, "checkpoints", "20")
    _truncate_all_data_files(bad)
    est = Estimator(model_fn, model_dir, config=CONFIG, params=PARAMS)
    with pytest.raises(CheckpointCorruptError, match=f"Checkpoint {bad} is incomplete or damaged"):
        est.evaluate(input_fn(), checkpoint_path=bad)


def test_when_every_checkpoint_is_damaged_training_fails_naming_them(tmp_path, trained_to_30):
    model_dir = str(tmp_path / "m")
    shutil.copytree(trained_to_30[0], model_dir)
    for step in (10, 20, 30):
        _empty_dir(os.path.join(model_dir, "checkpoints", str(step)))
    with pytest.raises(CheckpointCorruptError, match=r"Every checkpoint in .*checkpoints \(steps \[10, 20, 30\]\)"):
        _train(model_dir, 40, CONFIG)


def test_adam_to_adamw_on_resume_is_a_mismatch_error_not_orbaxs(tmp_path):
    data = input_fn(n=40, batch_size=4, epochs=None)
    Estimator(model_fn, str(tmp_path)).train(data, max_steps=2)  # adam
    with pytest.raises(CheckpointMismatchError) as raised:
        Estimator(model_fn, str(tmp_path), params={"optimizer": optax.adamw(0.01)}).train(data, max_steps=4)
    message = str(raised.value)
    assert "optimizer" in message and "adam -> adamw" in message and "warm_start_from" in message
    assert os.path.join(str(tmp_path), "checkpoints", "2") in message
    assert _steps_on_disk(str(tmp_path)) == [2]


def test_damage_only_the_full_restore_finds_still_falls_back(tmp_path, trained_to_30, monkeypatch, caplog):
    """Damage the metadata checks miss is found when the state is restored; training starts from 20."""
    pristine, straight = trained_to_30
    model_dir = str(tmp_path / "m")
    shutil.copytree(pristine, model_dir)
    bad = os.path.join(model_dir, "checkpoints", "30")
    _truncate_largest_data_file(bad)
    monkeypatch.setattr(CheckpointStore, "_readable", lambda self, step: True)
    with caplog.at_level(logging.WARNING):
        resumed = _train(model_dir, 40, CONFIG)
    assert f"Checkpoint {bad} is incomplete or damaged" in caplog.text and "Falling back" in caplog.text
    _assert_same_variables(straight, variables_of(resumed))


# ---------------------------------------------------------------- stop signals


class _SignalAt(Hook):
    """Sends ``signum`` to this process after step ``step`` (``times`` times: the later ones while saving)."""

    def __init__(self, step: int, signum: int, times: int = 1):
        self.step, self.signum, self.times = step, signum, times

    def after_run(self, run_context, values):
        """Signals once the step is reached."""
        if values.step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_at_the_step_boundary_and_resumes_bit_identically(tmp_path, signum):
    config = RunConfig(random_seed=1, save_checkpoints_steps=100)
    straight = _train(str(tmp_path / "straight"), 40, config)
    model_dir = str(tmp_path / "signalled")
    est = Estimator(model_fn, model_dir, config=config, params=PARAMS)
    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterruptedError) as raised:
        est.train(input_fn(n=40, batch_size=4, epochs=None, shuffle_seed=5), max_steps=40,
                  hooks=[_SignalAt(13, signum, times=3)])
    assert signal.getsignal(signum) is before  # the handlers are put back
    assert raised.value.exit_code == 128 + signum and raised.value.step == 13
    assert raised.value.path == os.path.join(model_dir, "checkpoints", "13")
    assert _steps_on_disk(model_dir) == [13]
    resumed = _train(model_dir, 40, config)
    _assert_same_variables(variables_of(straight), variables_of(resumed))
