"""Multi-process evaluate / predict over uneven shares (scripts/launch_local.py, fake CPU devices).

2 processes x 2 devices evaluate ``make_csv_dataset`` input with its defaults: one CSV of 333
rows (rows sharded: 167 and 166, last batches of 7 and 6 rows, not divisible by the devices),
3 files of 150 / 101 / 82 rows (files sharded: 251 and 82 rows, one process runs out 10 batches
earlier), a 1-row file (process 1 has no batch at all) and a header-only file (no process has
a batch: an error on both, no hang). The metrics must be those of all rows, computed here with
numpy, equal on every process and equal to one process's evaluation; ``predict`` yields every
row once, each process its own. Then the 2 processes train on the 333-row CSV (rows sharded)
and evaluate / predict again from the checkpoint, which every process restores.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = os.path.join(ROOT, "tests", "estimator", "_eval_job.py")
LAUNCHER = os.path.join(ROOT, "scripts", "launch_local.py")
DATASETS = {"one": [333], "three": [150, 101, 82], "tiny": [1], "empty": [0]}
TRAIN_STEPS = 5


def _write(folder, rows_per_file: list[int]) -> str:
    """CSV files with a header, a unique ``id`` per row, ``x`` and a ``label``; returns their glob."""
    folder.mkdir()
    start = 0
    for k, rows in enumerate(rows_per_file):
        ids = np.arange(start, start + rows)
        frame = pd.DataFrame({"id": ids, "x": np.round((ids * 37 % 101) * 0.03 - 1.5, 4),
                              "label": np.round(np.sin(ids) + 1.0, 6)})
        frame.to_csv(folder / f"part-{k}.csv", index=False)
        start += rows
    return str(folder / "*.csv")


def _launch(out, data: dict[str, str], processes: int, *extra: str) -> dict[str, list[dict]]:
    """Runs the job; returns its per-process outputs by data set name (``trained-`` ones too)."""
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, LAUNCHER, "--num_processes", str(processes), "--devices_per_process", "2",
               "--grace_secs", "1", "--", sys.executable, JOB, str(out), *[f"{k}={v}" for k, v in data.items()],
               *extra]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the job hung: {str(error.stdout)[-3000:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = sorted({f.rsplit("-", 1)[0] for f in os.listdir(out) if f.endswith(".json")})
    return {n: [json.loads((out / f"{n}-{p}.json").read_text()) for p in range(processes)] for n in names}


def _rows(data_glob: str) -> pd.DataFrame:
    """All rows of the files, by id (pandas reads them: the oracle does not use our reader)."""
    return pd.concat([pd.read_csv(f) for f in sorted(glob.glob(data_glob))]).set_index("id").sort_index()


def _oracle(rows: pd.DataFrame, weights: dict[str, float], batches: list[list[int]]) -> dict[str, float]:
    """The metrics of all ``rows`` in float64 (predictions in float32, as the model computes them)."""
    x, y = rows["x"].to_numpy(np.float32), rows["label"].to_numpy(np.float32).astype(np.float64)
    p = (x * np.float32(weights["w"]) + np.float32(weights["b"])).astype(np.float64)
    pred = pd.Series(p, index=rows.index)
    positive, predicted_positive = y > 1.0, p > 0.0  # sigmoid(p) > 0.5
    err = p - y
    return {
        "rmse": np.sqrt(np.mean(err ** 2)),
        "mae": np.mean(np.abs(err)),
        "mean_id": float(np.mean(rows.index.to_numpy())),
        "precision": np.sum(positive & predicted_positive) / max(1, np.sum(predicted_positive)),
        # tf.estimator's loss: the mean of the per-batch mean losses, over every process's batches
        "loss": np.mean([np.mean((pred[b].to_numpy() - rows["label"][b].to_numpy(np.float32)) ** 2)
                         for b in batches]),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The job with 2 processes (then trained and evaluated again) and with 1: (data globs, outputs)."""
    folder = tmp_path_factory.mktemp("eval")
    data = {name: _write(folder / name, rows) for name, rows in DATASETS.items()}
    two = _launch(folder / "out-2", data, 2, "--train_steps", str(TRAIN_STEPS), "--train_data", data["one"])
    one = _launch(folder / "out-1", data, 1)
    return data, two, one


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "three", "tiny", "trained-one", "trained-tiny"])
def test_multi_process_evaluation_is_exact_over_uneven_shares(runs, name):
    data, two, one = runs
    rows = _rows(data[name.removeprefix("trained-")])
    outputs = two[name]
    batches = [b for out in outputs for b in out["batches"]]
    # every row was evaluated exactly once: nothing padded, repeated or dropped
    assert sorted(i for b in batches for i in b) == rows.index.tolist()
    if name.endswith("tiny"):
        assert outputs[1]["batches"] == []  # process 1 had no input at all
    results = outputs[0]["results"]
    assert all(out["results"] == results for out in outputs)  # the same on every process
    want = _oracle(rows, outputs[0]["weights"], batches)
    for key, value in want.items():
        np.testing.assert_allclose(results[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert results["global_step"] == (TRAIN_STEPS if name.startswith("trained-") else 0)
    if name.startswith("trained-"):
        assert outputs[0]["weights"] != {"w": 0.7, "b": -0.2}
        return
    # one process over the same rows: the same metrics (loss by its own batches)
    single = one[name][0]
    single_want = _oracle(rows, single["weights"], single["batches"])
    for key in results:
        if key != "loss":
            np.testing.assert_allclose(single["results"][key], results[key], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(single["results"]["loss"], single_want["loss"], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "three"])
def test_evaluation_steps_count_the_batches_of_every_process(runs, name):
    data, two, _ = runs
    rows = _rows(data[name])
    outputs = [out["steps2"] for out in two[name]]
    assert [len(out["batches"]) for out in outputs] == [2, 2]  # 2 global steps: 2 batches on every process
    batches = [b for out in outputs for b in out["batches"]]
    ids = sorted(i for b in batches for i in b)
    assert len(ids) == 64 and len(set(ids)) == 64
    results = outputs[0]["results"]
    assert outputs[1]["results"] == results
    want = _oracle(rows.loc[ids], two[name][0]["weights"], batches)
    for key, value in want.items():
        np.testing.assert_allclose(results[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "three", "tiny", "trained-one"])
def test_multi_process_prediction_yields_every_row_once_on_its_own_process(runs, name):
    data, two, _ = runs
    rows = _rows(data[name.removeprefix("trained-")])
    outputs = two[name]
    counts = collections.Counter(i for out in outputs for i, _ in out["predicted"])
    assert sorted(counts) == rows.index.tolist() and set(counts.values()) == {1}
    if name != "tiny":
        assert all(out["predicted"] for out in outputs)
    weights = outputs[0]["weights"]
    got = dict(p for out in outputs for p in out["predicted"])
    want = rows["x"].to_numpy(np.float32) * np.float32(weights["w"]) + np.float32(weights["b"])
    np.testing.assert_allclose([got[i] for i in rows.index], want, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_evaluation_without_any_rows_fails_on_every_process(runs):
    _, two, one = runs
    for outputs in (two["empty"], two["trained-empty"]):
        assert [out["error"] for out in outputs] == [
            "evaluate: input_fn produced no batches on any of the 2 processes."] * 2
        assert all(out["predicted"] == [] for out in outputs)
    assert one["empty"][0]["error"] == "evaluate: input_fn produced no batches."
