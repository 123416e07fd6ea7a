"""Wide-and-deep models: ``DNNLinearCombinedRegressor`` / ``Classifier`` / ``Estimator``.

Logits are the sum of a linear model (parameters under ``linear/``) and a DNN
(parameters under ``dnn/``), with tf.estimator's names. Each part is trained by
its own optimizer over its own parameters (``optax.multi_transform`` keyed by
the top-level scope). Defaults as tf's ``dnn_linear_combined.py``: FTRL for the
linear part with learning rate ``min(0.005, 1 / sqrt(#linear columns))`` and
Adagrad with learning rate 0.001 for the DNN part.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import optax

from estimator import feature_column as fc
from estimator.canned._canned import CannedEstimator, classification_head, regression_head
from estimator.canned.dnn import _check_hidden_units, dnn_logits
from estimator.canned.head import Head, LossReduction
from estimator.canned.linear import linear_logits
from estimator.canned.optimizers import get_optimizer
from estimator.run_config import RunConfig
from estimator.spec import ModeKeys

__all__ = ["DNNLinearCombinedClassifier", "DNNLinearCombinedEstimator", "DNNLinearCombinedRegressor"]

DNN_LEARNING_RATE = 0.001  # tf.estimator dnn_linear_combined.py _DNN_LEARNING_RATE
LINEAR_LEARNING_RATE = 0.005  # tf.estimator dnn_linear_combined.py _LINEAR_LEARNING_RATE


def linear_learning_rate(num_linear_feature_columns: int) -> float:
    """tf's default linear rate of wide-and-deep: ``min(0.005, 1 / sqrt(n))``."""
    return min(LINEAR_LEARNING_RATE, 1.0 / math.sqrt(num_linear_feature_columns))


class DNNLinearCombinedEstimator(CannedEstimator):
    """tf ``DNNLinearCombinedEstimator``: linear + DNN logits with any head.

    Args:
      head: a ``Head``.
      linear_feature_columns / dnn_feature_columns: columns of each part (at least one part).
      linear_optimizer / dnn_optimizer: name, ``{"name": ...}``, optax transformation or callable.
      linear_learning_rate / dnn_learning_rate: rates of named optimizers (tf defaults otherwise).
      dnn_hidden_units, dnn_activation_fn, dnn_dropout, batch_norm: the DNN part (as ``DNNEstimator``).
      linear_sparse_combiner: combiner of categorical ids in the linear part.
      feature_engineering_fn: device-side ``features -> features`` before the columns.
    """

    def __init__(self, head: Head, model_dir: str | None = None,
                 linear_feature_columns: Iterable[fc.FeatureColumn] | None = None, linear_optimizer: Any = "Ftrl",
                 dnn_feature_columns: Iterable[fc.FeatureColumn] | None = None, dnn_optimizer: Any = "Adagrad",
                 dnn_hidden_units: Sequence[int] | None = None, dnn_activation_fn: str | Callable = "relu",
                 dnn_dropout: float | None = None, config: RunConfig | None = None,
                 warm_start_from: Any = None, batch_norm: bool = False, linear_sparse_combiner: str = "sum",
                 linear_learning_rate: float | None = None, dnn_learning_rate: float | None = None,
                 feature_engineering_fn: Any = None):
        linear_columns = list(linear_feature_columns or [])
        dnn_columns = list(dnn_feature_columns or [])
        if not linear_columns and not dnn_columns:
            raise ValueError("Either linear_feature_columns or dnn_feature_columns must be defined.")
        if dnn_columns and not dnn_hidden_units:
            raise ValueError("dnn_hidden_units must be given when dnn_feature_columns are.")
        hidden_units = _check_hidden_units(dnn_hidden_units, dnn_dropout) if dnn_columns else ()
        fc._check_combiner(linear_sparse_combiner, "linear_sparse_combiner")

        def logits_fn(features: dict[str, Any], mode: str) -> jax.Array:
            units = head.logits_dimension
            parts = []
            if dnn_columns:
                parts.append(dnn_logits(features, dnn_columns, hidden_units, units, dnn_activation_fn,
                                        dnn_dropout, bool(batch_norm), mode == ModeKeys.TRAIN))
            if linear_columns:
                parts.append(linear_logits(features, linear_columns, units, linear_sparse_combiner))
            return parts[0] if len(parts) == 1 else parts[0] + parts[1]

        transforms = {
            "linear": get_optimizer(linear_optimizer, linear_learning_rate,
                                    linear_learning_rate_default(linear_columns)),
            "dnn": get_optimizer(dnn_optimizer, dnn_learning_rate, DNN_LEARNING_RATE),
        }
        super().__init__(head=head, feature_columns=linear_columns + dnn_columns, logits_fn=logits_fn,
                         optimizer=_per_part_optimizer(transforms), model_dir=model_dir, config=config,
                         warm_start_from=warm_start_from, feature_engineering_fn=feature_engineering_fn)


