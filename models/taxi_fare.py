"""NYC taxi fare: the course's feature engineering and a wide-and-deep regressor.

Features (as in the "Machine Learning with TensorFlow on GCP" feateng lab):
latdiff, londiff and the euclidean distance computed on the device from the raw
coordinates (so an export takes raw columns only); bucketized pickup/dropoff
latitude and longitude; crossed pickup location x dropoff location and, where
the data has them, day x hour; embeddings of the crosses in the deep part.
Two variants: ``wide_deep`` (a linear part over the distances in km and, with
``wide_crosses``, the location and day x hour crosses, plus a DNN) and ``dnn``
(the DNN alone).

Behaviour outside the training range: the DNN's normalised inputs are clipped
to +-``clip_inputs``, so it saturates instead of extrapolating; the linear
part's distance terms carry long trips (a per-km fare) up to
``max_distance_km``, past which the prediction stays flat (the few rows beyond
it in the sample are mostly bad coordinates). ``huber_delta`` trains with a
Huber loss so such rows do not dominate the fit; evaluation reports RMSE.

Data: ``columns: course`` is the main ``taxi-*.csv`` set (no day/hour),
``columns: feateng`` the feateng sample (with day/hour); both without header.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import Estimator, EstimatorSpec, ModeKeys, RunConfig, metrics, nn
from estimator import feature_column as fc
from estimator.config import bounded
from estimator.preprocessing import FeatureColumnPreprocessing

COURSE_COLUMNS = ["fare_amount", "pickuplon", "pickuplat", "dropofflon", "dropofflat", "passengers", "key"]
COURSE_DEFAULTS = [0.0, -74.0, 40.0, -74.0, 40.7, 1.0, "nokey"]
FEATENG_COLUMNS = ["fare_amount", "dayofweek", "hourofday", "pickuplon", "pickuplat", "dropofflon",
                   "dropofflat", "passengers", "key"]
FEATENG_DEFAULTS = [0.0, "Sun", 0, -74.0, 40.0, -74.0, 40.7, 1.0, "nokey"]
LABEL = "fare_amount"
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]

# NYC's extent: bucket boundaries span it (the course used -78..-70 / 37..45 in coarse steps).
LAT_RANGE = (40.55, 40.95)
LON_RANGE = (-74.10, -73.70)
# Rough centre and spread of NYC trips, to put raw inputs on a unit scale for the DNN.
CENTER = {"lon": -73.975, "lat": 40.750}
SCALE = {"lon": 0.04, "lat": 0.03, "diff": 0.06, "passengers": 1.3}
KM_PER_DEG = {"lat": 111.0, "lon": 84.2}  # at 40.75 N


@dataclasses.dataclass
class ModelParams:
    """``model:`` section of a taxi_fare config.

    ``nbuckets`` is the number of lat/lon bucket boundaries (pickup x dropoff
    crosses have ``nbuckets**4`` hash buckets: keep it small on small data);
    ``wide_crosses`` adds the location crosses to the linear part;
    ``clip_inputs`` clips the DNN's normalised numeric inputs (null: no clip);
    ``huber_delta`` (USD) switches the training loss to Huber (null: squared
    error); ``max_distance_km`` caps the linear part's distances (null: no cap).
    """

    name: str = "taxi_fare"
    variant: Literal["wide_deep", "dnn"] = "wide_deep"
    hidden_units: list[int] = dataclasses.field(default_factory=lambda: [64, 32])
    nbuckets: int = 16
    embedding_dim: int = 8
    learning_rate: float = bounded(0.003, above=0)
    linear_learning_rate: float = bounded(0.01, above=0)
    dropout: float | None = None
    batch_norm: bool = False
    clip_inputs: float | None = 4.0
    wide_crosses: bool = True
    huber_delta: float | None = 10.0
    max_distance_km: float | None = 40.0


@dataclasses.dataclass
class DataParams:
    """``data:`` section: CSV files, their column layout and batching."""

    train_files: str
    eval_files: str
    columns: Literal["course", "feateng"] = "course"
    batch_size: int = bounded(512, minimum=1)
    eval_batch_size: int = bounded(4096, minimum=1)
    shuffle_buffer_size: int = 10000
    header: bool = False


def engineer(features: dict[str, Any]) -> dict[str, Any]:
    """Adds latdiff, londiff, euclidean (degrees) and a km distance: jnp code run on the device."""
    out = dict(features)
    latdiff = features["pickuplat"] - features["dropofflat"]
    londiff = features["pickuplon"] - features["dropofflon"]
    out["latdiff"] = latdiff
    out["londiff"] = londiff
    out["euclidean"] = jnp.sqrt(latdiff**2 + londiff**2)
    lat_km, lon_km = latdiff * KM_PER_DEG["lat"], londiff * KM_PER_DEG["lon"]
    out["distance_km"] = jnp.sqrt(lat_km**2 + lon_km**2)
    out["manhattan_km"] = jnp.abs(lat_km) + jnp.abs(lon_km)
    return out


def _scaled(center: float, scale: float, clip: float | None):
    if clip is None:
        return lambda x: (x - center) / scale
    return lambda x: jnp.clip((x - center) / scale, -clip, clip)


def feature_columns(params: ModelParams, with_time: bool) -> tuple[list, list]:
    """(wide columns, deep columns) of the course's feature engineering."""
    lat_b = np.linspace(*LAT_RANGE, params.nbuckets).tolist()
    lon_b = np.linspace(*LON_RANGE, params.nbuckets).tolist()
    plat, plon = fc.numeric_column("pickuplat"), fc.numeric_column("pickuplon")
    dlat, dlon = fc.numeric_column("dropofflat"), fc.numeric_column("dropofflon")
    b_plat, b_plon = fc.bucketized_column(plat, lat_b), fc.bucketized_column(plon, lon_b)
    b_dlat, b_dlon = fc.bucketized_column(dlat, lat_b), fc.bucketized_column(dlon, lon_b)
    nb2 = params.nbuckets**2
    ploc = fc.crossed_column([b_plat, b_plon], nb2)
    dloc = fc.crossed_column([b_dlat, b_dlon], nb2)
    pd_pair = fc.crossed_column([ploc, dloc], nb2**2)
    cap = (lambda x: jnp.minimum(x, params.max_distance_km)) if params.max_distance_km is not None else None
    wide = [fc.numeric_column("distance_km", normalizer_fn=cap), fc.numeric_column("manhattan_km", normalizer_fn=cap)]
    if params.wide_crosses:
        wide += [b_plat, b_plon, b_dlat, b_dlon, ploc, dloc, pd_pair]
    clip = params.clip_inputs
    deep = [
        fc.embedding_column(pd_pair, params.embedding_dim),
        fc.embedding_column(ploc, params.embedding_dim),
        fc.embedding_column(dloc, params.embedding_dim),
        fc.numeric_column("pickuplat", normalizer_fn=_scaled(CENTER["lat"], SCALE["lat"], clip)),
        fc.numeric_column("pickuplon", normalizer_fn=_scaled(CENTER["lon"], SCALE["lon"], clip)),
        fc.numeric_column("dropofflat", normalizer_fn=_scaled(CENTER["lat"], SCALE["lat"], clip)),
        fc.numeric_column("dropofflon", normalizer_fn=_scaled(CENTER["lon"], SCALE["lon"], clip)),
        fc.numeric_column("latdiff", normalizer_fn=_scaled(0.0, SCALE["diff"], clip)),
        fc.numeric_column("londiff", normalizer_fn=_scaled(0.0, SCALE["diff"], clip)),
        fc.numeric_column("euclidean", normalizer_fn=_scaled(0.0, SCALE["diff"], clip)),
        fc.numeric_column("passengers", normalizer_fn=_scaled(1.0, SCALE["passengers"], clip)),
    ]
    if with_time:
        day = fc.categorical_column_with_vocabulary_list("dayofweek", DAYS)
        hour = fc.categorical_column_with_identity("hourofday", 24)
        day_hr = fc.crossed_column([day, hour], 24 * 7)
        wide += [day, hour, day_hr]
        deep += [fc.embedding_column(day_hr, params.embedding_dim),
                 fc.indicator_column(day), fc.indicator_column(hour)]
    return wide, deep


