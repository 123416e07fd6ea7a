"""Shuffle: a seeded permutation with bounded displacement, exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from input_pipelines import Dataset, from_tensor_slices


def _values(ds):
    return np.concatenate([np.atleast_1d(b) for b in ds])


def test_shuffle_is_a_permutation_and_deterministic():
    ds = Dataset.range(5000).shuffle(300, seed=3).batch(64)
    a, b = _values(ds), _values(ds)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.sort(a), np.arange(5000))
    assert (a != np.arange(5000)).mean() > 0.9
    assert not np.array_equal(a, _values(Dataset.range(5000).shuffle(300, seed=4).batch(64)))


def test_shuffle_mixes_locally_with_bounded_displacement():
    x = _values(from_tensor_slices(np.arange(20000), chunk_rows=100).shuffle(1000, seed=0).batch(100))
    pos = np.empty_like(x)
    pos[x] = np.arange(len(x))
    displacement = np.abs(pos - np.arange(len(x)))
    assert displacement.max() < 3000  # leaves within two windows
    assert displacement.mean() > 250  # but really moves
    # neighbours in the input are spread out in the output
    assert np.median(np.abs(np.diff(pos))) > 100


def test_shuffle_reshuffles_each_epoch_and_seed_none_differs():
    ds = Dataset.range(1000).shuffle(100, seed=1).repeat(2).batch(1000)
    e0, e1 = list(ds)
    np.testing.assert_array_equal(np.sort(e0), np.sort(e1))
    assert not np.array_equal(e0, e1)
    free = Dataset.range(1000).shuffle(100).batch(1000)
    assert not np.array_equal(_values(free), _values(free))


def test_shuffle_of_batches():
    out = [b.tolist() for b in Dataset.range(40).batch(4).shuffle(5, seed=2)]
    assert sorted(out) == [list(range(i, i + 4)) for i in range(0, 40, 4)]
    assert out != sorted(out)


def test_shuffle_resumes_exactly(assert_resumes):
    rows = from_tensor_slices({"x": np.arange(3000)}, chunk_rows=77).shuffle(250, seed=9).batch(64)
    assert_resumes(rows, [0, 1, 3, 4, 11, 20, 46, 47])
    elements = Dataset.range(500).batch(7).shuffle(9, seed=1)
    assert_resumes(elements, [0, 1, 5, 9, 10, 17, 40, 71, 72])
    unbatched = Dataset.range(300).shuffle(50, seed=5)
    assert_resumes(unbatched, [0, 1, 49, 50, 51, 123, 299, 300])


def test_default_make_csv_batches_mix_many_files(tmp_path):
    """tf.data-like defaults (several files read at once, small interleave blocks, a 10,000-row
    buffer): a batch holds rows of many files, not of one or two (it was ~2 of 20)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "measure_shuffle_mixing", Path(__file__).resolve().parents[2] / "scripts" / "measure_shuffle_mixing.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    counts = measure.distinct_files_per_batch(measure.write_shards(str(tmp_path), 12, 5000), 256)
    assert len(counts) == 12 * 5000 // 256
    assert np.mean(counts) >= 6 and min(counts) >= 3, (np.mean(counts), min(counts))


def test_shuffled_batches_of_nested_structures_gather_the_right_rows():
    # Batches after shuffle are gathered from the shuffle's pool, one take per leaf, and rebuilt
    # into the element's structure: every leaf of a row must stay with its row.
    n = 5000
    ids = np.arange(n)
    data = ({"a": ids * 2, "b": {"c": ids.astype(np.float32) / 4, "s": np.array([f"r{i}" for i in ids], dtype=object)}},
            (ids * 3, np.stack([ids, -ids], axis=1)))
    ds = from_tensor_slices(data, chunk_rows=700).shuffle(1000, seed=5).batch(128)
    seen = []
    for (feats, (triple, pair)) in ds:
        row = feats["a"] // 2
        seen.append(row)
        assert np.array_equal(feats["b"]["c"], row.astype(np.float32) / 4)
        assert list(feats["b"]["s"]) == [f"r{i}" for i in row]
        assert np.array_equal(triple, row * 3) and np.array_equal(pair, np.stack([row, -row], axis=1))
    assert sorted(np.concatenate(seen).tolist()) == list(range(n))
