"""Feed-forward networks: ``DNNRegressor``, ``DNNClassifier``, ``DNNEstimator`` (tf.estimator's).

The network is ``input_layer`` (dense columns concatenated by name) ->
``hiddenlayer_i`` (Dense + activation, then dropout in training, then batch
norm if asked) -> ``logits``. Parameter names follow tf: ``dnn/hiddenlayer_0/kernel``,
``dnn/hiddenlayer_0/bias``, ``dnn/hiddenlayer_0/batchnorm_0/gamma``,
``dnn/logits/kernel``, ``dnn/input_from_feature_columns/input_layer/<col>_embedding/embedding_weights``.
Kernels start glorot-uniform, biases zero (tf's defaults). Default optimizer:
Adagrad; a named optimizer without ``learning_rate`` steps at the keras class's
own rate (Adagrad, Adam, RMSProp, Ftrl 0.001; SGD 0.01), as TF 2.x's
``DNNClassifier`` / ``DNNRegressor`` do (their ``_LEARNING_RATE = 0.05`` is only
used by the v1 estimators).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

from estimator import feature_column as fc
from estimator import nn
from estimator.canned._canned import CannedEstimator, classification_head, regression_head
from estimator.canned.head import Head, LossReduction
from estimator.canned.optimizers import get_optimizer
from estimator.run_config import RunConfig
from estimator.spec import ModeKeys

__all__ = ["DNNClassifier", "DNNEstimator", "DNNRegressor", "dnn_logits"]

BATCH_NORM_MOMENTUM = 0.999  # tf.estimator dnn.py batch norm layers


def _check_hidden_units(hidden_units: Sequence[int], dropout: float | None) -> tuple[int, ...]:
    units = tuple(int(u) for u in hidden_units)
    if not units or min(units) < 1:
        raise ValueError(f"hidden_units must be a non-empty list of positive ints, got {list(hidden_units)}.")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1) or None, got {dropout}.")
    return units


def dnn_logits(features: Mapping[str, Any], feature_columns: Iterable[fc.FeatureColumn],
               hidden_units: Sequence[int], units: int, activation_fn: str | Callable = "relu",
               dropout: float | None = None, batch_norm: bool = False, training: bool = False) -> jax.Array:
    """``[batch, units]`` logits of the tf.estimator DNN (scope ``dnn``)."""
    with nn.scope("dnn"):
        with nn.scope("input_from_feature_columns"):
            net = fc.input_layer(features, feature_columns)
        for i, width in enumerate(hidden_units):
            net = nn.Dense(width, activation=activation_fn, name=f"hiddenlayer_{i}")(net)
            if dropout and training:
                net = nn.Dropout(dropout, name=f"dropout_{i}")(net, training=True)
            if batch_norm:
                with nn.scope(f"hiddenlayer_{i}"):
                    net = nn.BatchNorm(BATCH_NORM_MOMENTUM, name=f"batchnorm_{i}")(net, training=training)
        return nn.Dense(units, name="logits")(net)


class DNNEstimator(CannedEstimator):
    """tf ``DNNEstimator``: a feed-forward network with any head.

    Args:
      head: a ``Head``.
      hidden_units: widths of the hidden layers, e.g. ``[64, 32]``.
      feature_columns: dense columns (numeric, bucketized, embedding, indicator).
      optimizer: name, ``{"name": ..., ...}``, optax transformation or callable; default Adagrad.
      activation_fn: hidden activation (callable or ``jax.nn`` name), relu by default.
      dropout: fraction of units dropped in training after each hidden layer.
      batch_norm: batch normalisation after each hidden layer.
      learning_rate: rate of a named optimizer (default: the optimizer's own, 0.001 or SGD 0.01, as tf).
      feature_engineering_fn: device-side ``features -> features`` before the columns.
    """

    def __init__(self, head: Head, hidden_units: Sequence[int], feature_columns: Iterable[fc.FeatureColumn],
                 model_dir: str | None = None, optimizer: Any = "Adagrad",
                 activation_fn: str | Callable = "relu", dropout: float | None = None,
                 config: RunConfig | None = None, warm_start_from: Any = None, batch_norm: bool = False,
                 learning_rate: float | None = None, feature_engineering_fn: Any = None):
        columns = list(feature_columns)
        if not columns:
            raise fc.FeatureColumnError("DNNEstimator needs at least one feature column.")
        units = _check_hidden_units(hidden_units, dropout)

        def logits_fn(features: dict[str, Any], mode: str) -> jax.Array:
            return dnn_logits(features, columns, units, head.logits_dimension, activation_fn, dropout,
                              bool(batch_norm), mode == ModeKeys.TRAIN)

        super().__init__(head=head, feature_columns=columns, logits_fn=logits_fn,
                         optimizer=get_optimizer(optimizer, learning_rate), model_dir=model_dir, config=config,
                         warm_start_from=warm_start_from, feature_engineering_fn=feature_engineering_fn)


class DNNRegressor(DNNEstimator):
    """tf ``DNNRegressor``: a feed-forward network regressing ``label_dimension`` targets."""

    def __init__(self, hidden_units: Sequence[int], feature_columns: Iterable[fc.FeatureColumn],
                 model_dir: str | None = None, label_dimension: int = 1, weight_column: Any = None,
                 optimizer: Any = "Adagrad", activation_fn: str | Callable = "relu",
                 dropout: float | None = None, config: RunConfig | None = None, warm_start_from: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, batch_norm: bool = False,
                 learning_rate: float | None = None, feature_engineering_fn: Any = None):
        super().__init__(head=regression_head(label_dimension, weight_column, loss_reduction),
                         hidden_units=hidden_units, feature_columns=feature_columns, model_dir=model_dir,
                         optimizer=optimizer, activation_fn=activation_fn, dropout=dropout, config=config,
                         warm_start_from=warm_start_from, batch_norm=batch_norm, learning_rate=learning_rate,
                         feature_engineering_fn=feature_engineering_fn)


class DNNClassifier(DNNEstimator):
    """tf ``DNNClassifier``: a feed-forward network classifying into ``n_classes``."""

    def __init__(self, hidden_units: Sequence[int], feature_columns: Iterable[fc.FeatureColumn],
                 model_dir: str | None = None, n_classes: int = 2, weight_column: Any = None,
                 label_vocabulary: Any = None, optimizer: Any = "Adagrad",
                 activation_fn: str | Callable = "relu", dropout: float | None = None,
                 config: RunConfig | None = None, warm_start_from: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, batch_norm: bool = False,
                 learning_rate: float | None = None, feature_engineering_fn: Any = None):
        super().__init__(head=classification_head(n_classes, weight_column, label_vocabulary, loss_reduction),
                         hidden_units=hidden_units, feature_columns=feature_columns, model_dir=model_dir,
                         optimizer=optimizer, activation_fn=activation_fn, dropout=dropout, config=config,
                         warm_start_from=warm_start_from, batch_norm=batch_norm, learning_rate=learning_rate,
                         feature_engineering_fn=feature_engineering_fn)
