"""Host side of feature columns: raw feature batches to the ids and values the device reads."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from estimator.feature_column.base import (
    IDS_SUFFIX,
    MISSING_ID,
    CategoricalColumn,
    FeatureColumn,
    FeatureColumnError,
    _id_dtype,
    _is_string,
)
from estimator.feature_column.categorical import (
    HashedCategoricalColumn,
    IdentityCategoricalColumn,
    VocabularyCategoricalColumn,
    WeightedCategoricalColumn,
)
from estimator.feature_column.config import columns_from_config
from estimator.feature_column.crossed import CrossedColumn
from estimator.feature_column.numeric import BucketizedColumn, NumericColumn


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
