"""Helpers for columnar chunks: nested dicts/tuples whose leaves are numpy arrays.

A *chunk* holds N rows: every leaf has the same leading dimension N. Stages pass chunks, so
slicing, gathering and concatenating rows are a few numpy calls per chunk, never a loop per row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from input_pipelines.errors import StructureError


def map_structure(fn: Callable[..., Any], *trees: Any) -> Any:
    """Apply `fn` to matching leaves of `trees` (dicts, tuples and lists are containers)."""
    first = trees[0]
    if len(trees) == 1:  # fast path: most calls map a single chunk
        if isinstance(first, dict):
            return {k: map_structure(fn, v) for k, v in first.items()}
        if isinstance(first, (tuple, list)):
            return type(first)([map_structure(fn, v) for v in first])
        return fn(first)
    if isinstance(first, dict):
        return {k: map_structure(fn, *(t[k] for t in trees)) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(map_structure(fn, *parts) for parts in zip(*trees, strict=True))
    return fn(*trees)


def leaves(tree: Any) -> list[Any]:
    """The leaves of `tree` in a fixed order."""
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [leaf for v in tree for leaf in leaves(v)]
    return [tree]


def as_arrays(tree: Any) -> Any:
    """Convert every leaf to a numpy array (strings become object arrays)."""

    def convert(x: Any) -> np.ndarray:
        a = np.asarray(x)
        if a.dtype.kind == "U":
            a = a.astype(object)
        return a

    return map_structure(convert, tree)


def num_rows(chunk: Any) -> int:
    """Number of rows of a chunk (leading dimension of its leaves, which must agree)."""
    lv = leaves(chunk)
    if not lv:
        raise StructureError("an element has no arrays; give at least one array or column")
    n = np.shape(lv[0])[0] if np.ndim(lv[0]) else None
    for leaf in lv:
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
            shapes = [np.shape(x) for x in lv]
            raise StructureError(
                f"arrays of a chunk must share their leading (row) dimension; got shapes {shapes}"
            )
    return int(n)


def slice_rows(chunk: Any, start: int, stop: int) -> Any:
    """Rows start:stop of a chunk (views, no copy)."""
    return map_structure(lambda a: a[start:stop], chunk)


def take_rows(chunk: Any, index: np.ndarray) -> Any:
    """Rows selected by an integer index array or boolean mask (copies)."""
    if index.dtype == bool:
        return map_structure(lambda a: a[index], chunk)
    return map_structure(lambda a: np.take(a, index, axis=0), chunk)


def unflatten(like: Any, flat: Sequence[Any]) -> Any:
    """`like` with its leaves (in `leaves` order) replaced by `flat`."""
    it = iter(flat)

    def build(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {k: build(v) for k, v in tree.items()}
        if isinstance(tree, (tuple, list)):
            return type(tree)([build(v) for v in tree])
        return next(it)

    return build(like)


class Span(NamedTuple):
    """Rows `start:stop` of `chunk`, whose leaves (in `leaves` order) are `flat`."""

    chunk: Any
    flat: list[Any]
    start: int
    stop: int


def whole_span(chunk: Any) -> Span:
    """All rows of a chunk as a span."""
    return Span(chunk, leaves(chunk), 0, num_rows(chunk))


def join_spans(spans: Sequence[Span], copy: bool = False) -> Any:
    """The rows of `spans` as one chunk: one concatenation per leaf, never a loop per span
    and leaf; a single span is a view unless `copy`."""
    first = spans[0]
    if len(spans) == 1:
        a, b = first.start, first.stop
        return unflatten(first.chunk, [x[a:b].copy() if copy else x[a:b] for x in first.flat])
    columns = zip(*([x[s.start:s.stop] for x in s.flat] for s in spans), strict=True)
    return unflatten(first.chunk, [np.concatenate(parts) for parts in columns])


def concat_rows(chunks: Sequence[Any]) -> Any:
    """Concatenate chunks along the row axis (a single chunk is returned as is)."""
    if len(chunks) == 1:
        return chunks[0]
    return map_structure(lambda *parts: np.concatenate(parts), *chunks)


def stack(elements: Sequence[Any]) -> Any:
    """Stack equally shaped elements into a chunk with a new leading axis."""
    try:
        return map_structure(lambda *parts: np.stack(parts), *elements)
    except ValueError as e:
        raise StructureError(
            f"cannot batch elements of different shapes ({e}); use drop_remainder=True or "
            "batch rows before batching batches"
        ) from e


def row(chunk: Any, i: int) -> Any:
    """Row i of a chunk as an element (leaves lose their leading axis)."""
    return map_structure(lambda a: a[i], chunk)
