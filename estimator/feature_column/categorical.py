"""Categorical columns with ids from a vocabulary, a hash or the value itself, and weighted ids."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from estimator.feature_column._fingerprint import fingerprint64
from estimator.feature_column.base import (
    MISSING_ID,
    CategoricalColumn,
    FeatureColumn,
    FeatureColumnError,
    _as_2d,
    _as_int,
    _as_str,
    _check_categorical,
    _get,
    _is_string,
)
from input_pipelines import fs


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
        with fs.open(vocabulary_file, "r", encoding="utf-8", newline="") as f:  # a local path or a URL
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