def _loss(error: jax.Array, huber_delta: float | None) -> jax.Array:
    """Squared error, or twice the Huber loss (equal to it for |error| <= delta)."""
    if huber_delta is None:
        return error**2
    return 2.0 * optax.huber_loss(error, delta=huber_delta)


class TaxiFareEstimator(Estimator):
    """Wide-and-deep (or DNN) fare regressor over the course's taxi features.

    A subclass through public hooks only: it overrides ``model_fn`` and passes the
    columns' host side as ``preprocessing=FeatureColumnPreprocessing(columns)``.

    Args:
      params: a ``ModelParams``.
      with_time: whether the data has dayofweek / hourofday (the feateng set).
      config: the RunConfig.
      warm_start_from: as for ``Estimator``.
    """

    def __init__(self, params: ModelParams, with_time: bool, config: RunConfig | None = None,
                 warm_start_from: Any = None):
        self.model_params = params
        self.wide_columns, self.deep_columns = feature_columns(params, with_time)
        super().__init__(config=config, params=dataclasses.asdict(params), warm_start_from=warm_start_from,
                         preprocessing=FeatureColumnPreprocessing(self.wide_columns + self.deep_columns))

    def model_fn(self, features, labels, mode, params):
        """Predicts the fare (USD); squared-error loss; RMSE and MAE as eval metrics."""
        p = self.model_params
        training = mode == ModeKeys.TRAIN
        features = engineer(features)
        with nn.scope("dnn"):
            h = fc.input_layer(features, self.deep_columns)
            for i, units in enumerate(p.hidden_units):
                with nn.scope(f"hiddenlayer_{i}"):
                    h = nn.Dense(units, name="dense")(h)
                    if p.batch_norm:
                        h = nn.BatchNorm(name="batchnorm")(h, training=training)
                    h = jnp.maximum(h, 0.0)
                    if p.dropout:
                        h = nn.Dropout(p.dropout)(h, training=training)
            fare = nn.Dense(1, name="logits")(h)[:, 0]
        if p.variant == "wide_deep":
            with nn.scope("linear"):
                fare = fare + fc.linear_model(features, self.wide_columns)[:, 0]
        predictions = {"predictions": fare}
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions=predictions)
        labels = jnp.reshape(labels, fare.shape).astype(jnp.float32)
        loss = jnp.mean(_loss(fare - labels, p.huber_delta))
        optimizer = optax.multi_transform(
            {"dnn": optax.adam(p.learning_rate), "linear": optax.adam(p.linear_learning_rate)},
            lambda tree: {part: jax.tree.map(lambda _, part=part: part, sub) for part, sub in tree.items()},
        )
        return EstimatorSpec(
            mode,
            predictions=predictions,
            loss=loss,
            optimizer=optimizer,
            eval_metrics={
                "rmse": metrics.RootMeanSquaredError()(labels, fare),
                "mae": metrics.MeanAbsoluteError()(labels, fare),
                "average_loss": metrics.MeanSquaredError()(labels, fare),
                "label/mean": metrics.Mean()(labels),
                "prediction/mean": metrics.Mean()(fare),
            },
        )


