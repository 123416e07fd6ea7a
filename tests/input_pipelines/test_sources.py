"""Sources: list_files ordering and per-epoch shuffling, tensor slices validation."""

from __future__ import annotations

import numpy as np
import pytest

from input_pipelines import Dataset, StructureError, from_tensor_slices, list_files


@pytest.fixture
def files(tmp_path):
    for k in range(8):
        (tmp_path / f"f{k}.csv").write_text("1\n")
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_list_files_sorted_or_shuffled_per_epoch(files):
    plain = [str(f) for f in list_files(str(files / "*"), shuffle=False)]
    assert plain == sorted(str(files / f"f{k}.csv") for k in range(8))  # directories left out
    epochs = list(Dataset.list_files(str(files / "*.csv"), seed=3).repeat(3).batch(8))
    assert all(sorted(e) == plain for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3
    again = list(Dataset.list_files(str(files / "*.csv"), seed=3).repeat(3).batch(8))
    assert [list(e) for e in again] == [list(e) for e in epochs]
    both = list(list_files([str(files / "f1.csv"), str(files / "f2*")], shuffle=False))
    assert [str(f)[-6:] for f in both] == ["f1.csv", "f2.csv"]


def test_tensor_slices_need_a_common_first_dimension():
    with pytest.raises(StructureError, match="leading"):
        from_tensor_slices({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(StructureError, match="leading"):
        from_tensor_slices(np.float32(1.0))


def test_parallel_map_resumes(assert_resumes):
    ds = Dataset.range(100).batch(7).map(lambda b: b * 3, num_parallel=2).prefetch(3)
    assert_resumes(ds, [0, 1, 6, 13, 14, 15])


def test_sharding_a_file_list_with_fewer_files_than_shards_is_an_error(files):
    with pytest.raises(ValueError, match="8 file.*shard the rows"):
        Dataset.list_files(str(files / "*.csv")).shard(9, 8)
    assert len(list(Dataset.list_files(str(files / "*.csv")).shard(8, 7))) == 1


def test_paths_are_accepted_wherever_a_file_name_or_glob_is(tmp_path):
    import pathlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from input_pipelines import CsvDataset, NpyDataset, ParquetDataset, make_csv_dataset

    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")
    pq.write_table(pa.table({"x": [1, 3]}), tmp_path / "a.parquet")
    np.save(tmp_path / "a.npy", np.array([1, 3]))
    assert isinstance(tmp_path, pathlib.Path)
    assert [str(f) for f in list_files(tmp_path / "*.csv")] == [str(tmp_path / "a.csv")]
    assert len(list(list_files([tmp_path / "a.csv", tmp_path / "*.npy"]))) == 2
    (x,) = list(make_csv_dataset(tmp_path / "a.csv", 2, num_epochs=1, shuffle=False))
    np.testing.assert_array_equal(x["x"], [1, 3])
    for ds in (CsvDataset(tmp_path / "a.csv", header=True), ParquetDataset(tmp_path / "a.parquet"),
               ParquetDataset([tmp_path / "a.parquet"]), NpyDataset(tmp_path / "a.npy", name="x"),
               NpyDataset([tmp_path / "a.npy"], name="x")):
        (batch,) = list(ds.batch(2))
        np.testing.assert_array_equal(batch["x"], [1, 3])


def test_tensor_slices_of_lists_and_tuples_nest_like_tf_data():
    assert [int(x) for x in from_tensor_slices([1, 2, 3])] == [1, 2, 3]  # a list is one array
    rows = list(from_tensor_slices([[1, 2], [3, 4]]))
    assert len(rows) == 2 and rows[1].tolist() == [3, 4]
    (features, labels), = list(from_tensor_slices(({"x": [1.0, 2.0], "s": ["a", "b"]}, [0, 1])).batch(2))
    assert features["x"].dtype == np.float64 and features["s"].dtype == object and list(features["s"]) == ["a", "b"]
    assert labels.tolist() == [0, 1]
    with pytest.raises(StructureError, match=r"tensors\['x'\] is not a rectangular array"):
        from_tensor_slices({"x": [[1, 2], [3]]})


def test_batches_never_alias_the_inputs_or_each_other():
    x = np.arange(12).reshape(6, 2)
    ds = from_tensor_slices({"x": x}).batch(3)
    first, second = list(ds)
    x[:] = -1  # the user's array changes after iterating
    assert first["x"].tolist() == [[0, 1], [2, 3], [4, 5]]
    first["x"][:] = 100  # a yielded batch is changed
    assert second["x"].tolist() == [[6, 7], [8, 9], [10, 11]]
    again = list(ds)
    assert again[0]["x"].tolist() == [[0, 1], [2, 3], [4, 5]]  # the dataset kept its own copy
    rows = list(from_tensor_slices(np.ones((2, 3))))
    rows[0][:] = 7
    assert list(from_tensor_slices(np.ones((2, 3))))[0].tolist() == [1.0, 1.0, 1.0]
    one = Dataset.range(10).batch(5)  # batches cut from one chunk are writable copies
    a, b = list(one)
    a[:] = 0
    assert b.tolist() == [5, 6, 7, 8, 9] and a.flags.writeable
