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
