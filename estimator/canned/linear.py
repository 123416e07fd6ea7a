"""Linear models: ``LinearRegressor``, ``LinearClassifier``, ``LinearEstimator`` (tf.estimator's).

Logits are ``feature_column.linear_model``: one weight vector per column
(``linear/linear_model/<column>/weights``, zeros at start) plus
``linear/linear_model/bias_weights``. Default optimizer: FTRL with learning
rate 0.2, as tf's ``LinearRegressorV2`` (``optimizer='Ftrl'`` with
``_LEARNING_RATE = 0.2``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax

from estimator import feature_column as fc
from estimator import nn
from estimator.canned._canned import CannedEstimator, classification_head, regression_head
from estimator.canned.head import Head, LossReduction
from estimator.canned.optimizers import get_optimizer
from estimator.run_config import RunConfig

__all__ = ["LinearClassifier", "LinearEstimator", "LinearRegressor", "linear_logits"]

LEARNING_RATE = 0.2  # tf.estimator linear.py _LEARNING_RATE


def linear_logits(features: Mapping[str, Any], feature_columns: Iterable[fc.FeatureColumn], units: int,
                  sparse_combiner: str = "sum") -> jax.Array:
    """``[batch, units]`` logits of a linear model over ``feature_columns`` (scope ``linear``)."""
    with nn.scope("linear"):
        return fc.linear_model(features, feature_columns, units, sparse_combiner)


class LinearEstimator(CannedEstimator):
    """tf ``LinearEstimator``: a linear model with any head.

    Args:
      head: a ``Head`` (e.g. ``MultiLabelHead``).
      feature_columns: columns of the linear model (categorical or dense).
      optimizer: name, ``{"name": ..., ...}``, optax transformation or callable; default
        ``"Ftrl"`` at rate 0.2; ``None`` gives tf's other default, FTRL at
        ``min(0.2, 1 / sqrt(len(feature_columns)))``.
      learning_rate: rate of a named optimizer (default 0.2, tf's).
      sparse_combiner: ``"sum"`` (default), ``"mean"`` or ``"sqrtn"`` over a
        categorical column's ids in one example.
      feature_engineering_fn: device-side ``features -> features`` before the columns.
    """

    def __init__(self, head: Head, feature_columns: Iterable[fc.FeatureColumn], model_dir: str | None = None,
                 optimizer: Any = "Ftrl", config: RunConfig | None = None, warm_start_from: Any = None,
                 sparse_combiner: str = "sum", learning_rate: float | None = None,
                 feature_engineering_fn: Any = None):
        columns = list(feature_columns)
        if not columns:
            raise fc.FeatureColumnError("LinearEstimator needs at least one feature column.")
        fc._check_combiner(sparse_combiner, "sparse_combiner")
        default_rate = LEARNING_RATE
        if optimizer is None:  # tf's _get_default_optimizer_v2: FTRL at min(0.2, 1 / sqrt(#columns))
            optimizer, default_rate = "Ftrl", min(LEARNING_RATE, 1.0 / math.sqrt(len(columns)))

        def logits_fn(features: dict[str, Any], mode: str) -> jax.Array:
            return linear_logits(features, columns, head.logits_dimension, sparse_combiner)

        super().__init__(head=head, feature_columns=columns, logits_fn=logits_fn,
                         optimizer=get_optimizer(optimizer, learning_rate, default_rate), model_dir=model_dir,
                         config=config, warm_start_from=warm_start_from,
                         feature_engineering_fn=feature_engineering_fn)


class LinearRegressor(LinearEstimator):
    """tf ``LinearRegressor``: linear regression of ``label_dimension`` targets (squared error)."""

    def __init__(self, feature_columns: Iterable[fc.FeatureColumn], model_dir: str | None = None,
                 label_dimension: int = 1, weight_column: Any = None, optimizer: Any = "Ftrl",
                 config: RunConfig | None = None, warm_start_from: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, sparse_combiner: str = "sum",
                 learning_rate: float | None = None, feature_engineering_fn: Any = None):
        super().__init__(head=regression_head(label_dimension, weight_column, loss_reduction),
                         feature_columns=feature_columns, model_dir=model_dir, optimizer=optimizer, config=config,
                         warm_start_from=warm_start_from, sparse_combiner=sparse_combiner,
                         learning_rate=learning_rate, feature_engineering_fn=feature_engineering_fn)


class LinearClassifier(LinearEstimator):
    """tf ``LinearClassifier``: logistic (2 classes) or softmax regression."""

    def __init__(self, feature_columns: Iterable[fc.FeatureColumn], model_dir: str | None = None,
                 n_classes: int = 2, weight_column: Any = None, label_vocabulary: Any = None,
                 optimizer: Any = "Ftrl", config: RunConfig | None = None, warm_start_from: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, sparse_combiner: str = "sum",
                 learning_rate: float | None = None, feature_engineering_fn: Any = None):
        super().__init__(head=classification_head(n_classes, weight_column, label_vocabulary, loss_reduction),
                         feature_columns=feature_columns, model_dir=model_dir, optimizer=optimizer, config=config,
                         warm_start_from=warm_start_from, sparse_combiner=sparse_combiner,
                         learning_rate=learning_rate, feature_engineering_fn=feature_engineering_fn)
