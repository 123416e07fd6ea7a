"""Property-based CSV tests: generated files against pandas.read_csv as the oracle.

Files hold quoted values with delimiters, quotes and line breaks, missing values, CRLF or LF
line ends, a header or not, and are split into shards; they are read with blocks much smaller
than the files, so every record boundary case (a quoted line break at a block end, a record
longer than a block) comes up. Checked: nothing lost, nothing duplicated, values equal, exact
resume at any cut, bad rows skipped and counted exactly or reported at their line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from input_pipelines import CsvDataset, DataFormatError  # noqa: E402

COLS = ["i", "f", "s"]
DEFAULTS = [0, -1.0, "?"]
TEXT = st.text(alphabet="ab ,\"\n'x1", max_size=12)
ROW = st.tuples(st.integers(-(2**31), 2**31 - 1), st.one_of(st.none(), st.floats(-1e6, 1e6, width=32)),
                TEXT)
SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def csv_files(draw):
    """(list of file texts, header flag, line terminator) for 1-3 shards of generated rows."""
    shards = draw(st.lists(st.lists(ROW, max_size=60), min_size=1, max_size=3))
    header = draw(st.booleans())
    end = draw(st.sampled_from(["\n", "\r\n"]))
    texts = []
    for rows in shards:
        out = io.StringIO()
        w = csv.writer(out, lineterminator=end, quoting=csv.QUOTE_MINIMAL)
        if header:
            w.writerow(COLS)
        for i, f, s in rows:
            w.writerow([i, "" if f is None else repr(f), s])
        texts.append(out.getvalue())
    return texts, header


def _write(tmp_path_factory, texts, gz=False):
    d = tmp_path_factory.mktemp("prop")
    paths = []
    for k, text in enumerate(texts):
        p = d / f"part-{k}.csv{'.gz' if gz else ''}"
        p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
        paths.append(str(p))
    return paths


def _oracle(paths, header, **kw):
    frames = [pd.read_csv(p, header=0 if header else None, names=COLS, dtype={"s": str},
                          keep_default_na=False, na_values={"f": [""]}, index_col=False, **kw) for p in paths]
    ref = pd.concat(frames, ignore_index=True)
    ref["s"] = ref["s"].replace("", "?")
    return ref


def _csv_module_oracle(paths, header):
    """Rows with exactly three fields, read by Python's csv module (blank lines skipped)."""
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            records = [r for r in csv.reader(f) if r]
        rows += [r for r in records[1 if header else 0:] if len(r) == 3]
    ref = pd.DataFrame(rows, columns=COLS)
    ref["i"] = ref["i"].astype(np.int64)
    ref["f"] = pd.to_numeric(ref["f"].replace("", np.nan))
    ref["s"] = ref["s"].replace("", "?")
    return ref


def _flat(batches):
    return {c: np.concatenate([b[c] for b in batches]) if batches else np.array([]) for c in COLS}


def _compare(out, ref):
    assert len(out["i"]) == len(ref)
    np.testing.assert_array_equal(out["i"], ref["i"].to_numpy())
    np.testing.assert_allclose(out["f"], ref["f"].fillna(-1.0).to_numpy(dtype=np.float32), rtol=1e-6)
    assert out["s"].tolist() == ref["s"].tolist()


def _assert_resumes_exactly(ds, full, data):
    """Restoring a state saved after a drawn number of batches yields exactly the rest of `full`."""
    cut = data.draw(st.integers(0, len(full)), label="cut")
    it = iter(ds)
    for _ in range(cut):
        next(it)
    state = json.loads(json.dumps(it.state()))
    it.close()
    again = iter(ds)
    again.restore(state)
    rest = list(again)
    assert len(rest) == len(full) - cut
    for a, b in zip(rest, full[cut:], strict=True):
        for c in COLS:
            np.testing.assert_array_equal(a[c], b[c])


@SETTINGS
@given(files=csv_files(), block=st.integers(16, 600), batch=st.integers(1, 40), gz=st.booleans(), data=st.data())
def test_rows_match_pandas_and_resume_exactly(tmp_path_factory, files, block, batch, gz, data):
    texts, header = files
    paths = _write(tmp_path_factory, texts, gz)
    ds = CsvDataset(paths, column_names=COLS, column_defaults=DEFAULTS, header=header,
                    block_size=block).batch(batch)
    full = list(ds)
    _compare(_flat(full), _oracle(paths, header))
    _assert_resumes_exactly(ds, full, data)


