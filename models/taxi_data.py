"""Realistic NYC taxi-fare CSV shards of any size, deterministic by seed (``write_taxi_shards``).

The generator behind ``scripts/make_taxi_data.py`` and the benchmarks and tests that need taxi data.

Columns (no header, like the course files):
  default:      fare_amount,pickuplon,pickuplat,dropofflon,dropofflat,passengers,key
  with_time:    fare_amount,dayofweek,hourofday,pickuplon,pickuplat,dropofflon,dropofflat,passengers,key

Without ``sample``, trips come from a built-in synthetic model: pickups and dropoffs around
real NYC hot spots (Midtown, Downtown, the airports, ...), or short local hops; the fare is the
NYC meter ($2.50 + $1.553/km, i.e. $0.50 per 1/5 mile, plus waiting time that depends on the
hour's traffic) on a Manhattan-grid distance, JFK<->Manhattan flat fares, tolls on some
bridge/tunnel and airport trips, multiplicative noise and ~0.2% outliers. With ``sample``,
real rows are resampled with small jitter (~50 m on coordinates, ~3% on fares).

Rows are generated and written in chunks (bounded memory for any row count), vectorised with
numpy and written with pyarrow; chunk c of shard k uses the generator seeded by (seed, k, c).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

COURSE_COLUMNS = ["fare_amount", "pickuplon", "pickuplat", "dropofflon", "dropofflat", "passengers", "key"]
COURSE_DEFAULTS = [[0.0], [-74.0], [40.0], [-74.0], [40.7], [1.0], ["nokey"]]
FEATENG_COLUMNS = ["fare_amount", "dayofweek", "hourofday", "pickuplon", "pickuplat", "dropofflon",
                   "dropofflat", "passengers", "key"]
FEATENG_DEFAULTS = [[0.0], ["Sun"], [0], [-74.0], [40.0], [-74.0], [40.7], [1.0], ["nokey"]]
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]

# name, lon, lat, pickup weight, dropoff weight, spread (km, standard deviation)
HOTSPOTS = [
    ("midtown", -73.9855, 40.7580, 0.22, 0.19, 1.1),
    ("penn_chelsea", -73.9935, 40.7480, 0.10, 0.09, 0.8),
    ("upper_east_side", -73.9595, 40.7736, 0.12, 0.11, 1.0),
    ("upper_west_side", -73.9754, 40.7870, 0.08, 0.08, 1.0),
    ("greenwich_village", -74.0005, 40.7336, 0.10, 0.10, 0.8),
    ("financial_district", -74.0090, 40.7075, 0.07, 0.07, 0.6),
    ("east_village_les", -73.9860, 40.7230, 0.08, 0.08, 0.8),
    ("harlem", -73.9465, 40.8116, 0.03, 0.04, 1.0),
    ("williamsburg", -73.9571, 40.7081, 0.03, 0.04, 1.0),
    ("downtown_brooklyn", -73.9903, 40.6928, 0.02, 0.04, 1.2),
    ("long_island_city", -73.9485, 40.7447, 0.02, 0.03, 1.0),
    ("jfk", -73.7781, 40.6413, 0.025, 0.02, 0.5),
    ("lga", -73.8740, 40.7769, 0.03, 0.03, 0.4),
    ("ewr", -74.1745, 40.6895, 0.002, 0.006, 0.4),
]
_NAMES = [h[0] for h in HOTSPOTS]
_LON = np.array([h[1] for h in HOTSPOTS])
_LAT = np.array([h[2] for h in HOTSPOTS])
_W_PICK = np.array([h[3] for h in HOTSPOTS])
_W_DROP = np.array([h[4] for h in HOTSPOTS])
_SPREAD = np.array([h[5] for h in HOTSPOTS])
_MANHATTAN = np.isin(_NAMES, ["midtown", "penn_chelsea", "upper_east_side", "upper_west_side",
                              "greenwich_village", "financial_district", "east_village_les", "harlem"])
_AIRPORT = np.isin(_NAMES, ["jfk", "lga", "ewr"])
_JFK, _EWR = _NAMES.index("jfk"), _NAMES.index("ewr")
# trips per hour of day (relative), and average traffic speed in km/h per hour of day
_HOUR_WEIGHT = np.array([3.5, 2.5, 1.8, 1.3, 1.0, 1.2, 2.5, 4.0, 5.0, 5.0, 4.5, 4.7, 5.0, 5.0, 5.2,
                         5.0, 4.5, 5.5, 6.2, 6.2, 5.8, 5.5, 5.2, 4.5])
_HOUR_SPEED = np.array([26, 28, 29, 30, 30, 27, 21, 15, 12, 12, 13, 13, 13, 13, 13, 13, 12, 12, 13,
                        15, 17, 19, 21, 23], dtype=float)
_DAY_WEIGHT = np.array([0.13, 0.13, 0.14, 0.14, 0.15, 0.16, 0.15])
_PASSENGERS = np.array([0.70, 0.14, 0.04, 0.02, 0.06, 0.04])
_KM_PER_DEG_LAT = 110.57
_KM_PER_DEG_LON = 111.32 * np.cos(np.radians(40.75))
_GRID = np.radians(29.0)  # Manhattan's street grid is rotated ~29 degrees from true north


def manhattan_km(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    """Street (L1) distance in km on a grid rotated like Manhattan's avenues."""
    x = (lon2 - lon1) * _KM_PER_DEG_LON
    y = (lat2 - lat1) * _KM_PER_DEG_LAT
    c, s = np.cos(_GRID), np.sin(_GRID)
    return np.abs(x * c - y * s) + np.abs(x * s + y * c)


