"""scripts/make_taxi_data.py: determinism, columns and plausible fares."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_taxi_data.py"
SAMPLE = str(ROOT.parent / "shared" / "data" / "taxifare" / "taxi-train.csv")  # the course sample, beside the clone


@pytest.fixture(scope="module")
def gen():
    from models import taxi_data  # the generator behind the script

    return taxi_data


def _read(paths, names):
    return pd.concat([pd.read_csv(p, header=None, names=names) for p in paths], ignore_index=True)


def test_deterministic_by_seed_and_sharded(tmp_path, gen):
    a = gen.write_taxi_shards(str(tmp_path / "a"), rows=5001, shards=3, seed=1, chunk_rows=1000)
    b = gen.write_taxi_shards(str(tmp_path / "b"), rows=5001, shards=3, seed=1, chunk_rows=1000)
    c = gen.write_taxi_shards(str(tmp_path / "c"), rows=5001, shards=3, seed=2, chunk_rows=1000)
    assert [os.path.basename(p) for p in a] == [f"taxi-0000{k}-of-00003.csv" for k in range(3)]
    for x, y in zip(a, b, strict=True):
        assert pathlib.Path(x).read_bytes() == pathlib.Path(y).read_bytes()
    assert pathlib.Path(a[0]).read_bytes() != pathlib.Path(c[0]).read_bytes()
    df = _read(a, gen.COURSE_COLUMNS)
    assert len(df) == 5001 and df["key"].tolist() == list(range(5001))


def test_synthetic_fares_are_plausible(tmp_path, gen):
    df = _read(gen.write_taxi_shards(str(tmp_path), rows=20000, seed=3), gen.COURSE_COLUMNS)
    fare = df["fare_amount"]
    assert fare.min() >= 2.5 and 7.0 <= fare.median() <= 11.0 and 9.0 <= fare.mean() <= 15.0
    assert df["passengers"].between(1, 6).all() and (df["passengers"] == 1).mean() > 0.6
    for c in ("pickuplon", "dropofflon"):
        assert df[c].between(-74.3, -73.6).all()
    for c in ("pickuplat", "dropofflat"):
        assert df[c].between(40.5, 41.0).all()
    # fare grows with distance: a linear fit on euclidean distance explains most variance
    dist = np.hypot(df.pickuplon - df.dropofflon, df.pickuplat - df.dropofflat)
    assert np.corrcoef(dist, fare)[0, 1] > 0.7
    jfk = (df.pickuplon.sub(-73.7781).abs() < 0.02) & (df.pickuplat.sub(40.6413).abs() < 0.02)
    assert fare[jfk].median() > 30


def test_with_time_columns(tmp_path, gen):
    df = _read(gen.write_taxi_shards(str(tmp_path), rows=3000, seed=4, with_time=True),
               gen.FEATENG_COLUMNS)
    assert set(df["dayofweek"]) <= set(gen.DAYS) and df["hourofday"].between(0, 23).all()
    assert df["key"].str.match(r"^20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.000000-7").all()


@pytest.mark.skipif(not os.path.exists(SAMPLE), reason=f"real taxi sample not found at {SAMPLE} (put the course sample in "
                    "../shared/data/taxifare/ beside the clone; see README)")
def test_resample_from_real_rows_via_cli(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", "4000", "--shards", "2", "--out",
                          str(tmp_path), "--sample", SAMPLE, "--seed", "5"],
                         capture_output=True, text=True, check=True)
    assert "wrote 4000 rows in 2 files" in out.stdout
    df = _read(sorted(tmp_path.glob("taxi-*.csv")), [
        "fare_amount", "pickuplon", "pickuplat", "dropofflon", "dropofflat", "passengers", "key"])
    real = pd.read_csv(SAMPLE, header=None)
    assert len(df) == 4000 and df["fare_amount"].min() >= 2.5
    assert abs(df["fare_amount"].median() - real[0].median()) < 1.5
