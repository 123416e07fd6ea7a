"""CSV files as users have them: wide headers, quotes, bad quoting, several headers, gzip.

Every file here is larger than the block size it is read with, and rows are compared with
pandas (or Python's csv module) as the oracle.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib

import numpy as np
import pandas as pd
import pytest

from input_pipelines import (
    CsvDataset,
    DataFormatError,
    UnreadableFileError,
    _csv_records,
    make_csv_dataset,
)


def _rows(ds):
    """All elements of an unbatched or batched-once dataset as one dict of arrays."""
    parts = list(ds.batch(1 << 20)) if ds._depth == 0 else list(ds)
    feats = [p[0] if isinstance(p, tuple) else p for p in parts]
    return {k: np.concatenate([f[k] for f in feats]) for k in feats[0]}


def _numbers_file(path, n, header="a,b,s\n", bad_line=None, bad_text=""):
    lines = [f"{i},{i}.5,x{i}\n" for i in range(n)]
    if bad_line is not None:
        lines[bad_line] = bad_text
    path.write_text(header + "".join(lines))
    return str(path)


def test_header_line_larger_than_a_mebibyte(tmp_path):
    names = [f"a_rather_long_and_descriptive_feature_name_number_{i:05d}" for i in range(20_000)]
    rng = np.random.default_rng(0)
    values = rng.integers(0, 100, size=(5, len(names)))
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in values))
    assert len(names[0]) * len(names) > 1 << 20
    ds = make_csv_dataset(str(path), 5, label_name=names[0], num_epochs=1, shuffle=False)
    feats, label = next(iter(ds))
    np.testing.assert_array_equal(label, values[:, 0])
    np.testing.assert_array_equal(feats[names[-1]], values[:, -1])
    assert label.dtype == np.int32 and len(feats) == len(names) - 1


def test_unbalanced_quote_is_an_error_naming_its_line(tmp_path):
    f = _numbers_file(tmp_path / "q.csv", 200_000, bad_line=10, bad_text='10,10.5,"oops\n')  # 4.5 MB
    for block in ({}, {"block_size": 4096}):
        with pytest.raises(DataFormatError, match=r"q\.csv:12: a quoted value that never closes") as e:
            list(make_csv_dataset(f, 1000, num_epochs=1, **block))
        assert e.value.line == 12 and e.value.path == f


def test_unbalanced_quote_in_skip_mode_skips_exactly_that_record(tmp_path):
    n = 200_000
    f = _numbers_file(tmp_path / "q.csv", n, bad_line=10, bad_text='10,10.5,"oops\n')
    for block in ({}, {"block_size": 8192}):
        it = iter(make_csv_dataset(f, 1000, num_epochs=1, shuffle=False, ignore_errors=True, **block))
        a = np.concatenate([b["a"] for b in it])
        assert it.skipped_rows == 1
        np.testing.assert_array_equal(a, np.delete(np.arange(n), 10))


def test_record_longer_than_the_limit_is_an_error_not_a_memory_blowup(tmp_path, monkeypatch):
    monkeypatch.setattr(_csv_records, "MAX_RECORD_BYTES", 10_000)
    f = _numbers_file(tmp_path / "q.csv", 5000, bad_line=3, bad_text='3,3.5,"never closed\n')
    with pytest.raises(DataFormatError, match=r"q\.csv:5: a quoted value or line longer than"):
        list(CsvDataset(f, header=True, column_defaults=[0, 0.0, ""], block_size=512))
    it = iter(CsvDataset(f, header=True, column_defaults=[0, 0.0, ""], block_size=512, on_error="skip").batch(10**6))
    assert len(next(it)["a"]) == 4999 and it.skipped_rows == 1


@pytest.mark.parametrize(("n", "block"), [(3000, 700), (150_000, 4 << 20)])  # 4.9 MB: pyarrow's threads
def test_quoted_commas_quotes_and_newlines_across_blocks_match_pandas(tmp_path, n, block):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "id": np.arange(n),
        "text": [["plain", 'say "hi"', "a,b", "two\nlines", "", "x\r\ny"][k] + str(i)
                 for i, k in enumerate(rng.integers(0, 6, n))],
        "v": rng.normal(size=n).round(4),
    })
    path = tmp_path / "quoted.csv"
    frame.to_csv(path, index=False)
    ref = pd.read_csv(path, keep_default_na=False)
    for mode in ("raise", "skip"):
        it = iter(CsvDataset(str(path), header=True, column_defaults=[0, "", 0.0], block_size=block,
                             on_error=mode).batch(10**6))
        out = next(it)
        assert it.skipped_rows == 0
        np.testing.assert_array_equal(out["id"], ref["id"])
        assert out["text"].tolist() == ref["text"].tolist()
        np.testing.assert_allclose(out["v"], ref["v"], rtol=1e-6)


def test_quote_inside_an_unquoted_value_is_an_error_or_plain_text(tmp_path):
    f = _numbers_file(tmp_path / "inch.csv", 3000, bad_line=2000, bad_text='2000,2000.5,5\'10"\n')
    with pytest.raises(DataFormatError, match=r"inch\.csv:2002: a '\"' inside an unquoted value"):
        list(CsvDataset(f, header=True, column_defaults=[0, 0.0, ""], block_size=1024))
    out = _rows(CsvDataset(f, header=True, column_defaults=[0, 0.0, ""], block_size=1024, use_quote_delim=False))
    assert out["s"][2000] == "5'10\"" and len(out["a"]) == 3000
    skip = iter(CsvDataset(f, header=True, column_defaults=[0, 0.0, ""], block_size=1024, on_error="skip").batch(10**6))
    assert len(next(skip)["a"]) == 2999 and skip.skipped_rows == 1


def test_bad_rows_in_quoted_blocks_skip_mode_counts_them(tmp_path):
    body = "".join(f'{i},"l{i}\nx",{i}\n' if i % 500 != 250 else f"{i},bad\n" for i in range(2000))
    path = tmp_path / "mixed.csv"
    path.write_text("a,s,b\n" + body)
    it = iter(CsvDataset(str(path), header=True, column_defaults=[0, "", 0], block_size=300,
                         on_error="skip").batch(10**6))
    out = next(it)
    assert it.skipped_rows == 4
    np.testing.assert_array_equal(out["a"], [i for i in range(2000) if i % 500 != 250])
    assert out["s"][1] == "l1\nx"
    with pytest.raises(DataFormatError, match=r"mixed\.csv:502: wrong number of fields"):
        list(CsvDataset(str(path), header=True, column_defaults=[0, "", 0], block_size=300))


def test_invalid_utf8_is_a_data_format_error_with_its_line(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"a,s\n" + b"".join(b"%d,x\n" % i for i in range(500)) + b"7,\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"bin\.csv:502: .*UTF8"):
        list(CsvDataset(str(path), header=True, column_defaults=[0, ""], block_size=256))


def test_headers_in_another_order_or_with_other_names_are_errors(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("y,x\n3,4\n")
    with pytest.raises(DataFormatError, match=r"b\.csv:1: header columns \['y', 'x'\] differ"):
        list(make_csv_dataset(str(tmp_path / "*.csv"), 2, num_epochs=1, shuffle=False))
    (tmp_path / "b.csv").write_text("x,z\n3,4\n")
    with pytest.raises(DataFormatError, match=r"b\.csv:1: header columns \['x', 'z'\] differ"):
        list(make_csv_dataset(str(tmp_path / "*.csv"), 2, num_epochs=1, shuffle=False))
    (tmp_path / "b.csv").write_text("y,x\n3,4\n")
    with pytest.raises(DataFormatError, match=r"a\.csv:1: the header has column 'x' at position 0"):
        list(make_csv_dataset(str(tmp_path / "*.csv"), 2, column_names=["y", "x"], num_epochs=1))
    (tmp_path / "b.csv").write_text("p,q\n3,4\n")  # renaming every column is fine
    out = list(make_csv_dataset(str(tmp_path / "*.csv"), 2, column_names=["u", "v"], num_epochs=1,
                                shuffle=False))[0]
    assert out["u"].tolist() == [1, 3]


def test_empty_and_header_only_first_files(tmp_path):
    (tmp_path / "0.csv").write_text("")
    (tmp_path / "1.csv").write_text("a,b\n1,x\n")
    with pytest.raises(DataFormatError, match=r"0\.csv: empty file, but header=True"):
        make_csv_dataset(str(tmp_path / "*.csv"), 2)
    (tmp_path / "0.csv").write_text("a,b\n")  # header only: no rows, types from the next file
    out = list(make_csv_dataset(str(tmp_path / "*.csv"), 5, num_epochs=1, shuffle=False))
    assert out[0]["a"].tolist() == [1] and out[0]["a"].dtype == np.int32
    (tmp_path / "1.csv").write_text("a,b\n")
    with pytest.raises(DataFormatError, match="no data rows .* pass column_defaults"):
        make_csv_dataset(str(tmp_path / "*.csv"), 5)
    headerless = CsvDataset(str(tmp_path / "0.csv"), column_names=["a", "b"], column_defaults=["", ""])
    assert len(_rows(headerless)["a"]) == 1  # header=False: "a,b" is a (string) row


def test_types_are_inferred_from_every_sampled_file(tmp_path):
    (tmp_path / "0.csv").write_text("n,code,f\n" + "".join(f"{i},{i},{i}\n" for i in range(300)))
    (tmp_path / "1.csv").write_text("n,code,f\n" + "".join(f"{i},A{i},{i}.5\n" for i in range(300)))
    ds = make_csv_dataset(str(tmp_path / "*.csv"), 600, num_epochs=1, shuffle=False)
    out = next(iter(ds))
    assert out["n"].dtype == np.int32 and out["code"].dtype == object and out["f"].dtype == np.float32
    assert out["code"][0] == "0" and out["code"][300] == "A0"


def test_later_text_or_overflow_in_an_inferred_column_says_to_pass_column_defaults(tmp_path):
    body = "".join(f"{i},{i}\n" for i in range(2000))
    (tmp_path / "t.csv").write_text("n,m\n" + body + "oops,1\n")
    with pytest.raises(DataFormatError, match=r"t\.csv:2002: cannot parse 'oops' as int32 in column 'n' "
                                              r"\(its type was inferred from the first 100 rows.*pass column_defaults"):
        list(make_csv_dataset(str(tmp_path / "t.csv"), 100, num_epochs=1))
    (tmp_path / "t.csv").write_text("n,m\n" + body + "3000000000,1\n")
    with pytest.raises(DataFormatError, match=r"t\.csv:2002: cannot parse '3000000000' as int32.*column_defaults"):
        list(make_csv_dataset(str(tmp_path / "t.csv"), 100, num_epochs=1))
    ok = list(make_csv_dataset(str(tmp_path / "t.csv"), 3000, num_epochs=1, shuffle=False,
                               column_defaults={"n": np.int64(0), "m": 0}))
    assert ok[0]["n"][-1] == 3_000_000_000


def _taxi_like(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"fare": rng.uniform(2, 60, n).round(2), "lon": rng.uniform(-74.1, -73.7, n).round(5),
                         "n": rng.integers(1, 6, n), "key": [f"2015-01-{i % 28 + 1:02d} {i}" for i in range(n)]})


@pytest.mark.parametrize("compression", ["detect", "GZIP", "ZLIB"])
def test_compressed_files_stream_and_resume_exactly(tmp_path, compression, assert_resumes):
    frame = _taxi_like(5000)
    text = frame.to_csv(index=False).encode()
    if compression == "ZLIB":
        path, kw = tmp_path / "t.csv.zz", {"compression_type": "ZLIB"}
        path.write_bytes(zlib.compress(text))
    else:
        path = tmp_path / ("t.csv.gz" if compression == "detect" else "t.csvgz")
        kw = {} if compression == "detect" else {"compression_type": "GZIP"}
        path.write_bytes(gzip.compress(text))
    ds = make_csv_dataset(str(path), 256, label_name="fare", num_epochs=1, shuffle=False, block_size=4096, **kw)
    full = assert_resumes(ds, [0, 1, 7, 19])
    labels = np.concatenate([y for _, y in full])
    np.testing.assert_allclose(labels, frame["fare"], rtol=1e-6)
    assert np.concatenate([f["key"] for f, _ in full]).tolist() == frame["key"].tolist()
    with pytest.raises(ValueError, match="compression_type must be"):
        make_csv_dataset(str(path), 256, compression_type="BZ2")


def test_make_csv_dataset_accepts_tf_data_keywords(tmp_path):
    frame = _taxi_like(400)
    frame.loc[::7, "lon"] = np.nan
    path = tmp_path / "t.tsv"
    frame.to_csv(path, sep="\t", index=False, na_rep="NA")
    common = {"batch_size": 400, "num_epochs": 1, "field_delim": "\t", "na_value": "NA",
              "column_defaults": [0.0, -74.0, 0, ""], "label_name": "fare"}
    feats, label = next(iter(make_csv_dataset(str(path), shuffle=False, **common)))
    np.testing.assert_allclose(feats["lon"], frame["lon"].fillna(-74.0), rtol=1e-6)
    a = [y for _, y in make_csv_dataset(str(path), shuffle_seed=3, shuffle_buffer_size=50, **common)]
    b = [y for _, y in make_csv_dataset(str(path), seed=3, shuffle_buffer_size=50, sloppy=True,
                                        num_parallel_reads=2, prefetch_buffer_size=0, **common)]
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], label) and np.array_equal(np.sort(a[0]), np.sort(label))
    sel = next(iter(make_csv_dataset(str(path), 400, select_columns=[0, 2], field_delim="\t", num_epochs=1,
                                     num_rows_for_inference=None, shuffle=False)))
    assert sorted(sel) == ["fare", "n"] and sel["n"].dtype == np.int32
    with pytest.raises(ValueError, match="shuffle_seed=1 and seed=2"):
        make_csv_dataset(str(path), 4, shuffle_seed=1, seed=2, **{k: v for k, v in common.items() if k != "batch_size"})
    with pytest.raises(ValueError, match="ignore_errors=True and on_error='raise'"):
        make_csv_dataset(str(path), 4, ignore_errors=True, on_error="raise", field_delim="\t")
    with pytest.raises(ValueError, match="encoding 'utf-16' is not supported"):
        make_csv_dataset(str(path), 4, encoding="utf-16", field_delim="\t")


def test_ignore_errors_and_latin1_encoding(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes(b"name,v\n" + "".join(f"caf\u00e9{i},{i}\n" for i in range(300)).encode("latin-1")
                     + b"broken\n" + b"z,1\n")
    it = iter(make_csv_dataset(str(path), 1000, num_epochs=1, shuffle=False, encoding="latin-1",
                               ignore_errors=True, block_size=512))
    out = next(it)
    assert it.skipped_rows == 1 and out["name"][5] == "caf\u00e95" and out["v"].tolist()[-1] == 1
    ref = list(csv.reader(io.StringIO(path.read_bytes().decode("latin-1"))))[1:]
    assert len(out["v"]) == len([r for r in ref if len(r) == 2])


def test_wrong_compression_and_defaults_that_do_not_fit_are_clear_errors(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("a\n1\n")
    with pytest.raises(UnreadableFileError, match="Not a gzipped file.*compression_type matches"):
        list(CsvDataset(str(path), column_names=["a"], column_defaults=[0], compression_type="GZIP"))
    with pytest.raises(ValueError, match=r"does not fit int32.*np\.int64"):
        CsvDataset(str(path), column_names=["a"], column_defaults=[2**40])


def test_records_longer_than_pyarrows_own_block(tmp_path):
    long = "y" * (3 << 19)  # 1.5 MiB: more than pyarrow's 1 MiB parsing block
    path = tmp_path / "long.csv"
    path.write_text(f'n,s\n1,{long}\n2,"{long[:10]}\n{long}"\n3,z\n')
    out = _rows(CsvDataset(str(path), header=True))  # types inferred over the long records too
    assert out["n"].tolist() == [1, 2, 3] and out["n"].dtype == np.int32
    assert out["s"][0] == long and out["s"][1] == long[:10] + "\n" + long