@SETTINGS
@given(files=csv_files(), block=st.integers(16, 600), data=st.data())
def test_bad_rows_are_skipped_and_counted_exactly_or_reported_at_their_line(tmp_path_factory, files, block, data):
    texts, header = files
    text = texts[0]
    lines = text.splitlines(keepends=True)
    # Insert a row with too many fields before a record start (outside any quoted value).
    starts = [k for k in range(len(lines) + 1) if "".join(lines[:k]).count('"') % 2 == 0]
    if header:
        starts = [k for k in starts if k > 0]
    k = data.draw(st.sampled_from(starts), label="insert at")
    bad = '1,2.0,x,extra' + ("\r\n" if text.endswith("\r\n") else "\n")
    if k == len(lines) and lines and not lines[-1].endswith("\n"):
        bad = "\n" + bad
    texts = ["".join(lines[:k]) + bad + "".join(lines[k:]), *texts[1:]]
    paths = _write(tmp_path_factory, texts)
    skip = CsvDataset(paths, column_names=COLS, column_defaults=DEFAULTS, header=header,
                      block_size=block, on_error="skip")
    it = iter(skip.batch(10**6))
    out = _flat(list(it))
    assert it.skipped_rows == 1
    _compare(out, _csv_module_oracle(paths, header))
    line = 1 + "".join(lines[:k]).count("\n") + bad.startswith("\n")
    with pytest.raises(DataFormatError, match=rf"part-0\.csv:{line}: wrong number of fields") as e:
        list(CsvDataset(paths, column_names=COLS, column_defaults=DEFAULTS, header=header,
                        block_size=block))
    assert e.value.line == line


@SETTINGS
@given(rows=st.lists(st.tuples(st.integers(0, 10**6), TEXT), min_size=1, max_size=80),
       shards=st.integers(1, 3), block=st.integers(16, 400))
def test_header_names_and_inferred_types_match_pandas(tmp_path_factory, rows, shards, block):
    texts = []
    for k in range(shards):
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["n", "label"])
        for n, s in rows[k::shards]:
            w.writerow([n, "t" + s])
        texts.append(out.getvalue())
    paths = _write(tmp_path_factory, texts)
    ds = CsvDataset(paths, header=True, block_size=block, num_rows_for_inference=5)
    out = list(ds.batch(10**6))
    ref = pd.concat([pd.read_csv(p, dtype={"label": str}, keep_default_na=False) for p in paths], ignore_index=True)
    if not len(ref):
        assert out == []
        return
    assert out[0]["n"].dtype == np.int32
    np.testing.assert_array_equal(out[0]["n"], ref["n"])
    assert out[0]["label"].tolist() == ref["label"].tolist()


@SETTINGS
@given(files=csv_files(), block=st.integers(16, 600), batch=st.integers(1, 30), seed=st.integers(0, 2**31),
       data=st.data())
def test_make_csv_dataset_shuffles_every_row_once_and_resumes_exactly(tmp_path_factory, files, block, batch,
                                                                     seed, data):
    from input_pipelines import make_csv_dataset

    texts, header = files
    paths = _write(tmp_path_factory, texts)
    ds = make_csv_dataset(paths, batch, column_names=COLS, column_defaults=DEFAULTS, header=header,
                          num_epochs=1, shuffle_seed=seed, shuffle_buffer_size=7, block_size=block)
    full = list(ds)
    out, ref = _flat(full), _oracle(paths, header)
    order = np.lexsort((out["f"], out["s"].astype(str), out["i"]))  # rows as a multiset
    ref_f = ref["f"].fillna(-1.0).to_numpy(dtype=np.float32)
    ref = ref.iloc[np.lexsort((ref_f, ref["s"].to_numpy(dtype=str), ref["i"].to_numpy()))].reset_index(drop=True)
    _compare({c: v[order] for c, v in out.items()}, ref)
    _assert_resumes_exactly(ds, full, data)
