#!/usr/bin/env python
"""Input benchmark: our CSV pipeline against pandas and numpy on generated taxi shards.

    python scripts/benchmark_input.py --rows 2000000 --shards 20 [--dir DIR] [--batch-size 512]

Each method runs in its own child process over the same files, so its peak RSS is its own
(measured from outside with `os.wait4`'s resource usage):

- pipeline:       `make_csv_dataset` (parse + shuffle 10k rows + batch 512 into float32 arrays)
- pandas_chunks:  `pandas.read_csv(chunksize=65536)`: the bare parse, no shuffle/batches/state
- numpy_loadtxt:  `numpy.loadtxt` of the numeric columns, one file at a time
- pyarrow_whole:  `pyarrow.csv.read_csv` of each whole shard (the parser's ceiling)

Functions (`generate_shards`, `run_method`, `input_benchmarks`, `format_table`) are importable
so the training half of the benchmark can be added next to them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_taxi_data import COURSE_COLUMNS, write_taxi_shards  # noqa: E402

NUMERIC = COURSE_COLUMNS[:6]


def generate_shards(out_dir: str, rows: int, shards: int, seed: int = 0) -> str:
    """Write (or reuse) taxi shards in `out_dir`; returns their glob pattern."""
    pattern = os.path.join(out_dir, f"taxi-*-of-{shards:05d}.csv")
    marker = os.path.join(out_dir, f".rows-{rows}-seed-{seed}-shards-{shards}")
    if not os.path.exists(marker):
        write_taxi_shards(out_dir, rows, shards, seed)
        open(marker, "w").close()
    return pattern


def _pipeline(pattern: str, batch_size: int) -> int:
    from input_pipelines import make_csv_dataset

    ds = make_csv_dataset(pattern, batch_size, column_names=COURSE_COLUMNS,
                          column_defaults=[0.0] * 6, select_columns=NUMERIC,
                          label_name="fare_amount", header=False, num_epochs=1, seed=0)
    rows = 0
    for features, labels in ds:
        assert labels.dtype.name == "float32" and features["pickuplon"].dtype.name == "float32"
        rows += len(labels)
    return rows


def _pandas_chunks(pattern: str, batch_size: int) -> int:
    import pandas as pd

    rows = 0
    for f in sorted(glob.glob(pattern)):
        for chunk in pd.read_csv(f, header=None, names=COURSE_COLUMNS, chunksize=65536):
            rows += len(chunk)
    return rows


def _numpy_loadtxt(pattern: str, batch_size: int) -> int:
    import numpy as np

    return sum(len(np.loadtxt(f, delimiter=",", usecols=range(6), dtype=np.float32))
               for f in sorted(glob.glob(pattern)))


def _pyarrow_whole(pattern: str, batch_size: int) -> int:
    import pyarrow.csv as pacsv

    options = pacsv.ReadOptions(column_names=COURSE_COLUMNS)
    return sum(pacsv.read_csv(f, read_options=options).num_rows for f in sorted(glob.glob(pattern)))


METHODS: dict[str, Callable[[str, int], int]] = {
    "pipeline": _pipeline,
    "pandas_chunks": _pandas_chunks,
    "numpy_loadtxt": _numpy_loadtxt,
    "pyarrow_whole": _pyarrow_whole,
}


def run_child(args: Sequence[str]) -> tuple[dict[str, Any], float, float]:
    """Run `python args` and return (its last JSON output line, peak RSS in MB, CPU seconds)."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed with exit code {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024, cpu


def run_method(method: str, pattern: str, batch_size: int = 512) -> dict[str, Any]:
    """Time one method in a child process: rows, seconds, rows/s and peak RSS (MB)."""
    result, rss, _ = run_child([os.path.abspath(__file__), "--child", method, "--pattern", pattern,
                                "--batch-size", str(batch_size)])
    result["peak_rss_mb"] = rss
    return result


_IMPORTS = {"pipeline": "input_pipelines", "pandas_chunks": "pandas", "numpy_loadtxt": "numpy",
            "pyarrow_whole": "pyarrow.csv"}


def _child(method: str, pattern: str, batch_size: int) -> None:
    __import__(_IMPORTS[method])  # library import time is not part of the measurement
    start, cpu = time.perf_counter(), time.process_time()
    rows = METHODS[method](pattern, batch_size)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"method": method, "rows": rows, "seconds": seconds, "cpu_seconds": cpu,
                      "rows_per_sec": rows / seconds}))


def input_benchmarks(pattern: str, batch_size: int = 512, methods: Sequence[str] = tuple(METHODS)) -> list[dict[str, Any]]:
    """All input methods over the same files, one child process each."""
    return [run_method(m, pattern, batch_size) for m in methods]


def format_table(results: list[dict[str, Any]], reference: str = "pandas_chunks") -> str:
    """A fixed-width table with rows/s relative to `reference`."""
    ref = next((r["rows_per_sec"] for r in results if r["method"] == reference), None)
    lines = [f"{'method':<16}{'rows':>10}{'seconds':>9}{'cpu s':>7}{'rows/s':>9}"
             f"{'vs ' + reference:>19}{'peak RSS MB':>13}"]
    for r in results:
        rel = f"{r['rows_per_sec'] / ref:.2f}x" if ref else "-"
        lines.append(f"{r['method']:<16}{r['rows']:>10}{r['seconds']:>9.2f}{r['cpu_seconds']:>7.2f}"
                     f"{r['rows_per_sec'] / 1e6:>8.2f}M{rel:>19}{r['peak_rss_mb']:>13.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--shards", type=int, default=20)
    p.add_argument("--dir", help="where to write the shards (default: a temporary directory)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    p.add_argument("--pattern", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child, a.pattern, a.batch_size)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = a.dir or tmp
        start = time.perf_counter()
        pattern = generate_shards(out_dir, a.rows, a.shards)
        size = sum(os.path.getsize(f) for f in glob.glob(pattern))
        print(f"{a.rows} rows in {a.shards} shards ({size / 1e6:.0f} MB), ready in "
              f"{time.perf_counter() - start:.1f}s: {pattern}")
        results = input_benchmarks(pattern, a.batch_size, a.methods)
        print(format_table(results))


if __name__ == "__main__":
    main()
