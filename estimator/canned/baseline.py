"""Baselines: ``BaselineRegressor`` / ``BaselineClassifier`` / ``BaselineEstimator`` (tf.estimator's).

The logits ignore the features: one learned bias per logit, ``baseline/bias``
(zeros at start), so a regressor learns the (weighted) label mean and a
classifier the class prior. Default optimizer: FTRL with learning rate 0.3 (tf's).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from estimator import nn
from estimator.canned._canned import CannedEstimator, classification_head, regression_head
from estimator.canned.head import Head, LossReduction
from estimator.canned.optimizers import get_optimizer
from estimator.run_config import RunConfig

__all__ = ["BaselineClassifier", "BaselineEstimator", "BaselineRegressor"]

LEARNING_RATE = 0.3  # tf.estimator baseline.py: "FtrlOptimizer with a default learning rate of 0.3"


class BaselineEstimator(CannedEstimator):
    """tf ``BaselineEstimator``: bias-only logits with any head."""

    def __init__(self, head: Head, model_dir: str | None = None, optimizer: Any = "Ftrl",
                 config: RunConfig | None = None, warm_start_from: Any = None,
                 learning_rate: float | None = None):

        def logits_fn(features: dict[str, Any], mode: str) -> jax.Array:
            leaves = [x for x in jax.tree.leaves(features) if jnp.ndim(x) > 0]
            if not leaves:
                raise ValueError("Baseline estimators need at least one batched feature to know the batch size.")
            with nn.scope("baseline"):
                bias = nn.get_parameter("bias", (head.logits_dimension,), init=jax.nn.initializers.zeros)
            return jnp.broadcast_to(bias, (jnp.shape(leaves[0])[0], head.logits_dimension))

        super().__init__(head=head, feature_columns=[], logits_fn=logits_fn,
                         optimizer=get_optimizer(optimizer, learning_rate, LEARNING_RATE), model_dir=model_dir,
                         config=config, warm_start_from=warm_start_from)


class BaselineRegressor(BaselineEstimator):
    """tf ``BaselineRegressor``: predicts the learned label mean."""

    def __init__(self, model_dir: str | None = None, label_dimension: int = 1, weight_column: Any = None,
                 optimizer: Any = "Ftrl", config: RunConfig | None = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, warm_start_from: Any = None,
                 learning_rate: float | None = None):
        super().__init__(head=regression_head(label_dimension, weight_column, loss_reduction),
                         model_dir=model_dir, optimizer=optimizer, config=config, warm_start_from=warm_start_from,
                         learning_rate=learning_rate)


class BaselineClassifier(BaselineEstimator):
    """tf ``BaselineClassifier``: predicts the learned class prior."""

    def __init__(self, model_dir: str | None = None, n_classes: int = 2, weight_column: Any = None,
                 label_vocabulary: Any = None, optimizer: Any = "Ftrl", config: RunConfig | None = None,
                 loss_reduction: str = LossReduction.SUM_OVER_BATCH_SIZE, warm_start_from: Any = None,
                 learning_rate: float | None = None):
        super().__init__(head=classification_head(n_classes, weight_column, label_vocabulary, loss_reduction),
                         model_dir=model_dir, optimizer=optimizer, config=config, warm_start_from=warm_start_from,
                         learning_rate=learning_rate)
