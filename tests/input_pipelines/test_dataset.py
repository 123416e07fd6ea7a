"""Dataset API: sources and chained transformations checked against plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from input_pipelines import Dataset, StructureError, from_generator, from_tensor_slices


def test_range_and_tensor_slices_yield_rows():
    assert [int(x) for x in Dataset.range(3, 12, 4)] == [3, 7, 11]
    rows = list(from_tensor_slices({"a": np.arange(5), "b": np.arange(5) * 2.0}, chunk_rows=2))
    assert len(rows) == 5 and rows[3]["a"] == 3 and rows[3]["b"] == 6.0


def test_tuple_elements_and_strings():
    ds = from_tensor_slices(({"x": np.arange(4)}, np.array(["a", "b", "c", "d"]))).batch(3)
    (f, y), (f2, y2) = list(ds)
    np.testing.assert_array_equal(f["x"], [0, 1, 2])
    assert y.dtype == object and list(y2) == ["d"]


def test_batch_remainder_and_drop():
    x = np.arange(10)
    assert [b.tolist() for b in from_tensor_slices(x, chunk_rows=3).batch(4)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(from_tensor_slices(x, chunk_rows=3).batch(4, drop_remainder=True))) == 2


def test_batch_of_batches_and_unbatch():
    ds = Dataset.range(12).batch(3).batch(2)
    out = list(ds)
    assert out[0].shape == (2, 3) and out[1].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert [int(v) for v in ds.unbatch().unbatch()] == list(range(12))
    assert [v.tolist() for v in ds.unbatch()][:2] == [[0, 1, 2], [3, 4, 5]]


def test_map_after_batch_sees_batches_and_before_batch_sees_row_chunks():
    seen = []

    def after(b):
        seen.append(b["x"].shape)
        return {"y": b["x"] * 2}

    out = list(from_tensor_slices({"x": np.arange(10)}).batch(4).map(after))
    assert seen == [(4,), (4,), (2,)]
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in out]), np.arange(10) * 2)
    # before batch: called per chunk of rows, vectorised
    calls = []
    ds = from_tensor_slices({"x": np.arange(10)}, chunk_rows=5).map(lambda d: calls.append(1) or {"y": d["x"] + 1})
    assert [int(r["y"]) for r in ds] == list(range(1, 11)) and len(calls) == 2


def test_map_unpacks_tuples_and_checks_row_count():
    ds = from_tensor_slices(({"x": np.arange(6)}, np.arange(6))).map(lambda f, y: (f, y * 10)).batch(6)
    (_, y), = list(ds)
    np.testing.assert_array_equal(y, np.arange(6) * 10)
    bad = from_tensor_slices(np.arange(6)).map(lambda x: x[:2])
    with pytest.raises(StructureError, match="one output row per input row"):
        list(bad)


def test_parallel_map_keeps_order_and_matches_serial():
    def fn(b):
        return b * b

    serial = [b.tolist() for b in Dataset.range(1000).batch(7).map(fn)]
    parallel = [b.tolist() for b in Dataset.range(1000).batch(7).map(fn, num_parallel=3)]
    assert parallel == serial


def test_filter_rows_and_batches():
    kept = [int(v) for v in Dataset.range(20).filter(lambda x: x % 3 == 0)]
    assert kept == [0, 3, 6, 9, 12, 15, 18]
    big = [b.tolist() for b in Dataset.range(20).batch(5).filter(lambda b: b.sum() > 40)]
    assert big == [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    with pytest.raises(StructureError, match="boolean array"):
        list(Dataset.range(5).filter(lambda x: x))


def test_repeat_take_shard():
    assert [int(v) for v in Dataset.range(3).repeat(2)] == [0, 1, 2, 0, 1, 2]
    assert [int(v) for v in Dataset.range(3).repeat().take(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert list(Dataset.range(0).repeat()) == []  # empty input: no endless loop
    assert [int(v) for v in Dataset.range(10).shard(3, 1)] == [1, 4, 7]
    assert [b.tolist() for b in Dataset.range(10).batch(2).shard(2, 0)] == [[0, 1], [4, 5], [8, 9]]
    assert [int(v) for v in Dataset.range(10).shard()] == list(range(10))  # one JAX process
    with pytest.raises(ValueError, match="shard index"):
        Dataset.range(3).shard(2, 2)


def test_prefetch_is_transparent_and_propagates_errors():
    assert [int(v) for v in Dataset.range(100).prefetch(3)] == list(range(100))

    def boom(b):
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError, match="bad batch"):
        list(Dataset.range(10).batch(2).map(boom).prefetch(2))


def test_prefetch_hands_over_in_bursts_but_never_holds_a_ready_batch_back():
    import threading
    import time

    more = threading.Event()

    def slow():  # one batch, then nothing until the consumer has seen it
        yield {"x": np.arange(4)}
        more.wait(10)
        yield {"x": np.arange(4, 8)}

    it = iter(from_generator(slow, batched=True).batch(4).prefetch(64))
    start = time.perf_counter()
    assert next(it)["x"].tolist() == [0, 1, 2, 3]  # not waiting for a burst of 32
    state = it.state()  # nor for the next batch
    assert time.perf_counter() - start < 5
    more.set()
    assert next(it)["x"].tolist() == [4, 5, 6, 7]
    with pytest.raises(StopIteration):
        next(it)
    again = iter(from_generator(slow, batched=True).batch(4).prefetch(64))
    again.restore(state)  # the state is the consumer's position, not the read-ahead's
    assert [b["x"].tolist() for b in again] == [[4, 5, 6, 7]]


def test_prefetch_with_a_full_buffer_is_exact_and_closes():
    ds = Dataset.range(5000).batch(7).prefetch(64)
    it = iter(ds)
    first = [next(it).tolist() for _ in range(100)]
    state = it.state()
    rest = [b.tolist() for b in it]
    assert first + rest == [b.tolist() for b in Dataset.range(5000).batch(7)]
    again = iter(ds)
    again.restore(state)
    assert [b.tolist() for b in again] == rest
    again.close()


def test_prefetch_reads_ahead_within_its_byte_budget():
    import time

    from input_pipelines.prefetch import Prefetch

    produced = []

    def big():
        for i in range(20):
            produced.append(i)
            yield {"x": np.full(1 << 17, i, np.float64)}  # 1 MiB each

    batches = from_generator(big, batched=True).batch(1 << 17)
    it = iter(Prefetch(batches, 64, max_bytes=2 << 20))
    assert next(it)["x"][0] == 0
    time.sleep(0.3)
    assert len(produced) <= 6  # two batches within 2 MiB (not 64) + those in hand
    assert [int(b["x"][0]) for b in it] == list(range(1, 20))


def test_from_generator_rows_and_batched():
    def rows():
        for i in range(2500):
            yield {"i": i, "s": f"r{i}"}

    out = list(from_generator(rows, chunk_rows=1000).batch(1000))
    assert [len(b["i"]) for b in out] == [1000, 1000, 500]
    assert out[2]["s"][-1] == "r2499" and out[2]["s"].dtype == object

    def chunks():
        for i in range(3):
            yield {"x": np.full(4, i)}

    assert [b["x"].tolist() for b in from_generator(chunks, batched=True).batch(6)] == [
        [0, 0, 0, 0, 1, 1], [1, 1, 2, 2, 2, 2]]


def test_as_numpy_iterator_and_context_manager():
    with Dataset.range(3).as_numpy_iterator() as it:
        assert [int(v) for v in it] == [0, 1, 2]
        with pytest.raises(StopIteration):
            next(it)
