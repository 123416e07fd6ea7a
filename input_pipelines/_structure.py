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


def builder(like: Any) -> Callable[[Sequence[Any]], Any]:
    """A function `flat -> tree`: `like` with its leaves (in `leaves` order) replaced by `flat`,
    made once per structure so that rebuilding a batch is a few dict/tuple constructions."""
    return _builder(like, 0)[0]


def _builder(tree: Any, start: int) -> tuple[Callable[[Sequence[Any]], Any], int]:
    """(builder of `tree` from the leaves at `start`..., number of leaves it takes)."""
    if not isinstance(tree, (dict, tuple, list)):
        return (lambda flat: flat[start]), 1
    keys = list(tree) if isinstance(tree, dict) else None
    parts, pos, simple = [], start, True
    for value in (tree.values() if keys is not None else tree):
        fn, n = _builder(value, pos)
        simple = simple and not isinstance(value, (dict, tuple, list))
        parts.append(fn)
        pos += n
    stop, kind = pos, type(tree)
    if keys is not None:
        if simple:
            return (lambda flat: dict(zip(keys, flat[start:stop], strict=True))), stop - start
        return (lambda flat: {k: fn(flat) for k, fn in zip(keys, parts, strict=True)}), stop - start
    if simple and kind in (tuple, list):
        return (lambda flat: kind(flat[start:stop])), stop - start
    return (lambda flat: kind([fn(flat) for fn in parts])), stop - start


class Span(NamedTuple):
    """Rows `start:stop` of a chunk whose leaves (in `leaves` order) are `flat` and whose
    structure `build(flat)` makes; with `index`, rows `index[start:stop]` of it instead (a
    gather left for the consumer to do once)."""

    build: Callable[[Sequence[Any]], Any]
    flat: list[Any]
    start: int
    stop: int
    index: np.ndarray | None = None


def whole_span(chunk: Any) -> Span:
    """All rows of a chunk as a span."""
    return Span(builder(chunk), leaves(chunk), 0, num_rows(chunk))


def join_spans(spans: Sequence[Span], copy: bool = False) -> Any:
    """The rows of `spans` as one chunk: one concatenation (or gather) per leaf, never a loop
    per span and leaf; a single span without index is a view unless `copy`."""
    first = spans[0]
    if len(spans) == 1:
        a, b = first.start, first.stop
        if first.index is not None:
            index = first.index[a:b]
            return first.build([x.take(index, axis=0) for x in first.flat])
        return first.build([x[a:b].copy() if copy else x[a:b] for x in first.flat])
    if all(s.index is None for s in spans):  # the common case (a shuffle window), inline
        columns = zip(*([x[s.start:s.stop] for x in s.flat] for s in spans), strict=True)
    else:
        columns = zip(*([_span_rows(x, s) for x in s.flat] for s in spans), strict=True)
    return first.build([np.concatenate(parts) for parts in columns])


def _span_rows(leaf: np.ndarray, span: Span) -> np.ndarray:
    if span.index is None:
        return leaf[span.start:span.stop]
    return leaf.take(span.index[span.start:span.stop], axis=0)


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
