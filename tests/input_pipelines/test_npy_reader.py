"""NumPy shard reader: .npy (plain and structured, memory-mapped) and .npz."""

from __future__ import annotations

import numpy as np
import pytest

from input_pipelines import Dataset, NpyDataset, UnreadableFileError


def test_plain_npy_with_name_and_resume(tmp_path, assert_resumes):
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"a{k}.npy"))
        np.save(paths[-1], np.arange(k * 100, (k + 1) * 100).reshape(50, 2))
    ds = NpyDataset(paths, name="x", chunk_rows=16).batch(40)
    full = assert_resumes(ds, [0, 1, 2, 3])
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in full]), np.arange(300).reshape(150, 2))
    bare = list(NpyDataset(paths[0]).batch(50))[0]
    assert bare.shape == (50, 2)


def test_structured_npy_and_npz_with_label(tmp_path):
    rec = np.zeros(10, dtype=[("a", np.float32), ("b", np.int64)])
    rec["a"], rec["b"] = np.arange(10), np.arange(10) * 3
    np.save(tmp_path / "s.npy", rec)
    np.savez(tmp_path / "z.npz", f=np.ones((10, 3)), y=np.arange(10))
    feats, y = list(NpyDataset(str(tmp_path / "s.npy"), label_name="b").batch(10))[0]
    np.testing.assert_array_equal(y, np.arange(10) * 3)
    assert feats["a"].dtype == np.float32
    feats, y = list(NpyDataset(str(tmp_path / "z.npz"), label_name="y").batch(10))[0]
    assert feats["f"].shape == (10, 3) and y.tolist() == list(range(10))
    files = Dataset.list_files(str(tmp_path / "*.np*"), shuffle=False)
    assert len(list(files)) == 2


def test_object_arrays_and_garbage_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnreadableFileError, match="o.npy"):
        list(NpyDataset(str(tmp_path / "o.npy")))
    (tmp_path / "g.npy").write_text("garbage")
    with pytest.raises(UnreadableFileError, match="g.npy"):
        list(NpyDataset(str(tmp_path / "g.npy")))