def _around(rng: np.random.Generator, spot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spread = _SPREAD[spot]
    lon = _LON[spot] + rng.normal(0, 1, spot.size) * spread / _KM_PER_DEG_LON
    lat = _LAT[spot] + rng.normal(0, 1, spot.size) * spread / _KM_PER_DEG_LAT
    return lon, lat


def _times(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    day = rng.choice(7, n, p=_DAY_WEIGHT)
    hour = rng.choice(24, n, p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    return day, hour


def synthesize_trips(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """`n` synthetic trips: coordinates, passengers, day of week (0=Sun), hour and fare."""
    pick = rng.choice(len(HOTSPOTS), n, p=_W_PICK / _W_PICK.sum())
    drop = rng.choice(len(HOTSPOTS), n, p=_W_DROP / _W_DROP.sum())
    plon, plat = _around(rng, pick)
    dlon, dlat = _around(rng, drop)
    local = (rng.random(n) < 0.5) & ~_AIRPORT[pick]  # short hops in the same neighbourhood
    hop = rng.lognormal(np.log(1.2), 0.6, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    dlon = np.where(local, plon + hop * np.cos(angle) / _KM_PER_DEG_LON, dlon)
    dlat = np.where(local, plat + hop * np.sin(angle) / _KM_PER_DEG_LAT, dlat)
    drop = np.where(local, pick, drop)
    day, hour = _times(rng, n)

    km = np.maximum(manhattan_km(plon, plat, dlon, dlat), 0.05)
    speed = _HOUR_SPEED[hour] * np.where(km > 10, 1.6, 1.0) * rng.lognormal(0, 0.2, n)
    minutes = km / speed * 60
    slow_share = np.clip(1.2 - speed / 20, 0.05, 0.9)  # share of the ride below 12 mph
    fare = 2.5 + 1.553 * km * (1 - 0.5 * slow_share) + 0.5 * minutes * slow_share
    fare *= rng.lognormal(0, 0.08, n)
    flat = ((pick == _JFK) & _MANHATTAN[drop]) | ((drop == _JFK) & _MANHATTAN[pick])
    fare = np.where(flat, np.where(rng.random(n) < 0.6, 52.0, 45.0), fare)
    fare = np.where((pick == _EWR) | (drop == _EWR), fare + 17.5, fare)
    step = np.where(rng.random(n) < 0.7, 0.5, 0.1)  # meter increments (newer / older meters)
    fare = np.round(fare / step) * step
    crosses = _MANHATTAN[pick] != _MANHATTAN[drop]
    toll_p = np.where(_AIRPORT[pick] | _AIRPORT[drop], 0.4, np.where(crosses & ~local, 0.25, 0.0))
    fare += np.where(rng.random(n) < toll_p, np.where(rng.random(n) < 0.5, 5.33, 5.76), 0.0)
    outlier = rng.random(n) < 0.002
    fare = np.where(outlier, rng.uniform(2.5, 100.0, n), fare)
    fare = np.maximum(np.round(fare, 2), 2.5)
    passengers = rng.choice(6, n, p=_PASSENGERS) + 1
    return {"fare_amount": fare, "pickuplon": plon, "pickuplat": plat, "dropofflon": dlon,
            "dropofflat": dlat, "passengers": passengers, "day": day, "hour": hour}


def load_sample(path: str) -> dict[str, np.ndarray]:
    """Real rows from a course file (7 columns) or a feateng file (9 columns), no header."""
    with open(path, "rb") as f:
        ncols = f.readline().count(b",") + 1
    names = {7: COURSE_COLUMNS, 9: FEATENG_COLUMNS}.get(ncols)
    if names is None:
        raise ValueError(f"{path}: expected 7 (course) or 9 (feateng) columns, found {ncols}")
    table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=names))
    out = {c: table.column(c).to_numpy() for c in names if c not in ("key", "dayofweek")}
    out["passengers"] = out["passengers"].astype(np.int64)
    if ncols == 9:
        out["day"] = _day_index(table.column("dayofweek"))
        out["hour"] = out.pop("hourofday").astype(np.int64)
    return out


def _day_index(days: pa.ChunkedArray) -> np.ndarray:
    return pc.index_in(days, value_set=pa.array(DAYS)).to_numpy(zero_copy_only=False).astype(np.int64)


def resample_trips(rng: np.random.Generator, sample: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """`n` rows drawn from `sample` with replacement, with ~50 m / ~3% jitter."""
    rows = rng.integers(0, len(sample["fare_amount"]), n)
    out = {k: v[rows] for k, v in sample.items()}
    for c in ("pickuplon", "pickuplat", "dropofflon", "dropofflat"):
        out[c] = out[c] + rng.normal(0, 0.0005, n)
    out["fare_amount"] = np.maximum(np.round(out["fare_amount"] * rng.lognormal(0, 0.03, n), 2), 2.5)
    if "day" not in out:
        out["day"], out["hour"] = _times(rng, n)
    return out


def _key_strings(rng: np.random.Generator, t: dict[str, np.ndarray]) -> pa.Array:
    """feateng-style keys: pickup datetime then rounded pickup lon/lat, dropoff lat/lon."""
    n = len(t["day"])
    week = rng.integers(0, 339, n)  # weeks from Sunday 2009-01-04 to mid 2015
    seconds = ((week * 7 + t["day"]) * 86400 + t["hour"] * 3600 + rng.integers(0, 3600, n))
    stamps = (np.datetime64("2009-01-04T00:00:00", "s") + seconds.astype("timedelta64[s]"))
    text = pc.strftime(pa.array(stamps), format="%Y-%m-%d %H:%M:%S.000000")
    parts = [pc.cast(pa.array(np.round(t[c], 4)), pa.string())
             for c in ("pickuplon", "pickuplat", "dropofflat", "dropofflon")]
    return pc.binary_join_element_wise(text, *parts, "")


def to_table(rng: np.random.Generator, t: dict[str, np.ndarray], key_start: int, with_time: bool) -> pa.Table:
    """The rows of `t` as a table in the course's (or, `with_time`, feateng's) columns."""
    n = len(t["fare_amount"])
    cols = {"fare_amount": pa.array(np.round(t["fare_amount"], 2))}
    if with_time:
        cols["dayofweek"] = pc.take(pa.array(DAYS), pa.array(t["day"]))
        cols["hourofday"] = pa.array(t["hour"].astype(np.int64))
    for c in ("pickuplon", "pickuplat", "dropofflon", "dropofflat"):
        cols[c] = pa.array(np.round(t[c], 6))
    if with_time:
        cols["passengers"] = pa.array(t["passengers"].astype(np.float64))
        cols["key"] = _key_strings(rng, t)
    else:
        cols["passengers"] = pa.array(t["passengers"].astype(np.int64))
        cols["key"] = pa.array(np.arange(key_start, key_start + n, dtype=np.int64))
    return pa.table(cols)


def shard_paths(out_dir: str, shards: int, prefix: str = "taxi") -> list[str]:
    """The file names `write_taxi_shards` writes."""
    return [os.path.join(out_dir, f"{prefix}-{k:05d}-of-{shards:05d}.csv") for k in range(shards)]


def write_taxi_shards(
    out_dir: str,
    rows: int,
    shards: int = 1,
    seed: int = 0,
    sample: str | None = None,
    with_time: bool = False,
    prefix: str = "taxi",
    chunk_rows: int = 500_000,
) -> list[str]:
    """Write `rows` taxi trips as `shards` CSV files in `out_dir`; returns their paths.

    Deterministic for (rows, shards, seed, sample, with_time, chunk_rows). Memory is bounded
    by `chunk_rows` whatever `rows` is.
    """
    if rows < 0 or shards < 1:
        raise ValueError(f"need rows >= 0 and shards >= 1, got rows={rows} shards={shards}")
    os.makedirs(out_dir, exist_ok=True)
    real = load_sample(sample) if sample else None
    paths = shard_paths(out_dir, shards, prefix)
    key = 0
    options = pacsv.WriteOptions(include_header=False)
    for k, path in enumerate(paths):
        n_shard = rows // shards + (1 if k < rows % shards else 0)
        tmp = path + ".tmp"
        with pacsv.CSVWriter(tmp, _schema(with_time), write_options=options) as writer:
            for c, start in enumerate(range(0, n_shard, chunk_rows)):
                n = min(chunk_rows, n_shard - start)
                rng = np.random.default_rng([seed, k, c])
                trips = resample_trips(rng, real, n) if real is not None else synthesize_trips(rng, n)
                writer.write_table(to_table(rng, trips, key, with_time))
                key += n
        os.replace(tmp, path)
    return paths


def _schema(with_time: bool) -> pa.Schema:
    f64, i64, s = pa.float64(), pa.int64(), pa.string()
    if with_time:
        return pa.schema([("fare_amount", f64), ("dayofweek", s), ("hourofday", i64), ("pickuplon", f64),
                          ("pickuplat", f64), ("dropofflon", f64), ("dropofflat", f64),
                          ("passengers", f64), ("key", s)])
    return pa.schema([("fare_amount", f64), ("pickuplon", f64), ("pickuplat", f64), ("dropofflon", f64),
                      ("dropofflat", f64), ("passengers", i64), ("key", i64)])
