#!/usr/bin/env python
"""Where the CSV pipeline's CPU goes: exclusive CPU seconds per million rows by stage.

    python scripts/profile_input.py 'DIR/taxi-*-of-00010.csv' [--key]

Runs `benchmark_input`'s pipeline (parse + shuffle 10k + batch 512, float32) once with the
readers inline, pyarrow single-threaded (as in the parallel readers) and no prefetch thread,
timing each stage's own work (`time.process_time`; time spent in the stages it calls does not
count). The threaded pipeline (as shipped) and pyarrow's whole-file read run too; the threaded
pipeline's difference from the single-threaded one is the cost of the threads (hand-offs, GIL).
Times are the best of 3 runs.
Stage names follow private functions of `input_pipelines`: when one is renamed, update here.
"""

from __future__ import annotations

import argparse
import glob
import time

from models.benchmarking import NUMERIC
from models.taxi_data import COURSE_COLUMNS

STAGES = (  # (module, class or "" for a function, method, label)
    ("input_pipelines.csv_dataset", "_Parser", "table", "pyarrow parse"),
    ("input_pipelines.csv_dataset", "", "rounds_twice", "float32 exactness check"),
    ("input_pipelines.csv_dataset", "", "narrow", "float64 -> float32"),
    ("input_pipelines.csv_dataset", "_Parser", "arrays", "arrow -> numpy (strings: objects)"),
    ("input_pipelines._csv_records", "BlockReader", "next_block", "file read + record-end scan"),
    ("input_pipelines.shuffle", "_ShuffleIterator", "_pull_window", "interleave blocks -> window"),
    ("input_pipelines.shuffle", "_RowPool", "join", "carry + window concatenation"),
    ("input_pipelines.shuffle", "_ShuffleIterator", "_run_step", "shuffle permutations + indexing"),
    ("input_pipelines.shuffle", "_RowPool", "take", "shuffle carry gathers"),
    ("input_pipelines.batching", "_BatchRowsIterator", "next", "batch gathers (one per column)"),
)


def _run(pattern: str, key: bool, **kw) -> int:
    from input_pipelines import make_csv_dataset

    ds = make_csv_dataset(pattern, 512, column_names=COURSE_COLUMNS,
                          column_defaults=[0.0] * 6 + ([""] if key else []),
                          select_columns=COURSE_COLUMNS if key else NUMERIC, label_name="fare_amount",
                          header=False, num_epochs=1, seed=0, **kw)
    return sum(len(labels) for _, labels in ds)


def _best(fn, repeats: int = 3) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeats):
        start = time.process_time()
        n = fn()
        times.append(time.process_time() - start)
    return min(times), n


def _instrument(totals: dict[str, float]) -> None:
    import importlib

    stack: list[float] = []
    for module, cls, name, label in STAGES:
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner  # "": a module-level function
        raw = owner.__dict__[name]
        fn = raw.__func__ if isinstance(raw, staticmethod) else raw

        def timed(*args, _fn=fn, _label=label, **kwargs):
            start = time.process_time()
            stack.append(0.0)
            try:
                return _fn(*args, **kwargs)
            finally:
                spent, inner = time.process_time() - start, stack.pop()
                totals[_label] = totals.get(_label, 0.0) + spent - inner
                if stack:
                    stack[-1] += spent

        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pattern", help="glob of taxi shards without header (benchmark_input --dir writes them)")
    p.add_argument("--key", action="store_true", help="select the string column `key` too")
    a = p.parse_args(argv)
    import dataclasses

    import pyarrow.csv as pacsv

    import input_pipelines.interleave as interleave

    files = sorted(glob.glob(a.pattern))
    if not files:
        raise SystemExit(f"error: no files match {a.pattern!r}")
    options = pacsv.ReadOptions(column_names=COURSE_COLUMNS)
    whole, n = _best(lambda: sum(pacsv.read_csv(f, read_options=options).num_rows for f in files))
    threaded, _ = _best(lambda: _run(a.pattern, a.key))
    init, open_reader = interleave.Interleave.__init__, interleave._InterleaveIterator._open

    def inline(self, *args, **kwargs):  # readers parse in the consumer's thread
        init(self, *args, **kwargs)
        self._num_parallel = 0

    def single_threaded(self, path, state=None):  # pyarrow on one thread, as parallel readers run it
        self._ctx = dataclasses.replace(self._ctx, in_parallel=True)
        return open_reader(self, path, state)

    interleave.Interleave.__init__ = inline
    interleave._InterleaveIterator._open = single_threaded
    totals: dict[str, float] = {}
    _instrument(totals)
    single, best = float("inf"), {}
    for _ in range(3):  # the stage times of the fastest run
        totals.clear()
        seconds, _ = _best(lambda: _run(a.pattern, a.key, prefetch_buffer_size=0), repeats=1)
        if seconds < single:
            single, best = seconds, dict(totals)
    totals = best
    per_m = 1e6 / n
    print(f"{n} rows, CPU s per M rows (key {'selected' if a.key else 'not selected'})")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<40}{seconds * per_m:8.3f}")
    print(f"  {'other (iterators, repeat, Python)':<40}{(single - sum(totals.values())) * per_m:8.3f}")
    print(f"  {'= single-threaded pipeline':<40}{single * per_m:8.3f}")
    print(f"  {'threads (hand-offs, GIL)':<40}{(threaded - single) * per_m:8.3f}")
    print(f"  {'= pipeline as shipped (threads)':<40}{threaded * per_m:8.3f}")
    print(f"  {'pyarrow whole-file read':<40}{whole * per_m:8.3f}   ratio {threaded / whole:.2f}x")


if __name__ == "__main__":
    main()
