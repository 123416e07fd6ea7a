"""models/taxi_fare.py: feature engineering, a tiny train/evaluate, serving input, real-data smoke test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from estimator import ModeKeys, RunConfig
from models import task
from models import taxi_fare as tf_

REPO = Path(__file__).parents[2]
SHARED_TAXI = REPO / ".." / "shared" / "data" / "taxifare"


def _rows(n: int, seed: int = 0, with_time: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Synthetic NYC trips whose fare is $2.50 + $2/km of euclidean distance plus noise."""
    rng = np.random.default_rng(seed)
    f = {
        "pickuplon": rng.uniform(-74.02, -73.93, n).astype(np.float32),
        "pickuplat": rng.uniform(40.70, 40.80, n).astype(np.float32),
        "dropofflon": rng.uniform(-74.02, -73.93, n).astype(np.float32),
        "dropofflat": rng.uniform(40.70, 40.80, n).astype(np.float32),
        "passengers": rng.integers(1, 5, n).astype(np.float32),
    }
    km = np.hypot((f["pickuplat"] - f["dropofflat"]) * 111.0, (f["pickuplon"] - f["dropofflon"]) * 84.2)
    fare = (2.5 + 2.0 * km + rng.normal(0, 0.5, n)).astype(np.float32)
    if with_time:
        f["dayofweek"] = rng.choice(tf_.DAYS, n)
        f["hourofday"] = rng.integers(0, 24, n).astype(np.int32)
    return f, fare


def test_engineer_matches_numpy():
    f, _ = _rows(50)
    out = tf_.engineer({k: np.asarray(v, np.float64) for k, v in f.items()})
    dlat = f["pickuplat"].astype(np.float64) - f["dropofflat"]
    dlon = f["pickuplon"].astype(np.float64) - f["dropofflon"]
    np.testing.assert_allclose(out["latdiff"], dlat, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["londiff"], dlon, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["euclidean"], np.sqrt(dlat**2 + dlon**2), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["distance_km"], np.hypot(dlat * 111.0, dlon * 84.2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["manhattan_km"], np.abs(dlat) * 111.0 + np.abs(dlon) * 84.2, rtol=1e-5, atol=1e-5)


def test_bucketized_columns_bisect_right_over_nyc():
    params = tf_.ModelParams(nbuckets=5)
    wide, _ = tf_.feature_columns(params, with_time=False)
    bucket = next(c for c in wide if getattr(c, "source_column", None) is not None
                  and c.source_column.key == "pickuplat")
    boundaries = np.linspace(*tf_.LAT_RANGE, 5)
    np.testing.assert_allclose(bucket.boundaries, boundaries)
    lats = np.array([40.0, 40.55, 40.7, 40.95, 41.4])
    np.testing.assert_array_equal(np.searchsorted(boundaries, lats, side="right"), [0, 1, 2, 5, 5])


def _train_eval(with_time: bool, variant: str, tmp_path: Path) -> tuple[float, float]:
    f, y = _rows(300, seed=1, with_time=with_time)
    params = tf_.ModelParams(variant=variant, hidden_units=[8], nbuckets=4, embedding_dim=2,
                             learning_rate=0.03, linear_learning_rate=0.05)
    est = tf_.TaxiFareEstimator(params, with_time=with_time,
                                config=RunConfig(model_dir=str(tmp_path), save_summary_steps=1000,
                                                 log_step_count_steps=1000, steps_per_loop=5))

    def train_input():
        rng = np.random.default_rng(0)
        while True:
            idx = rng.integers(0, len(y), 64)
            yield {k: v[idx] for k, v in f.items()}, y[idx]

    def eval_input():
        return [(f, y)]

    est.train(train_input, max_steps=5)
    before = est.evaluate(eval_input)
    est.train(train_input, max_steps=150)
    after = est.evaluate(eval_input)
    np.testing.assert_allclose(after["label/mean"], y.mean(), rtol=1e-5)
    return float(before["average_loss"]), float(after["average_loss"])


@pytest.mark.parametrize("with_time,variant", [(False, "wide_deep"), (True, "dnn")])
def test_tiny_train_loss_decreases(with_time, variant, tmp_path):
    before, after = _train_eval(with_time, variant, tmp_path)
    assert np.isfinite(after)
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("columns,expected", [
    ("course", {"pickuplon", "pickuplat", "dropofflon", "dropofflat", "passengers"}),
    ("feateng", {"pickuplon", "pickuplat", "dropofflon", "dropofflat", "passengers", "dayofweek", "hourofday"}),
])
def test_serving_input_has_only_raw_columns(columns, expected):
    data = tf_.DataParams(train_files="x.csv", eval_files="y.csv", columns=columns)
    spec = tf_.serving_input(data)
    assert set(spec) == expected
    layout = tf_.FEATENG_COLUMNS if columns == "feateng" else tf_.COURSE_COLUMNS
    assert set(spec) <= set(layout) - {tf_.LABEL, "key"}


def test_huber_loss_is_squared_error_for_small_errors():
    import jax.numpy as jnp

    err = jnp.array([-3.0, 0.5, 12.0, -20.0])
    loss = np.asarray(tf_._loss(err, 10.0))
    expected = np.where(np.abs(err) <= 10, np.asarray(err) ** 2, 2 * 10 * (np.abs(err) - 5))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_real_course_data_smoke(tmp_path, monkeypatch):
    if not (SHARED_TAXI / "taxi-train.csv").exists():
        pytest.skip(f"real taxi data not found at {SHARED_TAXI.resolve()} (it lives in ../shared/data/taxifare "
                    "next to the repo; see configs/taxi_fare_course.yaml)")
    monkeypatch.chdir(REPO)
    config = task.load_task_config(str(REPO / "configs" / "taxi_fare_course.yaml"),
                                   [f"run.model_dir={tmp_path}", "train.max_steps=30"])
    est = task.build_estimator(config)
    est.train(task.input_fn(config, ModeKeys.TRAIN), max_steps=30)
    result = est.evaluate(task.input_fn(config, ModeKeys.EVAL))
    fares = np.loadtxt(SHARED_TAXI / "taxi-valid.csv", delimiter=",", usecols=0)
    np.testing.assert_allclose(result["label/mean"], fares.mean(), rtol=1e-5)
    assert np.isfinite(result["rmse"])


def test_taxi_fare_estimator_uses_only_public_hooks(tmp_path):
    from estimator import Estimator
    from estimator.preprocessing import FeatureColumnPreprocessing

    cls = tf_.TaxiFareEstimator
    assert not {"_host_preprocess", "_host_preprocess_labels", "_export_preprocessing", "_predict_apply",
                "_restore_params", "predict"} & set(vars(cls))
    est = cls(tf_.ModelParams(nbuckets=4), with_time=True, config=RunConfig(model_dir=str(tmp_path)))
    assert isinstance(est, Estimator) and isinstance(est.preprocessing, FeatureColumnPreprocessing)
    raw = {"pickuplon": np.array([-73.98], np.float32), "pickuplat": np.array([40.75], np.float32),
           "dropofflon": np.array([-73.95], np.float32), "dropofflat": np.array([40.78], np.float32),
           "passengers": np.array([1.0], np.float32), "dayofweek": np.array(["Mon"]),
           "hourofday": np.array([17], np.int32)}
    assert est.preprocessing.features(raw)["dayofweek__ids"].tolist() in ([1], [[1]])
