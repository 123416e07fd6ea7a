"""Parquet reader: columns, label, row groups, resume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from input_pipelines import Dataset, ParquetDataset, UnreadableFileError


@pytest.fixture
def parquet_files(tmp_path):
    paths = []
    for k in range(2):
        x = np.arange(k * 1000, (k + 1) * 1000)
        table = pa.table({"x": x.astype(np.float32), "y": x * 2, "s": [f"r{i}" for i in x]})
        path = str(tmp_path / f"p{k}.parquet")
        pq.write_table(table, path, row_group_size=300)
        paths.append(path)
    return paths


def test_reads_columns_label_and_strings(parquet_files):
    feats, label = list(ParquetDataset(parquet_files, columns=["x", "s", "y"], label_name="y",
                                       batch_rows=128).batch(2000))[0]
    np.testing.assert_array_equal(feats["x"], np.arange(2000, dtype=np.float32))
    np.testing.assert_array_equal(label, np.arange(2000) * 2)
    assert feats["s"][1999] == "r1999" and set(feats) == {"x", "s"}


def test_interleave_and_resume(parquet_files, assert_resumes):
    ds = Dataset.list_files(parquet_files, seed=0).interleave(
        lambda f: ParquetDataset(f, batch_rows=128), cycle_length=2).shuffle(200, seed=1).batch(90)
    full = assert_resumes(ds, [0, 1, 5, 11, 22, 23])
    np.testing.assert_array_equal(np.sort(np.concatenate([b["y"] for b in full])), np.arange(2000) * 2)


def test_not_parquet_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(UnreadableFileError, match="bad.parquet"):
        list(ParquetDataset(str(bad)))
