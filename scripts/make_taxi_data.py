#!/usr/bin/env python
"""Write realistic NYC taxi-fare CSV shards of any size, deterministic by seed.

    python scripts/make_taxi_data.py --rows 2000000 --shards 20 --out data/taxi [--seed 0]
        [--sample ../shared/data/taxifare/taxi-train.csv] [--with-time] [--prefix taxi]

Columns (no header, like the course files):
  default:      fare_amount,pickuplon,pickuplat,dropofflon,dropofflat,passengers,key
  --with-time:  fare_amount,dayofweek,hourofday,pickuplon,pickuplat,dropofflon,dropofflat,passengers,key

The generator (synthetic trips, or ``--sample`` rows resampled with jitter) is ``models/taxi_data.py``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from models.taxi_data import write_taxi_shards


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, required=True, help="total number of rows")
    p.add_argument("--shards", type=int, default=1, help="number of CSV files")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample", help="resample the rows of this course CSV instead of synthesizing")
    p.add_argument("--with-time", action="store_true", help="feateng columns (dayofweek, hourofday)")
    p.add_argument("--prefix", default="taxi", help="file name prefix (e.g. train, valid)")
    a = p.parse_args(argv)
    paths = write_taxi_shards(a.out, a.rows, a.shards, a.seed, a.sample, a.with_time, a.prefix)
    size = sum(os.path.getsize(x) for x in paths)
    print(f"wrote {a.rows} rows in {len(paths)} files ({size / 1e6:.1f} MB) to {a.out}")


if __name__ == "__main__":
    main()
