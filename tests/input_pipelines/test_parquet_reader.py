"""Parquet reader: columns, label, row groups, resume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from input_pipelines import DataFormatError, Dataset, ParquetDataset, UnreadableFileError


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


@pytest.fixture
def nullable_file(tmp_path):
    """5 row groups of 300 rows; nulls only in row groups 2 and 4 (so batches before them have none)."""
    n = 1500
    ints = [None if (600 <= i < 900 and i % 7 == 0) or (i >= 1200 and i % 5 == 0) else i for i in range(n)]
    floats = [None if v is None else v / 4 for v in ints]
    vecs = pa.array([[i, -i, 2 * i] for i in range(n)], type=pa.list_(pa.int32(), 3))
    table = pa.table({"i": pa.array(ints, pa.int64()), "f": pa.array(floats, pa.float32()), "v": vecs,
                      "s": [None if v is None else f"s{v}" for v in ints], "ok": np.arange(n)})
    path = tmp_path / "nulls.parquet"
    pq.write_table(table, path, row_group_size=300)
    assert pq.ParquetFile(path).num_row_groups == 5
    return path


def test_nullable_columns_keep_their_dtype_in_every_batch(nullable_file):
    ref = pq.read_table(nullable_file)
    batches = list(ParquetDataset(nullable_file, columns=["f", "v", "ok"], label_name="ok", batch_rows=128)
                   .batch(100))
    assert {b[0]["f"].dtype for b in batches} == {np.dtype(np.float32)}
    assert {b[0]["v"].dtype for b in batches} == {np.dtype(np.int32)}
    assert {b[0]["v"].shape[1:] for b in batches} == {(3,)}
    f = np.concatenate([b[0]["f"] for b in batches])
    np.testing.assert_array_equal(f, ref.column("f").to_numpy(zero_copy_only=False))  # NaN where null
    assert np.isnan(f).sum() == ref.column("f").null_count > 0
    np.testing.assert_array_equal(np.concatenate([b[0]["v"] for b in batches]),
                                  np.array(ref.column("v").to_pylist(), dtype=np.int32))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ref.column("ok").to_numpy())


def test_nulls_in_an_int_column_are_an_error_or_filled_from_column_defaults(nullable_file):
    with pytest.raises(DataFormatError, match=r"nulls.parquet: column 'i' \(int64\) has missing values in row "
                                              r"group 2 \(rows from 600\).*column_defaults=\{'i'"):
        list(ParquetDataset(nullable_file, columns=["i"]))
    with pytest.raises(DataFormatError, match=r"column 's' \(string\).*column_defaults"):
        list(ParquetDataset(str(nullable_file), columns=["s"]))
    batches = list(ParquetDataset(nullable_file, columns=["i", "s"], column_defaults={"i": -1, "s": ""},
                                  batch_rows=256).batch(200))
    assert {b["i"].dtype for b in batches} == {np.dtype(np.int64)}
    ref = pq.read_table(nullable_file)
    np.testing.assert_array_equal(np.concatenate([b["i"] for b in batches]),
                                  ref.column("i").fill_null(-1).to_numpy())
    assert list(np.concatenate([b["s"] for b in batches])) == ref.column("s").fill_null("").to_pylist()


def test_unknown_columns_and_label_name_are_clear_errors(nullable_file):
    for kwargs in ({"columns": ["i", "nope"]}, {"label_name": "nope"}, {"column_defaults": {"nope": 0}}):
        with pytest.raises(DataFormatError, match=r"nulls.parquet: no column 'nope'.*\['i', 'f', 'v', 's', 'ok'\]"):
            list(ParquetDataset(nullable_file, **kwargs))


def test_files_with_other_column_types_are_an_error(tmp_path):
    pq.write_table(pa.table({"x": np.arange(3, dtype=np.int64)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": np.arange(3, dtype=np.float64)}), tmp_path / "b.parquet")
    with pytest.raises(DataFormatError, match="b.parquet.*differ from those of.*a.parquet"):
        list(ParquetDataset([tmp_path / "a.parquet", tmp_path / "b.parquet"]))
