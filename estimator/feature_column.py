"""Feature columns with tf.estimator's semantics, split into a host side and a device side.

A feature column says how a raw input feature becomes model input. Each column
has two halves:

* the **host side** (numpy, vectorised, run on every batch in the input thread
  by ``transform_features``): strings to ids by vocabulary, hashing (TensorFlow's
  FarmHash ``Fingerprint64``, so ids equal TensorFlow's), identity range checks
  and crossing. It replaces string features by int32 id arrays named
  ``"<column name>__ids"`` (int64 for columns of ``2**31`` buckets or more, which
  the 32-bit device side refuses) and passes numeric features through;
* the **device side** (jnp, inside the jitted ``model_fn``): bucketizing numbers,
  one-hot / indicator counts, embedding lookups with their combiners, and the
  concatenation into the input layer (``input_layer``) or the weighted sum of a
  linear model (``linear_model``).

Multivalent (variable-length) categorical inputs are dense 2-D arrays
``[batch, n]`` padded with a missing marker: ``""`` for strings and ``-1`` for
integers (TensorFlow's ignore values); a missing entry contributes nothing.
Sparse tensors are not used.

Columns serialize to JSON (``columns_to_config`` / ``columns_from_config``) so an
exported model can run the host side with library code only; vocabulary files are
read once and embedded. ``numeric_column``'s ``normalizer_fn`` is a Python
callable that runs on the device side (it becomes part of the exported
computation) and is therefore not part of the JSON.

Deviation from TensorFlow worth knowing: ``crossed_column`` inputs given by raw key
are dense arrays here, so, as in TensorFlow's ``SparseCross`` with dense inputs,
the crossed categorical columns come first and raw keys after them; ``""``/``-1``
entries of raw keys are treated as missing (TensorFlow would hash them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from estimator import nn
from estimator._fingerprint import fingerprint64, fingerprint_cat64

__all__ = [
    "BucketizedColumn", "CategoricalColumn", "CrossedColumn", "DenseColumn", "EmbeddingColumn",
    "FeatureColumn", "FeatureColumnError", "HashedCategoricalColumn", "HostTransform", "IdentityCategoricalColumn",
    "IndicatorColumn", "NumericColumn", "VocabularyCategoricalColumn", "WeightedCategoricalColumn",
    "apply_preprocessing", "bucketized_column", "categorical_column_with_hash_bucket",
    "categorical_column_with_identity", "categorical_column_with_vocabulary_file",
    "categorical_column_with_vocabulary_list", "columns_from_config", "columns_to_config",
    "crossed_column", "embedding_column", "host_transform_from_json", "indicator_column", "input_layer",
    "linear_model",
    "numeric_column", "preprocessing_config", "transform_features", "weighted_categorical_column",
]

IDS_SUFFIX = "__ids"
MISSING_ID = -2  # host-internal leaf id of a missing input (a cross drops it; -1 it crosses)
MAX_DEVICE_BUCKETS = 2**31 - 1  # ids are int32 on the device (jax_enable_x64 is off)
DEFAULT_HASH_KEY = 0xDECAFCAFFE  # tf sparse_ops._DEFAULT_HASH_KEY, the crossed_column default
COMBINERS = ("mean", "sum", "sqrtn")


class FeatureColumnError(ValueError):
    """A feature column is misconfigured, or a feature does not fit its column."""


# ----------------------------------------------------------------------------- base classes


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


# ----------------------------------------------------------------------------- numeric / bucketized


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


# ----------------------------------------------------------------------------- categorical


def _missing(arr: np.ndarray) -> np.ndarray:
    return arr == "" if arr.dtype.kind == "U" else arr == -1


@dataclasses.dataclass(frozen=True)
class VocabularyCategoricalColumn(CategoricalColumn):
    """Ids by position in a vocabulary; see :func:`categorical_column_with_vocabulary_list`."""

    key: str
    vocabulary_list: tuple[Any, ...]
    default_value: int = -1
    num_oov_buckets: int = 0
    vocabulary_file: str | None = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def num_buckets(self) -> int:
        return len(self.vocabulary_list) + self.num_oov_buckets

    @property
    def _is_string(self) -> bool:
        return isinstance(self.vocabulary_list[0], str)

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        return np.maximum(self._leaf_ids(features), -1)

    def _leaf_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        raw = _as_2d(_get(features, self.key, self))
        values = _as_str(raw, self) if self._is_string else _as_int(raw, self)
        uniq, inverse = np.unique(values, return_inverse=True)
        table = {v: i for i, v in enumerate(self.vocabulary_list)}
        ids = np.array([table.get(v.item(), -2) for v in uniq], np.int64)
        oov = ids == -2
        if oov.any():
            if self.num_oov_buckets:
                text = uniq[oov] if self._is_string else uniq[oov].astype(str)
                ids[oov] = len(self.vocabulary_list) + (
                    fingerprint64(text) % np.uint64(self.num_oov_buckets)).astype(np.int64)
            else:
                ids[oov] = self.default_value
        ids[_missing(uniq)] = MISSING_ID
        return ids[inverse.reshape(-1)].reshape(values.shape)


def categorical_column_with_vocabulary_list(key: str, vocabulary_list: Sequence[Any],
                                            dtype: Any = None, default_value: int = -1,
                                            num_oov_buckets: int = 0) -> VocabularyCategoricalColumn:
    """tf ``categorical_column_with_vocabulary_list``: id = position in the vocabulary.

    Out-of-vocabulary values get ``default_value`` (-1: dropped) or, with
    ``num_oov_buckets``, ``len(vocabulary) + Fingerprint64(value) % num_oov_buckets``
    (TensorFlow's ids). ``""`` / ``-1`` inputs are missing.
    """
    vocab = list(vocabulary_list)
    if not vocab:
        raise FeatureColumnError(f"vocabulary column {key!r}: the vocabulary is empty.")
    is_str = dtype in (str, "string") or (dtype is None and isinstance(vocab[0], str | bytes))
    vocab = [v.decode("utf-8") if isinstance(v, bytes) else (str(v) if is_str else int(v)) for v in vocab]
    if len(set(vocab)) != len(vocab):
        dupes = sorted({v for v in vocab if vocab.count(v) > 1}, key=str)
        raise FeatureColumnError(f"vocabulary column {key!r}: duplicate entries {dupes[:10]}.")
    if num_oov_buckets < 0:
        raise FeatureColumnError(f"vocabulary column {key!r}: num_oov_buckets must be >= 0.")
    if num_oov_buckets and default_value != -1:
        raise FeatureColumnError(
            f"vocabulary column {key!r}: set default_value or num_oov_buckets, not both.")
    if not -1 <= default_value < len(vocab) + num_oov_buckets:
        raise FeatureColumnError(
            f"vocabulary column {key!r}: default_value {default_value} is not a valid id.")
    return VocabularyCategoricalColumn(str(key), tuple(vocab), int(default_value), int(num_oov_buckets))


def categorical_column_with_vocabulary_file(key: str, vocabulary_file: str,
                                            vocabulary_size: int | None = None,
                                            dtype: Any = str, default_value: int = -1,
                                            num_oov_buckets: int = 0) -> VocabularyCategoricalColumn:
    """tf ``categorical_column_with_vocabulary_file``: one vocabulary entry per line.

    The file is read now (first ``vocabulary_size`` lines) and the vocabulary is
    embedded in the column's JSON config, so exports do not need the file. As in
    TensorFlow, lines end at ``"\\n"`` only: a ``"\\r"`` before it and Unicode line
    separators (``\\u2028``, ``\\x85``, ...) are part of the entry.
    """
    try:
        with open(vocabulary_file, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines[-1] == "":  # the file ends with a newline
            lines.pop()
    except OSError as e:
        raise FeatureColumnError(f"vocabulary column {key!r}: cannot read {vocabulary_file!r}: {e}") from e
    if vocabulary_size is not None:
        if vocabulary_size > len(lines):
            raise FeatureColumnError(
                f"vocabulary column {key!r}: vocabulary_size {vocabulary_size} but "
                f"{vocabulary_file!r} has only {len(lines)} lines.")
        lines = lines[:vocabulary_size]
    col = categorical_column_with_vocabulary_list(
        key, lines if dtype in (str, "string") else [int(v) for v in lines], dtype,
        default_value, num_oov_buckets)
    return dataclasses.replace(col, vocabulary_file=str(vocabulary_file))


@dataclasses.dataclass(frozen=True)
class HashedCategoricalColumn(CategoricalColumn):
    """Ids by hashing; see :func:`categorical_column_with_hash_bucket`."""

    key: str
    hash_bucket_size: int

    @property
    def name(self) -> str:
        return self.key

    @property
    def num_buckets(self) -> int:
        return self.hash_bucket_size

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        raw = _as_2d(_get(features, self.key, self))
        values = _as_str(raw, self)
        ids = (fingerprint64(values) % np.uint64(self.hash_bucket_size)).astype(np.int64)
        missing = values == "" if _is_string(raw) else _as_int(raw, self) == -1
        return np.where(missing, -1, ids)


def categorical_column_with_hash_bucket(key: str, hash_bucket_size: int,
                                        dtype: Any = str) -> HashedCategoricalColumn:
    """tf ``categorical_column_with_hash_bucket``: id = ``Fingerprint64(value) % size``.

    Integers are hashed as their decimal strings (as TensorFlow does). The ids
    equal ``tf.strings.to_hash_bucket_fast``'s; stable across runs and machines.
    ``""`` and, for integer features, ``-1`` are missing (no id), as in TensorFlow.
    """
    del dtype  # strings and integers are both accepted
    if int(hash_bucket_size) < 1:
        raise FeatureColumnError(f"hash bucket column {key!r}: hash_bucket_size must be >= 1.")
    return HashedCategoricalColumn(str(key), int(hash_bucket_size))


@dataclasses.dataclass(frozen=True)
class IdentityCategoricalColumn(CategoricalColumn):
    """Integer inputs used as ids; see :func:`categorical_column_with_identity`."""

    key: str
    bucket_count: int
    default_value: int | None = None

    @property
    def name(self) -> str:
        return self.key

    @property
    def num_buckets(self) -> int:
        return self.bucket_count

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        ids = _as_int(_as_2d(_get(features, self.key, self)), self)
        bad = (ids < -1) | (ids >= self.bucket_count)
        if bad.any():
            if self.default_value is None:
                raise FeatureColumnError(
                    f"identity column {self.key!r}: values {np.unique(ids[bad])[:10].tolist()} are "
                    f"outside [0, {self.bucket_count}); set default_value to map them to an id.")
            ids = np.where(bad, self.default_value, ids)
        return ids


def categorical_column_with_identity(key: str, num_buckets: int,
                                     default_value: int | None = None) -> IdentityCategoricalColumn:
    """tf ``categorical_column_with_identity``: integer values in ``[0, num_buckets)`` are ids.

    Out-of-range values raise, or become ``default_value`` when it is set; ``-1`` is missing.
    """
    if int(num_buckets) < 1:
        raise FeatureColumnError(f"identity column {key!r}: num_buckets must be >= 1.")
    if default_value is not None and not 0 <= default_value < num_buckets:
        raise FeatureColumnError(
            f"identity column {key!r}: default_value {default_value} not in [0, {num_buckets}).")
    return IdentityCategoricalColumn(str(key), int(num_buckets), default_value)


@dataclasses.dataclass(frozen=True)
class CrossedColumn(CategoricalColumn):
    """Hashed crosses of several features; see :func:`crossed_column`."""

    keys: tuple[Any, ...]
    hash_bucket_size: int
    hash_key: int | None = None

    def _leaves(self) -> list[Any]:
        leaves: list[Any] = []
        for key in self.keys:
            leaves.extend(key._leaves() if isinstance(key, CrossedColumn) else [key])
        return leaves

    @property
    def name(self) -> str:
        return "_X_".join(sorted(k if isinstance(k, str) else k.name for k in self._leaves()))

    @property
    def parents(self) -> tuple[FeatureColumn, ...]:
        return tuple(k for k in self.keys if isinstance(k, FeatureColumn))

    @property
    def num_buckets(self) -> int:
        return self.hash_bucket_size

    def _ordered_leaves(self) -> list[Any]:
        """The crossed inputs in hashing order: categorical columns first, then raw keys."""
        leaves = self._leaves()
        return [k for k in leaves if not isinstance(k, str)] + [k for k in leaves if isinstance(k, str)]

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        ordered = self._ordered_leaves()
        return self._cross_ids(features, [None if isinstance(k, str) else k._leaf_ids(features) for k in ordered])

    def _cross_ids(self, features: Mapping[str, Any], leaf_ids: Sequence[np.ndarray | None]) -> np.ndarray:
        """Ids of the cross; ``leaf_ids[i]``: ``_ordered_leaves()[i]._leaf_ids`` (None: a raw key)."""
        parts = []
        for leaf, vals in zip(self._ordered_leaves(), leaf_ids, strict=True):
            if vals is None:
                raw = _as_2d(_get(features, leaf, self))
                if _is_string(raw):
                    text = _as_str(raw, self)
                    parts.append((fingerprint64(text), text != ""))
                    continue
                vals = _as_int(raw, self)
                vals = np.where(vals == -1, MISSING_ID, vals)
            # an id of -1 (out of vocabulary) is hashed as the int64 -1, as TensorFlow does
            parts.append((vals.astype(np.uint64), vals != MISSING_ID))
        batch = parts[0][0].shape[0]
        hashed = np.full((batch, 1), np.uint64(DEFAULT_HASH_KEY if self.hash_key is None else self.hash_key))
        valid = np.ones((batch, 1), bool)
        for fp, ok in parts:  # cartesian product, the last input varying fastest (as tf)
            hashed = fingerprint_cat64(hashed[:, :, None], fp[:, None, :]).reshape(batch, -1)
            valid = (valid[:, :, None] & ok[:, None, :]).reshape(batch, -1)
        ids = (hashed % np.uint64(self.hash_bucket_size)).astype(np.int64)
        return np.where(valid, ids, -1)


def crossed_column(keys: Sequence[Any], hash_bucket_size: int, hash_key: int | None = None) -> CrossedColumn:
    """tf ``crossed_column``: ``FingerprintCat64`` of the inputs' fingerprints, mod the size.

    ``keys`` are raw feature names (strings are fingerprinted, integers used as is)
    or categorical columns (their ids: bucketized, vocabulary, identity, crossed;
    a vocabulary's out-of-vocabulary id -1 is crossed too). The ids equal
    TensorFlow's for the same inputs (see the module docstring for the input
    order). Crossing runs on the host. As TensorFlow, hashed columns are refused:
    cross the raw feature name instead.
    """
    keys = tuple(keys)
    if len(keys) < 2:
        raise FeatureColumnError(f"crossed_column needs at least 2 keys, got {len(keys)}.")
    for key in keys:
        if isinstance(key, WeightedCategoricalColumn):
            raise FeatureColumnError(f"crossed_column does not support weighted columns ({key.name}).")
        if isinstance(key, HashedCategoricalColumn):
            raise FeatureColumnError(
                f"crossed_column: categorical_column_with_hash_bucket ({key.name!r}) is not supported "
                f"for crossing (as in TensorFlow: hashing before crossing adds collisions); pass the "
                f"feature name {key.key!r} instead.")
        if not isinstance(key, str | CategoricalColumn):
            raise FeatureColumnError(
                f"crossed_column keys must be feature names or categorical columns, got "
                f"{type(key).__name__} (bucketize numeric columns first).")
    if int(hash_bucket_size) < 1:
        raise FeatureColumnError("crossed_column: hash_bucket_size must be >= 1.")
    return CrossedColumn(keys, int(hash_bucket_size), hash_key)


@dataclasses.dataclass(frozen=True)
class WeightedCategoricalColumn(CategoricalColumn):
    """Ids with per-id weights from another feature; see :func:`weighted_categorical_column`."""

    categorical_column: CategoricalColumn
    weight_feature_key: str

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_weighted_by_{self.weight_feature_key}"

    @property
    def parents(self) -> tuple[FeatureColumn, ...]:
        return (self.categorical_column,)

    @property
    def num_buckets(self) -> int:
        return self.categorical_column.num_buckets

    def host_ids(self, features: Mapping[str, Any]) -> np.ndarray:
        return self.categorical_column.host_ids(features)

    def device_ids(self, features: Mapping[str, Any]) -> tuple[jax.Array, jax.Array | None]:
        ids, _ = self.categorical_column.device_ids(features)
        weights = jnp.asarray(_get(features, self.weight_feature_key, self), jnp.float32)
        return ids, weights.reshape(ids.shape)


def weighted_categorical_column(categorical_column: CategoricalColumn, weight_feature_key: str,
                                dtype: Any = "float32") -> WeightedCategoricalColumn:
    """tf ``weighted_categorical_column``: each id weighted by the same-shaped ``weight_feature_key``."""
    del dtype
    _check_categorical(categorical_column, "weighted_categorical_column")
    return WeightedCategoricalColumn(categorical_column, str(weight_feature_key))


# ----------------------------------------------------------------------------- dense wrappers


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


# ----------------------------------------------------------------------------- host transform


def _walk(columns: Iterable[FeatureColumn]) -> Iterable[FeatureColumn]:
    for column in columns:
        yield column
        if not isinstance(column, CrossedColumn):  # crosses read their inputs themselves
            yield from _walk(column.parents)


def _host_columns(columns: Iterable[FeatureColumn]) -> list[CategoricalColumn]:
    """Categorical columns whose ids are computed on the host, deduplicated by name."""
    seen: dict[str, CategoricalColumn] = {}
    for column in _walk(columns):
        if isinstance(column, CategoricalColumn) and not isinstance(
                column, BucketizedColumn | WeightedCategoricalColumn):
            seen.setdefault(column.name, column)
    return list(seen.values())


def transform_features(features: Mapping[str, Any], columns: Iterable[FeatureColumn]) -> dict[str, np.ndarray]:
    """Host side of ``columns`` for one batch: the features the device side needs.

    Numeric (and boolean) features pass through (float64 -> float32, int64 ->
    int32, or float32 for values beyond int32); string features are dropped once
    turned into ids; each host-side categorical column adds int32 ids
    ``"<name>__ids"`` of shape ``[batch, n]`` (``-1`` = missing; int64 for a column
    with more than ``2**31 - 1`` buckets, which the device side refuses). A numeric column with a ``default_value`` whose key is
    absent is filled with it. For many batches, :class:`HostTransform` does the
    same with the per-column work prepared once.
    """
    return HostTransform(columns, cross_tables=False)(features)


MAX_CROSS_TABLE = 1 << 18  # combinations of a cross whose ids HostTransform tabulates (int64: 2 MiB)


class HostTransform:
    """``transform_features`` for fixed ``columns``, prepared once and applied to many batches.

    Per batch it computes each categorical column's ids once, also where several
    crosses share it. With ``cross_tables``, a cross of categorical columns with at
    most ``MAX_CROSS_TABLE`` id combinations gets its ids from a table filled at
    construction by the same hashing, so the ids are equal and a batch costs a
    lookup instead of a chain of ``FingerprintCat64`` calls (the export loader and
    the model server use this).
    """

    def __init__(self, columns: Iterable[FeatureColumn], cross_tables: bool = True):
        columns = list(columns)
        self._fills = [c for c in _walk(columns) if isinstance(c, NumericColumn) and c.default_value is not None]
        self._host = _host_columns(columns)
        self._leaves: list[CategoricalColumn] = []  # distinct columns whose ids a batch needs
        self._plan = []  # per host column: (ids name, column, its leaves' indices (None: raw key), cross table)
        for column in self._host:
            if isinstance(column, CrossedColumn):
                ordered = column._ordered_leaves()
                index = [None if isinstance(k, str) else self._leaf_index(k) for k in ordered]
                table = _cross_table(column, ordered) if cross_tables else None
                self._plan.append((column.name + IDS_SUFFIX, column, index, table))
            else:
                self._plan.append((column.name + IDS_SUFFIX, column, [self._leaf_index(column)], None))

    def _leaf_index(self, column: CategoricalColumn) -> int:
        for i, known in enumerate(self._leaves):
            if known == column:
                return i
        self._leaves.append(column)
        return len(self._leaves) - 1

    def __call__(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The model's features for one batch of raw ``features`` (see ``transform_features``)."""
        out: dict[str, np.ndarray] = {}
        batch = None
        for key, value in features.items():
            arr = np.asarray(value)
            batch = arr.shape[0] if arr.ndim and batch is None else batch
            if _is_string(arr):
                continue
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu" and arr.dtype.itemsize == 8:
                fits = arr.size == 0 or (arr.min() >= -(2**31) and arr.max() < 2**31)
                # the device is 32-bit: values beyond int32 would wrap silently, float32 keeps their size
                arr = arr.astype(np.int32 if fits else np.float32)
            out[key] = arr
        for column in self._fills:
            if column.key not in out:
                if batch is None:
                    raise FeatureColumnError(f"cannot fill {column.key!r}: the batch has no features.")
                fill = np.broadcast_to(np.asarray(column.default_value, np.float32), column.shape)
                out[column.key] = np.broadcast_to(fill, (batch, *column.shape)).copy()
        filled = {**features, **{k: v for k, v in out.items() if k not in features}}
        leaf_ids: list[np.ndarray | None] = [None] * len(self._leaves)

        def ids_of(i: int) -> np.ndarray:
            if leaf_ids[i] is None:
                leaf_ids[i] = self._leaves[i]._leaf_ids(filled)
            return leaf_ids[i]

        for name, column, index, table in self._plan:
            parts = [None if i is None else ids_of(i) for i in index]
            if not isinstance(column, CrossedColumn):
                ids = np.maximum(parts[0], -1)
            elif table is None:
                ids = column._cross_ids(filled, parts)
            else:
                ids = _lookup(table, parts)
            out[name] = ids.astype(_id_dtype(column))
        return out


class _CrossTable(NamedTuple):
    ids: np.ndarray  # the cross's id for every combination of leaf ids MISSING_ID..size-1, C order
    sizes: tuple[int, ...]  # num_buckets of each leaf
    offset: int  # flat position of the combination (0, ..., 0)


def _ids_in_range(column: CategoricalColumn) -> bool:
    """Whether ``column._leaf_ids`` gives ids in ``[MISSING_ID, num_buckets)`` whatever the input."""
    if isinstance(column, BucketizedColumn | HashedCategoricalColumn):
        return True
    if isinstance(column, IdentityCategoricalColumn):
        return column.default_value is None or 0 <= column.default_value < column.num_buckets
    if isinstance(column, VocabularyCategoricalColumn):
        return -1 <= column.default_value < column.num_buckets
    return False


def _cross_table(column: CrossedColumn, ordered: list[Any]) -> _CrossTable | None:
    """Every id of a cross of categorical columns with few combinations, or None."""
    if not all(isinstance(k, CategoricalColumn) and _ids_in_range(k) for k in ordered):
        return None
    sizes = tuple(k.num_buckets for k in ordered)
    values = [s - MISSING_ID for s in sizes]  # leaf ids MISSING_ID..size-1
    if math.prod(values) > MAX_CROSS_TABLE:
        return None
    grid = np.indices(values).reshape(len(sizes), -1, 1) + MISSING_ID  # one example per combination
    strides = np.cumprod([1] + values[:0:-1])[::-1]
    return _CrossTable(column._cross_ids({}, list(grid))[:, 0], sizes, -MISSING_ID * int(strides.sum()))


def _lookup(table: _CrossTable, leaf_ids: list[np.ndarray]) -> np.ndarray:
    """The cross's ids from its table: the flat index of each example's combination of leaf ids."""
    batch, k = leaf_ids[0].shape[0], len(leaf_ids)
    width = math.prod(ids.shape[1] for ids in leaf_ids)
    multivalent = width != 1  # then every combination of an example's ids
    flat = None
    for i, (ids, size) in enumerate(zip(leaf_ids, table.sizes, strict=True)):
        if multivalent:
            ids = ids.reshape((batch,) + (1,) * i + (ids.shape[1],) + (1,) * (k - 1 - i))
        flat = ids if flat is None else flat * (size - MISSING_ID) + ids
    return table.ids[flat + table.offset].reshape(batch, width)


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


def apply_preprocessing(config: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Runs the host side described by ``preprocessing_config`` on a batch of raw features."""
    if not config or "feature_columns" not in config:
        return dict(features)
    return transform_features(features, columns_from_config(config["feature_columns"]))


def host_transform_from_json(description: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], dict[str, np.ndarray]]:
    """The host transform of an export's preprocessing JSON (``preprocessing_config`` output).

    Columns are rebuilt once; the returned function maps a raw feature batch to
    the model's features. Keys other than ``feature_columns`` (e.g.
    ``label_vocabulary``) are ignored here.
    """
    if "feature_columns" not in description:
        raise FeatureColumnError(
            f"preprocessing description has no 'feature_columns' (keys: {sorted(description)}).")
    return HostTransform(columns_from_config(description["feature_columns"]))


# ----------------------------------------------------------------------------- device layers


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
