"""The common part of canned estimators: feature columns on the host, a head, a logits function.

A canned estimator is an ``Estimator`` whose ``model_fn`` is
``head.create_estimator_spec(logits=self._logits(features, mode))``. Around
that it runs, on the host in the input thread, the feature columns' host side
(a ``feature_column.HostTransform``) on every batch and the head's label
conversion (``label_vocabulary``, through ``_host_preprocess_labels``), adds ``classes`` strings to predictions,
and exports the host side as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import optax

from estimator import feature_column as fc
from estimator.canned.head import Head, HeadError
from estimator.estimator import Estimator
from estimator.run_config import RunConfig
from estimator.spec import EstimatorSpec, ModeKeys

FeatureEngineeringFn = Callable[[dict[str, Any]], dict[str, Any]]


def _check_columns(columns: Iterable[Any], what: str) -> list[fc.FeatureColumn]:
    columns = list(columns or [])
    for c in columns:
        if not isinstance(c, fc.FeatureColumn):
            raise fc.FeatureColumnError(f"{what} must be feature columns, got {type(c).__name__}: {c!r}.")
    return columns


class CannedEstimator(Estimator):
    """Base of the canned estimators. Subclasses implement ``_logits`` and ``_train_optimizer``.

    Args:
      head: the ``Head`` (loss, predictions, metrics).
      feature_columns: every column the model reads (host side runs for all).
      model_dir, config, warm_start_from: as for ``Estimator``.
      feature_engineering_fn: optional ``features -> features`` jnp function
        run on the device before the feature columns, inside the jitted (and
        exported) computation; it sees the host-transformed features (numeric
        features and ``<column>__ids``), so engineered numeric features can feed
        numeric and bucketized columns.
    """

    def __init__(self, head: Head, feature_columns: Iterable[fc.FeatureColumn], model_dir: str | None = None,
                 config: RunConfig | None = None, warm_start_from: Any = None,
                 feature_engineering_fn: FeatureEngineeringFn | None = None):
        if not isinstance(head, Head):
            raise HeadError(f"head must be an estimator.canned.head.Head, got {type(head).__name__}.")
        if feature_engineering_fn is not None and not callable(feature_engineering_fn):
            raise TypeError("feature_engineering_fn must be a callable features -> features.")
        self._head = head
        self._all_columns = _check_columns(feature_columns, "feature_columns")
        self._host_transform = fc.HostTransform(self._all_columns)
        self._feature_engineering_fn = feature_engineering_fn
        super().__init__(model_dir=model_dir, config=config, warm_start_from=warm_start_from)

    @property
    def head(self) -> Head:
        """The head of this estimator."""
        return self._head

    # ------------------------------------------------------------------ host side
    def _host_preprocess(self, features: Any) -> Any:
        return self._host_transform(features)

    def _export_preprocessing(self) -> dict[str, Any]:
        config = fc.preprocessing_config(self._all_columns)
        vocab = getattr(self._head, "label_vocabulary", None)
        if vocab is not None:
            config["label_vocabulary"] = list(vocab)
        names = getattr(self._head, "class_names", None)
        if names is not None:  # the loader maps class_ids to these, as predict() does (host_predictions)
            config["class_names"] = list(names)
        return config

    def _host_preprocess_labels(self, labels: Any) -> Any:
        return self._head.host_labels(labels)

    def predict(self, input_fn: Callable, predict_keys: list[str] | None = None, hooks: list | None = None,
                checkpoint_path: str | None = None, yield_single_examples: bool = True) -> Iterator[Any]:
        """As ``Estimator.predict``; classifiers also yield ``classes`` / ``all_classes`` (bytes, as tf)."""
        wanted = None if predict_keys is None else list(predict_keys)
        device_keys = None
        if wanted is not None:
            device_keys = sorted({"class_ids" if k == "classes" else "all_class_ids" if k == "all_classes" else k
                                  for k in wanted})
        for batch in super().predict(input_fn, device_keys, hooks, checkpoint_path, yield_single_examples=False):
            out = self._head.host_predictions({k: np.asarray(v) for k, v in batch.items()})
            if wanted is not None:
                out = {k: out[k] for k in wanted}
            if not yield_single_examples:
                yield out
                continue
            for i in range(len(next(iter(out.values())))):
                yield {k: v[i] for k, v in out.items()}

    # ------------------------------------------------------------------ device side
    def _logits(self, features: dict[str, Any], mode: str) -> jax.Array:
        raise NotImplementedError

    def _train_optimizer(self) -> optax.GradientTransformation:
        raise NotImplementedError

    def model_fn(self, features: Any, labels: Any, mode: str, params: Mapping[str, Any]) -> EstimatorSpec:
        """Logits from ``_logits``, then ``head.create_estimator_spec``."""
        del params
        features = dict(features)
        if self._feature_engineering_fn is not None:
            features = dict(self._feature_engineering_fn(features))
        logits = self._logits(features, mode)
        optimizer = self._train_optimizer() if mode == ModeKeys.TRAIN else None
        return self._head.create_estimator_spec(features, mode, logits, labels, optimizer=optimizer)


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
