"""Interleave: deterministic round robin with parallel reads."""

from __future__ import annotations

import numpy as np
import pytest

from input_pipelines import Dataset, from_tensor_slices


def _reader(name):
    k = int(name)
    return from_tensor_slices({"v": np.arange(k * 100, k * 100 + 10 * (k + 1))}, chunk_rows=5)


def _names(n):
    return from_tensor_slices(np.array([str(k) for k in range(n)], dtype=object))


def test_round_robin_order_with_refill():
    out = [int(r["v"]) for r in _names(3).interleave(_reader, cycle_length=2, num_parallel=0)]
    # slots hold file 0 (2 chunks of 5 rows) and file 1 (4 chunks); file 2 refills slot 0
    expected_start = [*range(0, 5), *range(100, 105), *range(5, 10), *range(105, 110),
                      *range(200, 205), *range(110, 115)]
    assert out[:30] == expected_start
    assert sorted(out) == sorted(v for k in range(3) for v in range(k * 100, k * 100 + 10 * (k + 1)))


def test_parallel_equals_serial_and_resumes(assert_resumes):
    serial = [int(r["v"]) for r in _names(7).interleave(_reader, cycle_length=3, num_parallel=0)]
    parallel = [int(r["v"]) for r in _names(7).interleave(_reader, cycle_length=3, num_parallel=3)]
    assert serial == parallel
    ds = _names(7).interleave(_reader, cycle_length=3, num_parallel=2).batch(7)
    assert_resumes(ds, [0, 1, 4, 9, 20, 39, 40])


def test_interleave_errors():
    with pytest.raises(ValueError, match="before batch"):
        Dataset.range(3).batch(2).interleave(_reader)
    with pytest.raises(TypeError, match="unbatched Dataset"):
        list(_names(2).interleave(lambda f: _reader(f).batch(2)))


def test_block_length_takes_that_many_rows_per_turn_and_resumes(assert_resumes):
    out = [int(r["v"]) for r in _names(2).interleave(_reader, cycle_length=2, num_parallel=0, block_length=3)]
    assert out[:12] == [0, 1, 2, 100, 101, 102, 3, 4, 5, 103, 104, 105]  # blocks cross 5-row chunks
    assert sorted(out) == [*range(10), *range(100, 120)]
    ds = _names(7).interleave(_reader, cycle_length=3, num_parallel=2, block_length=3).batch(4)
    assert_resumes(ds, [0, 1, 2, 7, 15, 30, 69])


def _identity(chunk):
    return chunk


@pytest.mark.parametrize("block", [None, 1, 3, 7])
def test_shuffle_windows_pulled_in_bulk_equal_item_by_item_and_resume(block, assert_resumes):
    # shuffle takes its windows from interleave in one call per window; behind a map it takes
    # them item by item: the same windows, hence the same rows in the same order
    def pipeline(between):
        ds = _names(6).interleave(_reader, cycle_length=4, num_parallel=0, block_length=block)
        return between(ds).shuffle(16, seed=3).repeat(2).batch(5)

    bulk = [b["v"].tolist() for b in pipeline(lambda ds: ds)]
    single = [b["v"].tolist() for b in pipeline(lambda ds: ds.map(_identity))]
    assert bulk == single
    assert_resumes(pipeline(lambda ds: ds), [0, 1, 3, 10, 17, 25, 40])
