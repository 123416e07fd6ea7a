"""Readers on gs:// and s3:// (emulators) give what the same files give locally.

Oracles: pandas / pyarrow / numpy on the local copies, and the local pipeline itself. Block
sizes are small so that every file spans many blocks and one record is larger than a block.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from input_pipelines import (
    CsvDataset,
    DataFormatError,
    Dataset,
    NoFilesMatchError,
    NpyDataset,
    ParquetDataset,
    fs,
    make_csv_dataset,
)

BLOCK = 4096
ROWS = (700, 500, 900, 400)  # per shard; shard 2 is gzip-compressed


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """CSV shards with a header: ids, floats, strings with quotes, commas and line breaks."""
    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(5)
    first = 0
    for k, n in enumerate(ROWS):
        ids = np.arange(first, first + n)
        first += n
        text = np.array([f"t{i}" for i in ids], dtype=object)
        text[rng.integers(0, n, 20)] = 'a "quoted", value\nover two lines'
        frame = pd.DataFrame({"id": ids, "x": rng.normal(size=n).round(4), "s": text,
                              "label": rng.integers(0, 3, n)})
        if k == 1:
            frame.loc[7, "s"] = "long " * 2000  # one record of ~10 kB: larger than BLOCK
        name = out / f"part-{k}.csv{'.gz' if k == 2 else ''}"
        data = frame.to_csv(index=False).encode()
        name.write_bytes(gzip.compress(data) if k == 2 else data)
    return str(out)


def _upload(local_dir: str, url: str) -> None:
    for name in sorted(os.listdir(local_dir)):
        with open(os.path.join(local_dir, name), "rb") as f:
            fs.write_atomically(fs.join(url, name), f.read())


def _pandas_rows(local_dir: str) -> pd.DataFrame:
    files = sorted(os.path.join(local_dir, n) for n in os.listdir(local_dir))
    return pd.concat([pd.read_csv(f, keep_default_na=False) for f in files]).sort_values("id", ignore_index=True)


def _rows(batches) -> pd.DataFrame:
    features, labels = zip(*batches, strict=True)
    frame = pd.DataFrame({k: np.concatenate([f[k] for f in features]) for k in features[0]})
    frame["label"] = np.concatenate(labels)
    return frame


def _csv(pattern: str, **kw) -> Dataset:
    return make_csv_dataset(pattern, 64, label_name="label", num_epochs=1, block_size=BLOCK, **kw)



def _record_fetches(monkeypatch, url: str) -> list[tuple[int, int]]:
    """The (start, end) byte ranges every bucket file read fetches from now on."""
    fetched: list[tuple[int, int]] = []
    with fs.open(url) as probe:
        cls = type(probe.raw)
    original = cls._fetch_range
    monkeypatch.setattr(cls, "_fetch_range", lambda self, a, b: fetched.append((a, b)) or original(self, a, b))
    return fetched

def test_make_csv_dataset_over_a_bucket_glob_equals_the_local_files(bucket, shards):
    _upload(shards, bucket + "/data")
    url = bucket + "/data/part-*.csv*"
    remote = _rows(_csv(url))  # the defaults: shuffled, seed None
    expected = _pandas_rows(shards)
    pd.testing.assert_frame_equal(remote.sort_values("id", ignore_index=True)[expected.columns], expected,
                                  check_dtype=False, check_exact=False, rtol=1e-6)
    assert remote["id"].tolist() != sorted(remote["id"])  # it was shuffled
    local = _rows(_csv(os.path.join(shards, "part-*.csv*"), seed=3))
    pd.testing.assert_frame_equal(_rows(_csv(url, seed=3)), local)  # same order, same values


def test_restore_at_a_cut_equals_the_rest(bucket, shards):
    _upload(shards, bucket + "/data")
    # seed None (the state carries the drawn seed); a small buffer, so states fall inside files
    ds = _csv(bucket + "/data/part-*.csv*", shuffle_buffer_size=200)
    paths = []
    for cut in (1, 17, 35):
        it = iter(ds)
        for _ in range(cut):
            next(it)
        state = json.loads(json.dumps(it.state()))
        rest = list(it)
        again = iter(ds)
        again.restore(state)
        pd.testing.assert_frame_equal(_rows(list(again)), _rows(rest))
        paths += [(s["path"], s["state"]["offset"]) for s in _slots(state)]
    assert any(fs.is_url(p) and offset > BLOCK for p, offset in paths), paths  # URL + offset


def _dicts(state):
    if isinstance(state, dict):
        yield state
        for v in state.values():
            yield from _dicts(v)
    elif isinstance(state, list):
        for v in state:
            yield from _dicts(v)


def _slots(state):
    """The interleave slots (a file path with its reader state) anywhere in a pipeline state."""
    return (d for d in _dicts(state) if "path" in d and "state" in d)


def test_restore_reads_from_the_saved_offset_not_from_the_start(bucket, shards, monkeypatch):
    _upload(shards, bucket + "/data")
    url = bucket + "/data/part-1.csv"
    ds = CsvDataset(url, header=True, block_size=BLOCK, label_name="label").batch(50)
    it, offsets = iter(ds), [0]
    while offsets[0] <= BLOCK:  # into the file (the first blocks grew around the 10 kB record)
        next(it)
        state = it.state()
        offsets = [s["offset"] for s in _dicts(state) if "offset" in s]
    rest = list(it)
    fetched = _record_fetches(monkeypatch, url)
    again = iter(ds)
    again.restore(state)
    got = list(again)
    assert len(got) == len(rest)
    for a, b in zip(got, rest, strict=True):
        np.testing.assert_array_equal(a[1], b[1])
    assert fetched and min(a for a, _ in fetched) >= offsets[0], fetched  # ranged reads from the offset on
    assert sum(b - a for a, b in fetched) < fs.getsize(url) - offsets[0] + (1 << 21)


def test_zlib_file_in_a_bucket(bucket, shards):
    with open(os.path.join(shards, "part-0.csv"), "rb") as f:
        raw = f.read()
    fs.write_atomically(bucket + "/z.csv.zz", zlib.compress(raw))
    local = os.path.join(os.path.dirname(shards), "z.csv.zz")
    with open(local, "wb") as f:
        f.write(zlib.compress(raw))
    read = [list(CsvDataset(p, header=True, compression_type="ZLIB", block_size=BLOCK).batch(10_000))[0]
            for p in (bucket + "/z.csv.zz", local)]
    assert read[0].keys() == read[1].keys() and len(read[0]["id"]) == ROWS[0]
    for k in read[0]:
        np.testing.assert_array_equal(read[0][k], read[1][k])


def test_a_bad_quote_in_a_bucket_file_names_url_and_line(bucket, shards):
    lines = ["id,x,s,label"] + [f"{i},0.5,t{i},1" for i in range(10)]
    lines[7] = '6,0.5,"never closed,1'
    url = bucket + "/bad/part-0.csv"
    fs.write_atomically(url, "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=re.escape(f"{url}:8: a quoted value that never closes")):
        list(_csv(bucket + "/bad/*.csv", shuffle=False, column_defaults=[0, 0.0, "", 0]))
    with pytest.raises(NoFilesMatchError, match=re.escape(f"{bucket}/nothing/*.csv")) as e:
        _csv(bucket + "/nothing/*.csv")
    assert os.getcwd() not in str(e.value)


def test_two_processes_read_each_bucket_row_once(bucket, shards, monkeypatch):
    _upload(shards, bucket + "/data")
    from input_pipelines import _seeds, make_csv

    # Each simulated process has its share and, as in a JAX job, the job seed (seed=None).
    monkeypatch.setattr(_seeds, "root_seed", lambda: 20240917)
    seen = []
    for index in range(2):
        monkeypatch.setattr(make_csv, "_process_shard", lambda index=index: (2, index))
        seen.append(_rows(_csv(bucket + "/data/part-*.csv*"))["id"].tolist())
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(sum(ROWS)))


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("parquet")
    rng = np.random.default_rng(2)
    for k in range(3):
        n = 300 + 50 * k
        table = pa.table({"id": np.arange(n) + 1000 * k, "x": rng.normal(size=n).astype(np.float32),
                          "s": [f"v{i}" for i in range(n)]})
        pq.write_table(table, out / f"p-{k}.parquet", row_group_size=64)
    return str(out)


def test_parquet_in_a_bucket_equals_local_and_resumes(bucket, parquet_dir, assert_resumes, assert_same):
    _upload(parquet_dir, bucket + "/pq")

    def dataset(pattern):
        files = Dataset.list_files(pattern, shuffle=False)
        return files.interleave(lambda p: ParquetDataset(p, label_name="x", batch_rows=50), cycle_length=2).batch(40)

    remote = assert_resumes(dataset(bucket + "/pq/*.parquet"), [0, 3, 11])
    assert_same(remote, list(dataset(os.path.join(parquet_dir, "*.parquet"))))
    ids = np.concatenate([f["id"] for f, _ in remote])
    oracle = pa.concat_tables(pq.read_table(os.path.join(parquet_dir, f)) for f in sorted(os.listdir(parquet_dir)))
    assert sorted(ids) == sorted(oracle["id"].to_pylist())


def test_npy_in_a_bucket_equals_local_and_resumes(bucket, tmp_path, assert_resumes, assert_same):
    plain = np.arange(600, dtype=np.float32).reshape(200, 3)
    rec = np.zeros(150, dtype=[("a", np.float32), ("b", np.int64), ("v", np.int16, (2,))])
    rec["a"], rec["b"], rec["v"] = np.arange(150) / 2, np.arange(150) * 3, np.arange(300).reshape(150, 2)
    np.save(tmp_path / "plain-0.npy", plain)
    np.save(tmp_path / "plain-1.npy", plain[:77] * 2)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(plain[:50]))
    np.save(tmp_path / "rec.npy", rec)
    np.savez(tmp_path / "z.npz", f=plain[:30], y=np.arange(30))
    _upload(str(tmp_path), bucket + "/npy")
    for names, kw, oracle in (
        (["plain-0.npy", "plain-1.npy", "fortran.npy"], {"name": "x"}, np.concatenate([plain, plain[:77] * 2, plain[:50]])),
        (["rec.npy"], {"label_name": "b"}, rec["b"]),
        (["z.npz"], {"label_name": "y"}, np.arange(30)),
    ):
        remote = NpyDataset([f"{bucket}/npy/{n}" for n in names], chunk_rows=32, **kw).batch(20)
        full = assert_resumes(remote, [0, 1, -(-len(oracle) // 20) - 1])
        assert_same(full, list(NpyDataset([str(tmp_path / n) for n in names], chunk_rows=32, **kw).batch(20)))
        got = np.concatenate([b["x"] if "name" in kw else b[1] for b in full])
        np.testing.assert_array_equal(got, oracle)


def test_local_pipelines_never_import_the_bucket_stack(shards, parquet_dir, tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10))
    code = textwrap.dedent(f"""
        import glob, sys
        from input_pipelines import NpyDataset, ParquetDataset, make_csv_dataset
        n = sum(len(y) for _, y in make_csv_dataset({os.path.join(shards, "*.csv*")!r}, 100, label_name="label",
                                                     num_epochs=1))
        n += sum(len(b["id"]) for b in ParquetDataset(sorted(glob.glob({parquet_dir + "/*"!r}))).batch(999))
        n += sum(len(b) for b in NpyDataset({str(tmp_path / "a.npy")!r}).batch(999))
        print(n, sorted(m for m in ("fsspec", "gcsfs", "s3fs", "aiohttp", "botocore") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1) == [str(sum(ROWS) + 1050 + 10), "[]\n"]


def test_npy_restore_reads_from_the_saved_row(bucket, monkeypatch):
    rows = np.arange(600_000, dtype=np.float32).reshape(300_000, 2)  # 2.4 MB: more than one request
    url = bucket + "/big.npy"
    with fs.open(url, "wb") as f:
        np.save(f, rows)
    ds = NpyDataset(url, chunk_rows=50_000)
    it = iter(ds)
    for _ in range(250_000):  # unbatched: one row per element
        next(it)
    state = it.state()
    fetched = _record_fetches(monkeypatch, url)
    again = iter(ds)
    again.restore(state)
    rest = np.stack(list(again))
    np.testing.assert_array_equal(rest, rows[250_000:])
    (start, stop), *body = fetched
    assert start == 0 and stop <= 1 << 16, fetched  # the header: one small request
    assert body and min(a for a, _ in body) >= 250_000 * rows.itemsize * 2, fetched  # then from the row on

