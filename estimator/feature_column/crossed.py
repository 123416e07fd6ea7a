"""``crossed_column``: hashed crosses of raw features and categorical columns (host side)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from estimator.feature_column import base
from estimator.feature_column._fingerprint import fingerprint64, fingerprint_cat64
from estimator.feature_column.base import CategoricalColumn, FeatureColumn, FeatureColumnError
from estimator.feature_column.categorical import HashedCategoricalColumn, WeightedCategoricalColumn


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
                raw = base._as_2d(base._get(features, leaf, self))
                if base._is_string(raw):
                    text = base._as_str(raw, self)
                    parts.append((fingerprint64(text), text != ""))
                    continue
                vals = base._as_int(raw, self)
                vals = np.where(vals == -1, base.MISSING_ID, vals)
            # an id of -1 (out of vocabulary) is hashed as the int64 -1, as TensorFlow does
            parts.append((vals.astype(np.uint64), vals != base.MISSING_ID))
        batch = parts[0][0].shape[0]
        hashed = np.full((batch, 1), np.uint64(base.DEFAULT_HASH_KEY if self.hash_key is None else self.hash_key))
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
