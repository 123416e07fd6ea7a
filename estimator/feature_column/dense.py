"""Device side: indicator and embedding columns, ``input_layer`` and ``linear_model``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from estimator import nn
from estimator.feature_column.base import (
    CategoricalColumn,
    DenseColumn,
    FeatureColumn,
    FeatureColumnError,
    _check_categorical,
    _check_combiner,
    _combine,
)


@dataclasses.dataclass(frozen=True)
class IndicatorColumn(DenseColumn):
    """Multi-hot counts of a categorical column; see :func:`indicator_column`."""

    categorical_column: CategoricalColumn

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_indicator"

    @property
    def parents(self) -> tuple[FeatureColumn, ...]:
        return (self.categorical_column,)

    @property
    def dim(self) -> int:
        return self.categorical_column.num_buckets

    def dense(self, features: Mapping[str, Any]) -> jax.Array:
        ids, weights = self.categorical_column.device_ids(features)
        mask = (ids >= 0).astype(jnp.float32)
        w = mask if weights is None else mask * weights
        return jnp.einsum("bn,bnk->bk", w, jax.nn.one_hot(ids, self.dim, dtype=jnp.float32))


def indicator_column(categorical_column: CategoricalColumn) -> IndicatorColumn:
    """tf ``indicator_column``: ``[batch, num_buckets]`` counts of each id (weights summed if weighted)."""
    _check_categorical(categorical_column, "indicator_column")
    return IndicatorColumn(categorical_column)


@dataclasses.dataclass(frozen=True)
class EmbeddingColumn(DenseColumn):
    """Combined embeddings of a categorical column's ids; see :func:`embedding_column`."""

    categorical_column: CategoricalColumn
    dimension: int
    combiner: str = "mean"
    initializer_stddev: float | None = None
    max_norm: float | None = None
    trainable: bool = True

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_embedding"

    @property
    def parents(self) -> tuple[FeatureColumn, ...]:
        return (self.categorical_column,)

    @property
    def dim(self) -> int:
        return self.dimension

    def dense(self, features: Mapping[str, Any]) -> jax.Array:
        ids, weights = self.categorical_column.device_ids(features)  # first: checks the id range
        stddev = self.initializer_stddev or 1.0 / math.sqrt(self.dimension)
        with nn.scope(self.name):
            table = nn.get_parameter(
                "embedding_weights", (self.categorical_column.num_buckets, self.dimension),
                init=jax.nn.initializers.truncated_normal(stddev))
        if not self.trainable:
            table = jax.lax.stop_gradient(table)
        rows = jnp.take(table, jnp.maximum(ids, 0), axis=0)
        if self.max_norm is not None:
            norm = jnp.linalg.norm(rows, axis=-1, keepdims=True)
            rows = rows * jnp.minimum(1.0, self.max_norm / jnp.maximum(norm, 1e-12))
        return _combine(rows, ids >= 0, weights, self.combiner)


def embedding_column(categorical_column: CategoricalColumn, dimension: int, combiner: str = "mean",
                     initializer_stddev: float | None = None, max_norm: float | None = None,
                     trainable: bool = True) -> EmbeddingColumn:
    """tf ``embedding_column``: ``dimension``-wide embeddings combined by mean / sum / sqrtn.

    The table ``<categorical name>_embedding/embedding_weights`` starts from a
    normal truncated at two standard deviations with stddev ``1/sqrt(dimension)``
    (tf's default; ``initializer_stddev`` overrides it).
    """
    _check_categorical(categorical_column, "embedding_column")
    _check_combiner(combiner, f"embedding_column of {categorical_column.name!r}")
    if int(dimension) < 1:
        raise FeatureColumnError(f"embedding_column {categorical_column.name!r}: dimension must be >= 1.")
    return EmbeddingColumn(categorical_column, int(dimension), combiner, initializer_stddev, max_norm, trainable)


def _sorted(columns: Iterable[FeatureColumn]) -> list[FeatureColumn]:
    return sorted(columns, key=lambda c: c.name)  # tf sorts by name in both layers


def input_layer(features: Mapping[str, Any], feature_columns: Iterable[FeatureColumn]) -> jax.Array:
    """tf ``input_layer``: ``[batch, sum(dim)]``, the dense columns concatenated in name order.

    Creates its parameters (embeddings) under ``input_layer/<column name>/``; call
    it inside ``nn.scope`` s and a ``nn.transform``.
    """
    columns = _sorted(feature_columns)
    for column in columns:
        if not isinstance(column, DenseColumn):
            raise FeatureColumnError(
                f"input_layer takes dense columns; {column.name!r} is a {type(column).__name__}. "
                "Wrap categorical columns in embedding_column or indicator_column.")
    if not columns:
        raise FeatureColumnError("input_layer got no feature columns.")
    with nn.scope("input_layer"):
        return jnp.concatenate([c.dense(features) for c in columns], axis=1)


def linear_model(features: Mapping[str, Any], feature_columns: Iterable[FeatureColumn],
                 units: int = 1, sparse_combiner: str = "sum") -> jax.Array:
    """tf ``linear_model``: ``sum_c f_c(features) + bias``, shape ``[batch, units]``.

    Parameters (zeros at start): ``linear_model/<column name>/weights`` (
    ``[num_buckets, units]`` for categorical columns, combined over each
    example's ids by ``sparse_combiner``; ``[dim, units]`` for dense ones) and
    ``linear_model/bias_weights``.
    """
    _check_combiner(sparse_combiner, "linear_model sparse_combiner")
    columns = _sorted(feature_columns)
    if not columns:
        raise FeatureColumnError("linear_model got no feature columns.")
    zeros = jax.nn.initializers.zeros
    total = None
    with nn.scope("linear_model"):
        for column in columns:
            with nn.scope(column.name):
                if isinstance(column, CategoricalColumn):
                    ids, weights = column.device_ids(features)  # first: checks the id range
                    w = nn.get_parameter("weights", (column.num_buckets, units), init=zeros)
                    rows = jnp.take(w, jnp.maximum(ids, 0), axis=0)
                    part = _combine(rows, ids >= 0, weights, sparse_combiner)
                else:
                    w = nn.get_parameter("weights", (column.dim, units), init=zeros)
                    part = column.dense(features) @ w
            total = part if total is None else total + part
        bias = nn.get_parameter("bias_weights", (units,), init=zeros)
    return total + bias
