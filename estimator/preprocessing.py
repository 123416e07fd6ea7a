"""Host-side preprocessing: the public contract between an Estimator, its input and its export.

A ``Preprocessing`` runs on the host (numpy, in the input thread) around the jitted
computation: ``features`` and ``labels`` on every batch before it reaches the devices,
``predictions`` on every batch of predictions ``Estimator.predict`` yields, and
``to_json`` describes the feature side for an export, so the model server re-runs it
without the model's code. Give one as ``Estimator(..., preprocessing=...)``.

``NoPreprocessing`` is the identity (the default); ``FeatureColumnPreprocessing`` is the
feature columns' host transform plus a head's label vocabulary and class names (what the
canned estimators use).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["FeatureColumnPreprocessing", "NoPreprocessing", "Preprocessing"]


@runtime_checkable
class Preprocessing(Protocol):
    """Host-side transforms of one batch; every method returns a new value and keeps no state.

    ``features(batch)`` and ``labels(batch)`` get numpy arrays (or the batch's pytree)
    and return what the devices see; ``predictions(batch)`` gets a dict of numpy
    prediction arrays and returns what ``predict`` yields; ``to_json()`` is the
    JSON-able description an export stores (``{}`` when serving needs nothing).

    The model server re-runs only what that JSON describes in its own terms: a
    ``feature_columns`` config (as ``FeatureColumnPreprocessing`` writes it), and
    ``class_names`` to turn ``class_ids`` into ``classes``. Other host code in
    ``features`` is not served: express it as feature columns, or as a device-side
    ``ServingInput.transform`` / in ``model_fn``, so serving sees what training saw.
    """

    def features(self, batch: Any) -> Any:
        """The features the model sees, from a batch of the input's features."""
        ...

    def labels(self, batch: Any) -> Any:
        """The labels the model sees, from a batch of the input's labels (None stays None)."""
        ...

    def predictions(self, batch: Any) -> Any:
        """What ``predict`` yields, from a batch of the model's (numpy) predictions."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The export's ``preprocessing.json``: how serving re-runs ``features``."""
        ...


class NoPreprocessing:
    """The identity ``Preprocessing``: batches reach the devices and the caller unchanged."""

    def features(self, batch: Any) -> Any:
        """``batch`` unchanged."""
        return batch

    def labels(self, batch: Any) -> Any:
        """``batch`` unchanged."""
        return batch

    def predictions(self, batch: Any) -> Any:
        """``batch`` unchanged."""
        return batch

    def to_json(self) -> dict[str, Any]:
        """Nothing to re-run: ``{}``."""
        return {}


class FeatureColumnPreprocessing:
    """Feature columns' host side (vocabularies, hash buckets, crosses) and a head's label side.

    Args:
      feature_columns: every column the model reads; their host transform runs on
        each batch of features and is exported as JSON.
      head: optional canned ``Head``: its ``host_labels`` (label vocabulary to ids,
        range checks) runs on each batch of labels and its ``host_predictions``
        (``classes`` strings) on each batch of predictions; its label vocabulary and
        class names are exported, so the server answers the same ``classes``.
    """

    def __init__(self, feature_columns: Iterable[Any], head: Any = None):
        from estimator import feature_column as fc

        self.feature_columns = list(feature_columns)
        for column in self.feature_columns:
            if not isinstance(column, fc.FeatureColumn):
                raise fc.FeatureColumnError(
                    f"feature_columns must be feature columns, got {type(column).__name__}: {column!r}.")
        self.head = head
        self._transform = fc.HostTransform(self.feature_columns)
        self._config = fc.preprocessing_config(self.feature_columns)

    def features(self, batch: Any) -> Any:
        """The columns' host transform of ``batch`` (numeric features and ``<column>__ids``)."""
        return self._transform(batch)

    def labels(self, batch: Any) -> Any:
        """The head's host-side labels (ids for a label vocabulary), or ``batch`` without a head."""
        return batch if self.head is None else self.head.host_labels(batch)

    def predictions(self, batch: Any) -> Any:
        """The head's host additions (``classes`` / ``all_classes`` bytes), or ``batch`` without a head."""
        if self.head is None or not isinstance(batch, Mapping):
            return batch
        return self.head.host_predictions({k: np.asarray(v) for k, v in batch.items()})

    def to_json(self) -> dict[str, Any]:
        """The feature columns' config, plus the head's ``label_vocabulary`` and ``class_names``."""
        config = dict(self._config)
        vocab = getattr(self.head, "label_vocabulary", None)
        if vocab is not None:
            config["label_vocabulary"] = list(vocab)
        names = getattr(self.head, "class_names", None)
        if names is not None:  # the loader maps class_ids to these, as predict() does
            config["class_names"] = list(names)
        return config


def check_preprocessing(preprocessing: Any) -> Preprocessing:
    """``preprocessing``, or ``NoPreprocessing()`` for None; a ``TypeError`` naming what is missing."""
    if preprocessing is None:
        return NoPreprocessing()
    missing = [m for m in ("features", "labels", "predictions", "to_json")
               if not callable(getattr(preprocessing, m, None))]
    if missing:
        raise TypeError(
            f"preprocessing must implement estimator.preprocessing.Preprocessing; {type(preprocessing).__name__} "
            f"lacks {missing}. Subclass NoPreprocessing to override only some of them.")
    return preprocessing
