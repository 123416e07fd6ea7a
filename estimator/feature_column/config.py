"""Columns to and from JSON: what an export stores to re-run the host side."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from estimator.feature_column.base import FeatureColumn, FeatureColumnError
from estimator.feature_column.categorical import (
    HashedCategoricalColumn,
    IdentityCategoricalColumn,
    VocabularyCategoricalColumn,
    WeightedCategoricalColumn,
)
from estimator.feature_column.crossed import CrossedColumn
from estimator.feature_column.dense import EmbeddingColumn, IndicatorColumn
from estimator.feature_column.numeric import BucketizedColumn, NumericColumn


def columns_to_config(columns: Iterable[FeatureColumn]) -> list[dict[str, Any]]:
    """JSON-able configs of ``columns`` (``columns_from_config`` inverts it)."""
    return [c.to_config() for c in columns]


_TYPES = {cls.__name__: cls for cls in (
    NumericColumn, BucketizedColumn, VocabularyCategoricalColumn, HashedCategoricalColumn,
    IdentityCategoricalColumn, CrossedColumn, WeightedCategoricalColumn, IndicatorColumn,
    EmbeddingColumn)}


def _from_config(config: Any) -> Any:
    if isinstance(config, dict) and "type" in config:
        cls = _TYPES.get(config["type"])
        if cls is None:
            raise FeatureColumnError(
                f"unknown feature column type {config['type']!r}; known: {sorted(_TYPES)}.")
        kwargs = {}
        for field in dataclasses.fields(cls):
            value = config.get(field.name, field.default)
            if isinstance(value, list):
                value = tuple(_from_config(v) for v in value)
            kwargs[field.name] = _from_config(value)
        return cls(**kwargs)
    return config


def columns_from_config(config: Iterable[Mapping[str, Any]]) -> list[FeatureColumn]:
    """Rebuilds columns from ``columns_to_config`` output (normalizer_fn is not restored)."""
    return [_from_config(dict(c)) for c in config]


def preprocessing_config(columns: Iterable[FeatureColumn]) -> dict[str, Any]:
    """What an export stores to re-run the host side: ``{"feature_columns": [...]}``."""
    return {"feature_columns": columns_to_config(columns)}
