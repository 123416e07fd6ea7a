"""Numeric and bucketized columns: real values and their buckets."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from estimator.feature_column.base import (
    CategoricalColumn,
    DenseColumn,
    FeatureColumn,
    FeatureColumnError,
    _as_2d,
    _get,
)


@dataclasses.dataclass(frozen=True)
class NumericColumn(DenseColumn):
    """Real values of ``key`` with ``shape``; see :func:`numeric_column`."""

    key: str
    shape: tuple[int, ...] = (1,)
    default_value: Any = None
    dtype: str = "float32"
    normalizer_fn: Callable[[jax.Array], jax.Array] | None = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def values(self, features: Mapping[str, Any]) -> jax.Array:
        """Device side: the normalised values, shaped ``[batch, dim]``."""
        x = jnp.asarray(_get(features, self.key, self)).astype(jnp.float32)
        if self.normalizer_fn is not None:
            x = self.normalizer_fn(x)
        return x.reshape(x.shape[0], self.dim)

    def dense(self, features: Mapping[str, Any]) -> jax.Array:
        return self.values(features)


def numeric_column(key: str, shape: int | Sequence[int] = (1,), default_value: Any = None,
                   dtype: str = "float32",
                   normalizer_fn: Callable[[jax.Array], jax.Array] | None = None) -> NumericColumn:
    """tf ``numeric_column``: real-valued ``key`` of ``shape`` (per example).

    ``default_value`` fills the feature on the host when a batch lacks it.
    ``normalizer_fn`` (jnp code) runs on the device, e.g. ``lambda x: (x - 3) / 2``.
    A key absent on the host is passed through, so it may be produced on the device
    by a ``feature_engineering_fn``.
    """
    shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise FeatureColumnError(f"numeric_column {key!r}: shape must be positive ints, got {shape}.")
    if normalizer_fn is not None and not callable(normalizer_fn):
        raise FeatureColumnError(f"numeric_column {key!r}: normalizer_fn must be callable.")
    return NumericColumn(str(key), shape, default_value, str(np.dtype(dtype)), normalizer_fn)


@dataclasses.dataclass(frozen=True)
class BucketizedColumn(DenseColumn, CategoricalColumn):
    """Buckets of a numeric column; see :func:`bucketized_column`."""

    source_column: NumericColumn
    boundaries: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"{self.source_column.name}_bucketized"

    @property
    def parents(self) -> tuple[FeatureColumn, ...]:
        return (self.source_column,)

    @property
    def _per_dim(self) -> int:
        return len(self.boundaries) + 1

    @property
    def num_buckets(self) -> int:
        return self._per_dim * self.source_column.dim

    @property
    def dim(self) -> int:
        return self.num_buckets

    @functools.cached_property
    def _boundaries_f32(self) -> np.ndarray:
        return np.asarray(self.boundaries, np.float32)

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        # Same float32 comparison as the device side, so host and device agree exactly.
        x = _as_2d(_get(features, self.source_column.key, self)).astype(np.float32)
        ids = self._boundaries_f32.searchsorted(x, side="right")
        return ids if x.shape[1] == 1 else ids + self._per_dim * np.arange(x.shape[1])

    def device_ids(self, features: Mapping[str, Any]) -> tuple[jax.Array, jax.Array | None]:
        x = self.source_column.values(features)
        # Few boundaries: one broadcast comparison beats searchsorted's loop (same ids).
        method = "compare_all" if len(self.boundaries) <= 256 else "scan"
        ids = jnp.searchsorted(jnp.asarray(self.boundaries, jnp.float32), x, side="right", method=method)
        return (ids + self._per_dim * jnp.arange(x.shape[1])).astype(jnp.int32), None

    def dense(self, features: Mapping[str, Any]) -> jax.Array:
        ids, _ = self.device_ids(features)
        return jax.nn.one_hot(ids, self.num_buckets, dtype=jnp.float32).sum(axis=1)


def bucketized_column(source_column: NumericColumn, boundaries: Sequence[float]) -> BucketizedColumn:
    """tf ``bucketized_column``: bucket ``i`` holds ``boundaries[i-1] <= x < boundaries[i]``.

    Bucketizing runs on the device (so the source may be an engineered feature),
    except inside a ``crossed_column``, where it runs on the host.
    """
    if not isinstance(source_column, NumericColumn):
        raise FeatureColumnError(
            f"bucketized_column needs a numeric_column source, got {type(source_column).__name__}.")
    bounds = tuple(float(b) for b in boundaries)
    if not bounds or any(b >= c for b, c in zip(bounds, bounds[1:], strict=False)):
        raise FeatureColumnError(
            f"bucketized_column {source_column.key!r}: boundaries must be a non-empty, strictly "
            f"increasing list, got {list(boundaries)}.")
    return BucketizedColumn(source_column, bounds)
