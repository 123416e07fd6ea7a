"""Deprecated private hooks of ``Estimator`` subclasses, honoured for one more release.

Before ``preprocessing=`` and ``servable()`` existed, subclasses overrode
``_host_preprocess``, ``_host_preprocess_labels``, ``_export_preprocessing``,
``_predict_apply`` and ``_restore_params``. An override still works, with a
``DeprecationWarning`` naming its public replacement. Remove this module in the
release after next.
"""

from __future__ import annotations

import warnings
from typing import Any

REPLACEMENTS = {
    "_host_preprocess": "preprocessing=... with a features(batch) method",
    "_host_preprocess_labels": "preprocessing=... with a labels(batch) method",
    "_export_preprocessing": "preprocessing=... with a to_json() method",
    "_predict_apply": "the model_fn's PREDICT mode (servable().predict_fn is built from it)",
    "_restore_params": "servable(checkpoint_path)",
}


class DeprecatedHooks:
    """The old private hooks with their default behaviour; ``Estimator`` inherits them for one release."""

    def _host_preprocess(self, features: Any) -> Any:
        """Deprecated: ``preprocessing.features``."""
        return self._given_preprocessing.features(features)

    def _host_preprocess_labels(self, labels: Any) -> Any:
        """Deprecated: ``preprocessing.labels``."""
        return self._given_preprocessing.labels(labels)

    def _export_preprocessing(self) -> dict[str, Any]:
        """Deprecated: ``preprocessing.to_json()``."""
        return self._given_preprocessing.to_json()

    def _predict_apply(self, params: Any, model_state: Any, features: Any) -> Any:
        """Deprecated: ``servable().predict_fn``."""
        return self._model_predict_fn()(params, model_state, features)

    def _restore_params(self, checkpoint_path: str | None = None) -> tuple[Any, Any, int]:
        """Deprecated: ``servable(checkpoint_path)``'s params, model_state and global_step."""
        return self._read_variables(checkpoint_path)


def overridden(cls: type) -> frozenset[str]:
    """The deprecated hooks ``cls`` overrides, after warning about each."""
    names = frozenset(n for n in REPLACEMENTS if getattr(cls, n) is not getattr(DeprecatedHooks, n))
    for name in sorted(names):
        warnings.warn(
            f"{cls.__qualname__}.{name} overrides a private Estimator hook, deprecated and removed in the next "
            f"release: use {REPLACEMENTS[name]} instead.", DeprecationWarning, stacklevel=3)
    return names


class LegacyPreprocessing:
    """A ``Preprocessing`` that calls an estimator's overridden host hooks, else ``given``'s methods."""

    def __init__(self, estimator: Any, given: Any, names: frozenset[str]):
        self._estimator, self._given, self._names = estimator, given, names

    def features(self, batch: Any) -> Any:
        """The subclass's ``_host_preprocess``, or the given preprocessing's ``features``."""
        if "_host_preprocess" in self._names:
            return self._estimator._host_preprocess(batch)
        return self._given.features(batch)

    def labels(self, batch: Any) -> Any:
        """The subclass's ``_host_preprocess_labels``, or the given preprocessing's ``labels``."""
        if "_host_preprocess_labels" in self._names:
            return self._estimator._host_preprocess_labels(batch)
        return self._given.labels(batch)

    def predictions(self, batch: Any) -> Any:
        """The given preprocessing's ``predictions`` (no private hook existed for these)."""
        return self._given.predictions(batch)

    def to_json(self) -> dict[str, Any]:
        """The subclass's ``_export_preprocessing``, or the given preprocessing's ``to_json``."""
        if "_export_preprocessing" in self._names:
            return self._estimator._export_preprocessing()
        return self._given.to_json()
