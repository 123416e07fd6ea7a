"""Property-based tests (hypothesis): sharding over processes and exact resume, against pyarrow.

Generated Parquet files (several row groups, nulls), file and process counts, seeds (None
included), epochs, batch sizes and restore points. Processes are simulated through the public
`shard(num_shards, index)` API; with `seed=None` they agree on their seed as in a real
multi-process job (the job seed, here fixed by the test instead of broadcast by process 0).
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import input_pipelines._seeds as seeds
from input_pipelines import Dataset, ParquetDataset

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _write(folder, rows_per_file: list[int], group: int) -> list[str]:
    """Parquet files with a unique int `id`, a float `f` and an int `i` with nulls every 3rd row."""
    paths, start = [], 0
    for k, rows in enumerate(rows_per_file):
        ids = np.arange(start, start + rows)
        table = pa.table({"id": ids,
                          "f": pa.array([None if j % 3 == 0 else j / 2 for j in ids], pa.float64()),
                          "i": pa.array([None if j % 3 == 1 else j for j in ids], pa.int64())})
        path = folder / f"part-{k:02d}.parquet"
        pq.write_table(table, path, row_group_size=group)
        paths.append(str(path))
        start += rows
    return paths


def _pipeline(paths, processes: int, index: int, seed, epochs: int, batch: int, block) -> Dataset:
    """Files sharded when there are enough, else rows (tf.data's AUTO policy)."""
    def reader(path):
        return ParquetDataset(path, batch_rows=7, column_defaults={"i": -1})

    files = Dataset.list_files(paths, seed=seed)
    by_rows = len(paths) < processes
    if not by_rows:
        files = files.shard(processes, index)
    ds = files.interleave(reader, cycle_length=3, num_parallel=0, block_length=block)
    if by_rows:
        ds = ds.shard(processes, index)
    return ds.shuffle(16, seed).repeat(epochs).batch(batch)


@pytest.fixture(autouse=True)
def _agreed_job_seed(monkeypatch):
    """Simulated processes share one job seed, as after estimator.distribute.initialize()."""
    monkeypatch.setattr(seeds, "multi_process", lambda: True)
    monkeypatch.setattr(seeds, "_job_seed", seeds.fresh_seed())


@SETTINGS
@given(rows=st.lists(st.integers(1, 40), min_size=1, max_size=6), group=st.integers(1, 15),
       processes=st.integers(1, 4), seed=st.one_of(st.none(), st.integers(0, 2**40)),
       epochs=st.integers(1, 3), batch=st.integers(1, 9), block=st.one_of(st.none(), st.integers(1, 5)),
       cut=st.floats(0, 1))
def test_every_row_exactly_once_per_epoch_across_processes_and_exact_resume(
        tmp_path_factory, rows, group, processes, seed, epochs, batch, block, cut):
    paths = _write(tmp_path_factory.mktemp("pq"), rows, group)
    oracle = pq.read_table(paths)  # pyarrow reads every file whole
    want_f = dict(zip(oracle.column("id").to_pylist(), oracle.column("f").to_numpy(zero_copy_only=False), strict=True))
    want_i = dict(zip(oracle.column("id").to_pylist(), oracle.column("i").fill_null(-1).to_pylist(), strict=True))
    seen = collections.Counter()
    for index in range(processes):
        ds = _pipeline(paths, processes, index, seed, epochs, batch, block)
        it, batches, states = iter(ds), [], []
        while True:
            states.append(json.loads(json.dumps(it.state())))
            try:
                batches.append(next(it))
            except StopIteration:
                break
        ids = np.concatenate([b["id"] for b in batches]) if batches else np.array([], np.int64)
        assert all(b["i"].dtype == np.int64 and b["f"].dtype == np.float64 for b in batches)
        for b in batches:
            np.testing.assert_array_equal(b["f"], [want_f[j] for j in b["id"]])  # NaN where null
            assert b["i"].tolist() == [want_i[j] for j in b["id"]]
        seen.update(ids.tolist())  # (a process's share may differ by epoch: files are reshuffled)
        k = int(cut * len(batches))  # restore anywhere, also across epoch boundaries
        again = iter(ds)
        again.restore(states[k])
        rest = list(again)
        assert len(rest) == len(batches) - k
        for got, want in zip(rest, batches[k:], strict=True):
            np.testing.assert_array_equal(got["id"], want["id"])
    assert seen == collections.Counter(oracle.column("id").to_pylist() * epochs)
