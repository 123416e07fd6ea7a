"""CSV reading: columns, types, defaults, bad rows (file:line), skip counting, blocks."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from input_pipelines import (
    CsvDataset,
    DataFormatError,
    Dataset,
    NoFilesMatchError,
    UnreadableFileError,
    csv_reader,
)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _all(ds):
    return list(ds.batch(10_000))[0]


def test_header_names_types_defaults_and_select(tmp_path):
    f = _write(tmp_path / "a.csv", "a,b,c,s\n1,2.5,x,7\n,3.5,,8\n3,,z,9\n")
    out = _all(CsvDataset(f, column_defaults=[0, 1.0, "dflt", 0], header=True))
    np.testing.assert_array_equal(out["a"], [1, 0, 3])
    assert out["a"].dtype == np.int32 and out["b"].dtype == np.float32
    np.testing.assert_allclose(out["b"], [2.5, 3.5, 1.0])
    assert list(out["c"]) == ["x", "dflt", "z"]
    sel = _all(CsvDataset(f, column_defaults=[np.float64(0), 0], select_columns=["b", "s"], header=True))
    assert list(sel) == ["b", "s"] and sel["b"].dtype == np.float64


def test_column_names_label_delimiter_and_inference(tmp_path):
    f = _write(tmp_path / "a.tsv", "1\t2.0\tfoo\n4\t5.5\tbar\n")
    feats, label = _all(CsvDataset(f, column_names=["i", "f", "s"], label_name="f", field_delim="\t"))
    assert feats["i"].dtype == np.int32 and label.dtype == np.float32
    np.testing.assert_allclose(label, [2.0, 5.5])
    assert list(feats["s"]) == ["foo", "bar"]


def test_matches_pandas_across_many_small_blocks(taxi_shards):
    cols = ["fare", "plon", "plat", "dlon", "dlat", "n", "key"]
    ds = CsvDataset(taxi_shards[:2], column_names=cols, column_defaults=[0.0] * 6 + [0], block_size=700)
    out = _all(ds)
    ref = pd.concat([pd.read_csv(f, header=None, names=cols) for f in taxi_shards[:2]])
    for c in cols:
        np.testing.assert_allclose(out[c], ref[c].to_numpy(), rtol=1e-6)


def test_line_longer_than_block_and_no_final_newline(tmp_path):
    long = "x" * 5000
    f = _write(tmp_path / "a.csv", f"1,{long}\n2,y\n3,z")
    out = _all(CsvDataset(f, column_names=["i", "s"], column_defaults=[0, ""], block_size=64))
    assert out["i"].tolist() == [1, 2, 3] and out["s"][0] == long


def test_wrong_field_count_names_file_and_line(tmp_path):
    body = "".join(f"{i},{i}.5\n" for i in range(300))
    f = _write(tmp_path / "bad.csv", "a,b\n" + body + "7\n" + body)
    ds = CsvDataset(f, column_defaults=[0, 0.0], header=True, block_size=1000)
    with pytest.raises(DataFormatError, match=r"bad\.csv:302: wrong number of fields: expected 2, got 1") as e:
        list(ds)
    assert e.value.line == 302 and e.value.path == f


def test_unparsable_value_names_file_line_and_column(tmp_path):
    f = _write(tmp_path / "v.csv", "1,2\n\n3,4\n5,abc\n")
    with pytest.raises(DataFormatError, match=r"v\.csv:4: cannot parse 'abc' as float in column 'b'"):
        list(CsvDataset(f, column_names=["a", "b"], column_defaults=[0, 0.0]))


def test_required_column_empty_value_is_an_error(tmp_path):
    f = _write(tmp_path / "r.csv", "1,2\n3,\n")
    with pytest.raises(DataFormatError, match=r"r\.csv:2: empty value in required column 'b'"):
        list(CsvDataset(f, column_names=["a", "b"], column_defaults=[0, float]))


def test_skip_counts_and_logs_bad_rows(tmp_path, caplog):
    f = _write(tmp_path / "s.csv", "1,2\n3\n4,x\n5,6\n7,\n8,9,10\n")
    ds = CsvDataset(f, column_names=["a", "b"], column_defaults=[0, float], on_error="skip")
    it = iter(ds.batch(100))
    with caplog.at_level(logging.WARNING, logger="input_pipelines"):
        out = next(it)
    assert out["a"].tolist() == [1, 5] and it.skipped_rows == 4
    assert "skipped 4 malformed rows" in caplog.text and "s.csv" in caplog.text
    assert it.state()["skipped_rows"] == 4


def test_skip_only_wrong_field_counts_fast_path(tmp_path):
    f = _write(tmp_path / "s.csv", "1,2\n3\n5,6\n")
    it = iter(CsvDataset(f, column_names=["a", "b"], column_defaults=[0, 0], on_error="skip").batch(9))
    assert next(it)["a"].tolist() == [1, 5] and it.skipped_rows == 1


def test_empty_glob_unreadable_and_bad_options(tmp_path):
    with pytest.raises(NoFilesMatchError, match="no file matches"):
        Dataset.list_files(str(tmp_path / "nothing-*.csv"))
    x = _write(tmp_path / "x.csv", "1\n")
    ds = Dataset.list_files(str(tmp_path / "*.csv")).interleave(csv_reader(["a"], [0], sample_file=x))
    (tmp_path / "x.csv").unlink()
    with pytest.raises(UnreadableFileError, match="cannot read CSV file"):
        list(ds)
    with pytest.raises(ValueError, match="on_error"):
        CsvDataset(str(tmp_path / "y.csv"), column_names=["a"], column_defaults=[0], on_error="ignore")
    with pytest.raises(ValueError, match="column_names"):
        CsvDataset(str(tmp_path / "y.csv"))
    with pytest.raises(ValueError, match="label_name"):
        CsvDataset(str(tmp_path / "y.csv"), column_names=["a"], column_defaults=[0], label_name="b")
