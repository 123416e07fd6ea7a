"""Iterator state: small, JSON-able, exact resume at any cut, no re-reading of consumed files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import input_pipelines as ip
from input_pipelines import Dataset, StateError, csv_reader, from_generator

COLS = ["fare_amount", "pickuplon", "pickuplat", "dropofflon", "dropofflat", "passengers", "key"]
DEFAULTS = [0.0, -74.0, 40.0, -74.0, 40.7, 1.0, "nokey"]


def _taxi(files, block_size=8192, **kw):
    reader = csv_reader(COLS, DEFAULTS, label_name="fare_amount", block_size=block_size, **kw)
    return Dataset.list_files(files, seed=11).interleave(reader, cycle_length=3, num_parallel=2)


def test_full_pipeline_resumes_exactly_at_many_cuts(taxi_shards, assert_resumes):
    ds = _taxi(taxi_shards).shuffle(500, seed=3).repeat(2).batch(100).prefetch(2)
    full = assert_resumes(ds, [0, 1, 2, 7, 13, 29, 30, 31, 44, 59])
    assert len(full) == 60 and full[-1][1].shape == (100,)
    labels = np.concatenate([y for _, y in full])
    assert labels.shape == (6000,)


def test_resume_with_remainder_mid_file_and_rows(taxi_shards, assert_resumes):
    ds = _taxi(taxi_shards[:2], block_size=4096).batch(333)
    assert [len(y) for _, y in assert_resumes(ds, [0, 1, 2, 3, 4])] == [333, 333, 333, 1]
    rows = _taxi(taxi_shards[:2], block_size=2048).take(700)
    assert_resumes(rows, [0, 1, 149, 150, 499, 699, 700])


def test_state_is_small_and_independent_of_data_size(taxi_shards):
    sizes = []
    for files in (taxi_shards[:3], taxi_shards):
        it = iter(_taxi(files).shuffle(500, seed=3).repeat().batch(64))
        for _ in range(20):
            next(it)
        sizes.append(len(json.dumps(it.state())))
        it.close()
    assert max(sizes) < 2000
    assert abs(sizes[0] - sizes[1]) < 100


def test_restore_does_not_read_consumed_files(tmp_path, taxi_module):
    paths = taxi_module.write_taxi_shards(str(tmp_path), rows=600, shards=3, seed=1)
    ds = Dataset.list_files(paths, shuffle=False).interleave(
        csv_reader(COLS, DEFAULTS, block_size=1024), cycle_length=1).batch(50)
    full = list(ds)
    it = iter(ds)
    for _ in range(5):  # 250 rows: file 0 done
        next(it)
    state = it.state()
    it.close()
    os.chmod(paths[0], 0)  # unreadable now: restore must not touch it
    if os.access(paths[0], os.R_OK):
        os.remove(paths[0])  # running as root: chmod is not enough
    again = iter(ds)
    again.restore(state)
    rest = list(again)
    assert len(rest) == len(full) - 5
    np.testing.assert_array_equal(rest[0]["pickuplon"], full[5]["pickuplon"])


def test_generator_state_replays_count():
    def gen():
        yield from ({"v": i} for i in range(50))

    ds = from_generator(gen, chunk_rows=8).batch(5)
    it = iter(ds)
    for _ in range(3):
        next(it)
    again = iter(ds)
    again.restore(it.state())
    assert next(again)["v"].tolist() == [15, 16, 17, 18, 19]


def test_restore_rejects_other_pipelines_and_bad_states():
    it = iter(Dataset.range(10).batch(2))
    next(it)
    state = it.state()
    with pytest.raises(StateError, match="different input pipeline"):
        iter(Dataset.range(10).batch(3)).restore(state)
    with pytest.raises(StateError, match="version"):
        iter(Dataset.range(10).batch(2)).restore({"position": 1})
    assert ip.DatasetIterator is type(it)



def test_seed_none_resumes_exactly_across_epoch_boundaries(tmp_path, taxi_module):
    """The seed drawn for seed=None is in the state: later epochs reshuffle files and rows
    exactly as the saved run would have (not with freshly drawn seeds)."""
    files = taxi_module.write_taxi_shards(str(tmp_path), rows=600, shards=3, seed=1)
    reader = csv_reader(COLS, DEFAULTS, label_name="fare_amount")
    ds = (Dataset.list_files(files).interleave(reader, cycle_length=2)
          .shuffle(128).repeat(4).batch(50))  # 12 batches per epoch, seeds drawn at random
    cuts = (0, 5, 11, 12, 13, 30)
    it, full, states = iter(ds), [], {}
    while True:
        if len(full) in cuts:
            states[len(full)] = json.loads(json.dumps(it.state()))
        try:
            full.append(next(it)[1])
        except StopIteration:
            break
    assert len(full) == 48
    for cut in cuts:
        again = iter(ds)
        again.restore(states[cut])
        rest = [labels for _, labels in again]
        assert len(rest) == len(full) - cut
        for got, want in zip(rest, full[cut:], strict=True):
            np.testing.assert_array_equal(got, want)
    other = [labels for _, labels in iter(ds)]  # a new iterator draws another seed
    assert not all(np.array_equal(a, b) for a, b in zip(other, full, strict=True))
