"""The common part of canned estimators: a head, a logits function, feature columns on the host.

A canned estimator is a plain ``Estimator`` built, as tf.estimator's are, from a
``model_fn`` (``canned_model_fn``: ``head.create_estimator_spec`` over the logits of
``logits_fn``) and a ``FeatureColumnPreprocessing`` (the feature columns' host side, the
head's label vocabulary and ``classes`` strings), passed to ``Estimator.__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import optax

from estimator import feature_column as fc
from estimator.canned.head import Head, HeadError
from estimator.estimator import Estimator
from estimator.preprocessing import FeatureColumnPreprocessing
from estimator.run_config import RunConfig
from estimator.spec import EstimatorSpec, ModeKeys

FeatureEngineeringFn = Callable[[dict[str, Any]], dict[str, Any]]
LogitsFn = Callable[[dict[str, Any], str], jax.Array]


def canned_model_fn(head: Head, logits_fn: LogitsFn, optimizer: optax.GradientTransformation,
                    feature_engineering_fn: FeatureEngineeringFn | None = None) -> Callable[..., EstimatorSpec]:
    """``model_fn(features, labels, mode)``: ``head.create_estimator_spec`` over ``logits_fn(features, mode)``.

    ``feature_engineering_fn`` (optional, device side) runs first; ``optimizer`` trains.
    """

    def model_fn(features: Any, labels: Any, mode: str) -> EstimatorSpec:
        features = dict(features)
        if feature_engineering_fn is not None:
            features = dict(feature_engineering_fn(features))
        logits = logits_fn(features, mode)
        train_optimizer = optimizer if mode == ModeKeys.TRAIN else None
        return head.create_estimator_spec(features, mode, logits, labels, optimizer=train_optimizer)

    return model_fn


class CannedEstimator(Estimator):
    """Base of the canned estimators: ``Estimator(model_fn=canned_model_fn(...), preprocessing=...)``.

    Args (keywords only):
      head: the ``Head`` (loss, predictions, metrics, host-side labels and classes).
      feature_columns: every column the model reads (host side runs for all).
      logits_fn: ``(features, mode) -> [batch, head.logits_dimension]`` logits.
      optimizer: the optax transformation that trains.
      model_dir, config, warm_start_from: as for ``Estimator``.
      feature_engineering_fn: optional ``features -> features`` jnp function
        run on the device before the feature columns, inside the jitted (and
        exported) computation; it sees the host-transformed features (numeric
        features and ``<column>__ids``), so engineered numeric features can feed
        numeric and bucketized columns.
    """

    def __init__(self, *, head: Head, feature_columns: Iterable[fc.FeatureColumn], logits_fn: LogitsFn,
                 optimizer: optax.GradientTransformation, model_dir: str | None = None,
                 config: RunConfig | None = None, warm_start_from: Any = None,
                 feature_engineering_fn: FeatureEngineeringFn | None = None):
        if not isinstance(head, Head):
            raise HeadError(f"head must be an estimator.canned.head.Head, got {type(head).__name__}.")
        if feature_engineering_fn is not None and not callable(feature_engineering_fn):
            raise TypeError("feature_engineering_fn must be a callable features -> features.")
        self._head = head
        super().__init__(
            model_fn=canned_model_fn(head, logits_fn, optimizer, feature_engineering_fn),
            preprocessing=FeatureColumnPreprocessing(feature_columns or [], head),
            model_dir=model_dir,
            config=config,
            warm_start_from=warm_start_from,
        )

    @property
    def head(self) -> Head:
        """The head of this estimator."""
        return self._head


def regression_head(label_dimension: int, weight_column: Any, loss_reduction: str) -> Head:
    """The RegressionHead of a ``*Regressor``."""
    from estimator.canned.head import RegressionHead

    return RegressionHead(label_dimension, weight_column, loss_reduction)


def classification_head(n_classes: int, weight_column: Any, label_vocabulary: Any, loss_reduction: str) -> Head:
    """BinaryClassHead for 2 classes, MultiClassHead for more (as tf's ``*Classifier``)."""
    from estimator.canned.head import BinaryClassHead, MultiClassHead

    if n_classes == 2:
        return BinaryClassHead(weight_column, label_vocabulary=label_vocabulary, loss_reduction=loss_reduction)
    return MultiClassHead(n_classes, weight_column, label_vocabulary, loss_reduction)
