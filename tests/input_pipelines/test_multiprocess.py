"""make_csv_dataset in a real multi-process JAX job (scripts/launch_local.py, CPU processes).

With the defaults (``seed=None``, shuffled files and rows) every row must be read exactly once
per epoch across all processes: the processes agree on the file order, and with fewer files
than processes they fall back to sharding rows. A restored iterator continues exactly.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = os.path.join(ROOT, "tests", "input_pipelines", "_shard_job.py")
LAUNCHER = os.path.join(ROOT, "scripts", "launch_local.py")


def _write_csvs(folder, rows_per_file: list[int]) -> str:
    """CSV files with a header and a unique ``id`` per row; returns their glob."""
    next_id = 0
    for k, rows in enumerate(rows_per_file):
        lines = ["id,x,label"] + [f"{i},{i * 0.5},{i % 7}" for i in range(next_id, next_id + rows)]
        (folder / f"part-{k:02d}.csv").write_text("\n".join(lines) + "\n")
        next_id += rows
    return str(folder / "*.csv")


def _run(tmp_path, data_glob: str, processes: int, *args: str) -> list[dict]:
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, LAUNCHER, "--num_processes", str(processes), "--grace_secs", "1",
                             "--", sys.executable, JOB, str(out), data_glob, *args],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = [json.loads((out / f"rows-{p}.json").read_text()) for p in range(processes)]
    assert [r["count"] for r in runs] == [processes] * processes
    return runs


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.slow
@pytest.mark.parametrize("rows_per_file", [[20 + 7 * k for k in range(12)], [333]], ids=["12files", "1file"])
def test_one_epoch_reads_every_row_exactly_once_across_processes(tmp_path, rows_per_file):
    data = _write_csvs(tmp_path, rows_per_file)
    runs = _run(tmp_path, data, 2, "eval", "--epochs", "1", "--cut", "3")
    seen = collections.Counter(i for r in runs for i in _flat(r["batches"]))
    assert sorted(seen) == list(range(sum(rows_per_file))) and set(seen.values()) == {1}
    assert all(r["batches"] for r in runs)  # every process has its share
    for r in runs:  # restored mid-epoch: exactly the rest
        assert r["resumed"] == r["batches"][3:]


@pytest.mark.slow
def test_training_with_one_file_shards_rows_every_epoch(tmp_path):
    """One file, 2 processes, endless input: 160 rows each per epoch = 10 batches of 16."""
    data = _write_csvs(tmp_path, [320])
    runs = _run(tmp_path, data, 2, "train", "--steps", "30", "--cut", "13")
    for epoch in range(3):
        rows = [i for r in runs for i in _flat(r["batches"][10 * epoch:10 * (epoch + 1)])]
        assert sorted(rows) == list(range(320)), f"epoch {epoch}"
    for r in runs:  # restored across the epoch boundary, with the seeds drawn at random
        assert r["resumed"] == r["batches"][13:]