def build_estimator(model: ModelParams, data: DataParams, run_config: RunConfig) -> TaxiFareEstimator:
    """The estimator a config describes."""
    return TaxiFareEstimator(model, with_time=data.columns == "feateng", config=run_config)


def _layout(data: DataParams) -> tuple[list[str], list[Any]]:
    return (FEATENG_COLUMNS, FEATENG_DEFAULTS) if data.columns == "feateng" else (COURSE_COLUMNS, COURSE_DEFAULTS)


def input_fn(data: DataParams, mode: str, seed: int = 0):
    """An input_fn over ``data``'s CSV files: shuffled and repeated for training, one pass otherwise."""
    from input_pipelines import make_csv_dataset

    names, defaults = _layout(data)
    training = mode == ModeKeys.TRAIN

    def fn():
        return make_csv_dataset(
            data.train_files if training else data.eval_files,
            batch_size=data.batch_size if training else data.eval_batch_size,
            column_names=names,
            column_defaults=defaults,
            label_name=LABEL,
            select_columns=[c for c in names if c != "key"],
            header=data.header,
            num_epochs=None if training else 1,
            shuffle=training,
            shuffle_buffer_size=data.shuffle_buffer_size,
            seed=seed,
        )

    return fn


def serving_input(data: DataParams) -> dict[str, str]:
    """The raw columns a client sends: coordinates, passengers, and day/hour where the data has them."""
    spec = {"pickuplon": "float32", "pickuplat": "float32", "dropofflon": "float32",
            "dropofflat": "float32", "passengers": "float32"}
    if data.columns == "feateng":
        spec.update({"dayofweek": "string", "hourofday": "int32"})
    return spec