def _per_part_optimizer(transforms: dict[str, optax.GradientTransformation]) -> optax.GradientTransformation:
    """``transforms[part]`` for the parameters under scope ``part`` (``linear`` / ``dnn``)."""

    def labels(params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - set(transforms)
        if unknown:
            raise ValueError(f"DNNLinearCombined parameters outside 'linear'/'dnn': {sorted(unknown)}.")
        return {k: jax.tree.map(lambda _, k=k: k, v) for k, v in params.items()}

    return optax.multi_transform(transforms, labels)


def linear_learning_rate_default(linear_columns: list) -> float:
    """The linear part's default rate for these columns (``LINEAR_LEARNING_RATE`` without columns)."""
    return linear_learning_rate(len(linear_columns)) if linear_columns else LINEAR_LEARNING_RATE


class DNNLinearCombinedRegressor(DNNLinearCombinedEstimator):
    """tf ``DNNLinearCombinedRegressor``: wide-and-deep regression."""

    def __init__(self, model_dir: str | None = None,
                 linear_feature_columns: Iterable[fc.FeatureColumn] | None = None, linear_optimizer: Any = "Ftrl",
                 dnn_feature_columns: Iterable[fc.FeatureColumn] | None = None, dnn_optimizer: Any = "Adagrad",
                 dnn_hidden_units: Sequence[int] | None = None, dnn_activation_fn: str | Callable = "relu",
                 dnn_dropout: float | None = None, label_dimension: int = 1, weight_column: Any = None,
                 config: RunConfig | None = None, warm_start_from: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, batch_norm: bool = False,
                 linear_sparse_combiner: str = "sum", linear_learning_rate: float | None = None,
                 dnn_learning_rate: float | None = None, feature_engineering_fn: Any = None):
        super().__init__(regression_head(label_dimension, weight_column, loss_reduction), model_dir,
                         linear_feature_columns, linear_optimizer, dnn_feature_columns, dnn_optimizer,
                         dnn_hidden_units, dnn_activation_fn, dnn_dropout, config, warm_start_from, batch_norm,
                         linear_sparse_combiner, linear_learning_rate, dnn_learning_rate, feature_engineering_fn)


class DNNLinearCombinedClassifier(DNNLinearCombinedEstimator):
    """tf ``DNNLinearCombinedClassifier``: wide-and-deep classification."""

    def __init__(self, model_dir: str | None = None,
                 linear_feature_columns: Iterable[fc.FeatureColumn] | None = None, linear_optimizer: Any = "Ftrl",
                 dnn_feature_columns: Iterable[fc.FeatureColumn] | None = None, dnn_optimizer: Any = "Adagrad",
                 dnn_hidden_units: Sequence[int] | None = None, dnn_activation_fn: str | Callable = "relu",
                 dnn_dropout: float | None = None, n_classes: int = 2, weight_column: Any = None,
                 label_vocabulary: Any = None, config: RunConfig | None = None, warm_start_from: Any = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, batch_norm: bool = False,
                 linear_sparse_combiner: str = "sum", linear_learning_rate: float | None = None,
                 dnn_learning_rate: float | None = None, feature_engineering_fn: Any = None):
        super().__init__(classification_head(n_classes, weight_column, label_vocabulary, loss_reduction),
                         model_dir, linear_feature_columns, linear_optimizer, dnn_feature_columns, dnn_optimizer,
                         dnn_hidden_units, dnn_activation_fn, dnn_dropout, config, warm_start_from, batch_norm,
                         linear_sparse_combiner, linear_learning_rate, dnn_learning_rate, feature_engineering_fn)
