"""Base classes, constants and shared helpers of feature columns (both sides)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

IDS_SUFFIX = "__ids"
MISSING_ID = -2  # host-internal leaf id of a missing input (a cross drops it; -1 it crosses)
MAX_DEVICE_BUCKETS = 2**31 - 1  # ids are int32 on the device (jax_enable_x64 is off)
DEFAULT_HASH_KEY = 0xDECAFCAFFE  # tf sparse_ops._DEFAULT_HASH_KEY, the crossed_column default
COMBINERS = ("mean", "sum", "sqrtn")


class FeatureColumnError(ValueError):
    """A feature column is misconfigured, or a feature does not fit its column."""


class FeatureColumn:
    """Base of all columns: a name, the raw keys it reads, and a JSON config."""

    @property
    def name(self) -> str:
        """tf.estimator's column name (used in parameter names and sort order)."""
        raise NotImplementedError

    @property
    def parents(self) -> tuple[FeatureColumn, ...]:
        """Columns this one is built on."""
        return ()

    def to_config(self) -> dict[str, Any]:
        """JSON-able description; ``columns_from_config`` rebuilds the column from it."""
        config: dict[str, Any] = {"type": type(self).__name__}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, FeatureColumn):
                value = value.to_config()
            elif isinstance(value, tuple):
                value = [v.to_config() if isinstance(v, FeatureColumn) else v for v in value]
            elif callable(value):
                value = None  # normalizer_fn: runs on the device, lives in the exported computation
            config[field.name] = value
        return config


class DenseColumn(FeatureColumn):
    """A column that gives a dense ``[batch, dim]`` float block of the input layer."""

    @property
    def dim(self) -> int:
        """Width of this column's block in the input layer."""
        raise NotImplementedError

    def dense(self, features: Mapping[str, Any]) -> jax.Array:
        """Device side: the ``[batch, dim]`` float32 block (may create parameters)."""
        raise NotImplementedError


class CategoricalColumn(FeatureColumn):
    """A column of integer ids in ``[0, num_buckets)`` (``-1`` = missing)."""

    @property
    def num_buckets(self) -> int:
        """Number of distinct ids."""
        raise NotImplementedError

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        """Host side: int64 ids ``[batch, n]`` of the raw features, ``-1`` where missing."""
        raise NotImplementedError

    def _leaf_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        """Host ids as a ``crossed_column`` reads them: ``MISSING_ID`` where there is no entry.

        TensorFlow crosses every id an input has, also the ``-1`` a vocabulary gives
        out-of-vocabulary values; only missing inputs (dropped before the lookup)
        take no part. Here ``-1`` therefore stays an id and missing is ``MISSING_ID``.
        """
        ids = self.host_ids(features)
        return np.where(ids < 0, MISSING_ID, ids)

    def device_ids(self, features: Mapping[str, Any]) -> tuple[jax.Array, jax.Array | None]:
        """Device side: (int32 ids ``[batch, n]``, optional float weights ``[batch, n]``)."""
        _check_device_buckets(self)
        return _get(features, self.name + IDS_SUFFIX, self).astype(jnp.int32), None


# ----------------------------------------------------------------------------- helpers


def _get(features: Mapping[str, Any], key: str, column: FeatureColumn) -> Any:
    if key not in features:
        hint = ""
        if key.endswith(IDS_SUFFIX):
            hint = (" It is made on the host by transform_features (canned estimators run it on "
                    "every batch); a model_fn using feature columns must apply it to its input.")
        raise FeatureColumnError(
            f"feature column {column.name!r} needs feature {key!r}, which is not among the "
            f"features {sorted(features)}.{hint}")
    return features[key]


def _as_2d(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    return arr.reshape(arr.shape[0], -1)


def _is_string(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "SUO"


def _as_str(arr: np.ndarray, column: FeatureColumn) -> np.ndarray:
    """``U`` array of the values as text; None/NaN-free object arrays and bytes accepted."""
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8")
    if arr.dtype.kind == "O":
        flat = ["" if v is None else v.decode("utf-8") if isinstance(v, bytes) else str(v)
                for v in arr.reshape(-1)]
        return np.array(flat, dtype=str).reshape(arr.shape) if flat else arr.astype(str)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str)
    raise FeatureColumnError(
        f"feature column {column.name!r} expects string or integer values, got {arr.dtype}; "
        "bucketize floats with bucketized_column instead.")


def _as_int(arr: np.ndarray, column: FeatureColumn) -> np.ndarray:
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isnan(arr) | (arr == np.round(arr))):
        return np.where(np.isnan(arr), -1, arr).astype(np.int64)
    raise FeatureColumnError(
        f"feature column {column.name!r} expects integer values, got dtype {arr.dtype}.")


def _id_dtype(column: CategoricalColumn) -> type:
    """int32 where every id of ``column`` fits (what the device takes), else int64."""
    return np.int32 if column.num_buckets <= MAX_DEVICE_BUCKETS else np.int64


def _check_device_buckets(column: CategoricalColumn) -> None:
    if column.num_buckets > MAX_DEVICE_BUCKETS:
        raise FeatureColumnError(
            f"feature column {column.name!r} has {column.num_buckets} buckets, more than the "
            f"{MAX_DEVICE_BUCKETS} int32 ids the device side can index; its host ids "
            "(transform_features, host_ids) are int64 and right, but an embedding, indicator or "
            "linear model over it needs hash_bucket_size < 2**31.")


def _check_combiner(combiner: str, what: str) -> None:
    if combiner not in COMBINERS:
        raise FeatureColumnError(f"{what}: combiner must be one of {COMBINERS}, got {combiner!r}.")


def _check_categorical(column: Any, what: str) -> None:
    if not isinstance(column, CategoricalColumn):
        raise FeatureColumnError(
            f"{what} needs a categorical column (categorical_column_with_*, bucketized_column, "
            f"crossed_column, weighted_categorical_column), got {type(column).__name__}.")


def _combine(values: jax.Array, mask: jax.Array, weights: jax.Array | None, combiner: str) -> jax.Array:
    """Weighted combination over axis 1 of ``values`` [B, n, d]; empty rows give zeros.

    As tf's ``safe_embedding_lookup_sparse``: sum = sum_i w_i v_i; mean divides by
    sum_i w_i; sqrtn divides by sqrt(sum_i w_i^2). For mean and sqrtn TensorFlow
    first drops the entries whose weight is not positive (``_prune_invalid_weights``);
    sum keeps negative weights.
    """
    if weights is not None and combiner != "sum":
        mask = mask & (weights > 0)
    w = mask.astype(values.dtype) if weights is None else jnp.where(mask, weights, 0).astype(values.dtype)
    total = jnp.einsum("bn,bnd->bd", w, values)
    if combiner == "sum":
        return total
    denom = jnp.sum(w, axis=1) if combiner == "mean" else jnp.sqrt(jnp.sum(w * w, axis=1))
    safe = jnp.where(denom > 0, denom, 1.0)
    return jnp.where(denom[:, None] > 0, total / safe[:, None], 0.0)
