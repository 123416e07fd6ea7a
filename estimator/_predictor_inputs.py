"""Request inputs for a loaded export, typed as TF Serving types JSON.

Features come as columns (dict of lists/arrays) or rows (list of dicts); strings may be
TF Serving's ``{"b64": ...}`` objects. Numbers are checked like TF Serving does: no
booleans as numbers, no floats as integers, no integer or float overflow.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from estimator._export_dir import STRING


class PredictorInputError(ValueError):
    """The features given to a Predictor do not match its signature (an HTTP 400 when served)."""



# What a JSON value of each Python type is called in messages (never numpy's dtype names).
_KIND_NAMES = {bool: "booleans", int: "integers",
               float: "numbers that are not JSON integers (with a fraction or exponent, or beyond 64 bits)",
               str: "strings",
               dict: "objects", type(None): "nulls"}


_PLAIN_TYPES = frozenset({bool, int, float, str, bytes, dict, list, tuple, type(None)})


def _leaf_types(values: Any, depth: int) -> set[type] | None:
    """Types of the values ``depth`` list levels down (None when the nesting is not lists).

    numpy scalars count as their Python kind (``np.float32`` as float, ...); arrays as lists.
    """
    try:
        for _ in range(depth):
            values = itertools.chain.from_iterable(values)
        types = set(map(type, values))
    except TypeError:
        return None
    if types <= _PLAIN_TYPES:
        return types
    return {_python_kind(t) for t in types}


def _python_kind(t: type) -> type:
    if t is np.ndarray:
        return list
    for numpy_type, python_type in ((np.bool_, bool), (np.integer, int), (np.floating, float),
                                    (np.str_, str), (np.bytes_, bytes)):
        if issubclass(t, numpy_type):
            return python_type
    return t


def _describe(types: set[type]) -> str:
    return " and ".join(sorted(_KIND_NAMES.get(t, t.__name__) for t in types))


_ALLOWED = {"b": frozenset({bool, list, tuple}), "i": frozenset({int, list, tuple}),
            "u": frozenset({int, list, tuple}), "f": frozenset({int, float, list, tuple})}


def _numeric_column(values: Any, target: np.dtype, depth: int, where: str) -> np.ndarray:
    """A numeric feature as TF Serving types JSON: no booleans as numbers, no floats as ints, no overflow."""
    tkind = target.kind
    if isinstance(values, np.ndarray):
        arr = values
        kind = arr.dtype.kind
        if arr.size and kind not in "biuf":
            raise PredictorInputError(f"{where}: expected {target.name} numbers, got non-numeric values.")
        if arr.size and (kind == "b") != (tkind == "b"):
            got = "booleans" if kind == "b" else "numbers"
            raise PredictorInputError(f"{where}: expected {_expected(target)}, got {got}.")
        if arr.size and kind == "f" and tkind in "iu":
            raise PredictorInputError(f"{where}: expected integers ({target.name}), got floating-point numbers.")
    else:
        types = _leaf_types(values, depth)
        if types is not None and not types <= _ALLOWED[tkind]:
            raise PredictorInputError(
                f"{where}: expected {_expected(target)}, got {_describe(types - _ALLOWED[tkind])}.")
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):
            raise PredictorInputError(f"{where}: values are ragged (lists of different lengths) or nested "
                                      "deeper than the input's shape.") from None
        if arr.dtype.kind == "O":
            if types is not None and types <= {int, float}:
                raise PredictorInputError(f"{where}: an integer is too large for {target.name}"
                                          + (f" (range [{_range(target)}])." if tkind in "iu" else "."))
            raise PredictorInputError(f"{where}: values are ragged (lists of different lengths) or nested "
                                      "deeper than the input's shape.")
    cast = arr.astype(target, copy=False)
    if cast is arr:
        return cast
    if tkind in "iu" and arr.size and (cast != arr).any():
        info = np.iinfo(target)
        bad = arr[(arr < info.min) | (arr > info.max)]
        raise PredictorInputError(f"{where}: {int(bad[0])} is out of the {target.name} range [{_range(target)}].")
    # A finite sum means no infinity (one cheap call); else look closer: Infinity tokens are fine.
    if tkind == "f" and arr.dtype.itemsize > target.itemsize and not math.isfinite(cast.sum()):
        overflow = np.isinf(cast) & np.isfinite(arr)
        if overflow.any():
            raise PredictorInputError(f"{where}: {float(arr[overflow][0])!r} is beyond the {target.name} range "
                                      f"(largest magnitude {float(np.finfo(target).max):.7g}).")
    return cast


def _expected(target: np.dtype) -> str:
    return "booleans (true/false)" if target.kind == "b" else (
        f"integers ({target.name})" if target.kind in "iu" else f"{target.name} numbers")


def _range(target: np.dtype) -> str:
    info = np.iinfo(target)
    return f"{info.min}, {info.max}"


def _string_column(values: Any, depth: int, where: str) -> np.ndarray:
    """A string feature: JSON strings or TF Serving's ``{"b64": ...}`` objects, as Python strings."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "US":
        arr = values.astype(object)
        if values.dtype.kind == "S":
            arr = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(values)
        return arr
    types = _leaf_types(values, depth)
    if types is not None and not types <= {str, bytes, dict}:
        raise PredictorInputError(f"{where}: expected strings (or {{\"b64\": \"...\"}}), got "
                                  f"{_describe(types - {str, bytes, dict})}.")
    try:
        arr = np.array(values, dtype=object)
    except ValueError:
        raise PredictorInputError(f"{where}: values are ragged (lists of different lengths).") from None
    if (types is None or not types <= {str}) and not all(type(v) is str for v in arr.flat):
        arr = _decode_b64(arr, where)
    return arr


def _column(name: str, values: Any, spec: Mapping[str, Any]) -> np.ndarray:
    """Converts one feature's batch of values to a numpy array checked against its spec."""
    dtype, shape = spec["dtype"], tuple(spec["shape"])
    where = f"feature {name!r}"
    if dtype == STRING:
        arr = _string_column(values, len(shape), where)
    else:
        arr = _numeric_column(values, np.dtype(dtype), len(shape), where)
    if arr.ndim == 0 or arr.shape[1:] != shape:
        got = list(arr.shape[1:]) if arr.ndim else "a scalar (no batch dimension)"
        raise PredictorInputError(
            f"{where}: expected shape [batch] + {list(shape)}, got per-example shape {got}."
        )
    return arr


def _decode_b64(arr: np.ndarray, where: str) -> np.ndarray:
    """Strings given in TF Serving's binary form ``{"b64": "<base64>"}`` (or as bytes), decoded (UTF-8 text)."""
    out = np.empty(arr.shape, object)
    for i, value in enumerate(arr.flat):
        if isinstance(value, dict) and value.keys() == {"b64"} and isinstance(value["b64"], str):
            try:
                value = base64.b64decode(value["b64"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise PredictorInputError(f"{where}: a {{\"b64\": ...}} value is not base64 of UTF-8 text ({e}).") from None
        elif isinstance(value, bytes):  # the Python API: bytes are UTF-8 text, as in the feature columns
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise PredictorInputError(f"{where}: a bytes value is not UTF-8 text.") from None
        elif not isinstance(value, str):
            raise PredictorInputError(f"{where}: expected strings (or {{\"b64\": \"...\"}}), got "
                                      f"{_describe({type(value)})}.")
        out.flat[i] = value
    return out


def is_b64(value: Any) -> bool:
    """Whether ``value`` is TF Serving's binary string form ``{"b64": "..."}``."""
    return type(value) is dict and len(value) == 1 and "b64" in value


def gather_columns(
    inputs: Mapping[str, Mapping[str, Any]], features: Mapping[str, Any] | Sequence[Any]
) -> tuple[dict[str, Any], int]:
    """Checks the layout of features given as columns (dict of lists/arrays) or rows (list of dicts).

    For a model with a single input, rows may also be bare values. Returns ``(columns,
    batch_size)`` with the values still as given (see :func:`convert_columns`). Raises
    PredictorInputError naming the feature (and example) that is wrong.
    """
    if type(features) is list and len(features) == 1:  # the common single-example request
        row = features[0]
        if type(row) is dict and row.keys() == inputs.keys():
            return {n: [row[n]] for n in inputs}, 1
    names = list(inputs)
    if isinstance(features, dict | Mapping):
        columns = features
    elif isinstance(features, list | Sequence) and not isinstance(features, str | bytes):
        if not features:
            raise PredictorInputError("Got an empty list of examples; send at least one.")
        if len(names) == 1 and names[0] != "b64" and all(is_b64(r) for r in features):
            columns = {names[0]: features}  # a single string input's values in binary form
        elif all(type(r) is dict or isinstance(r, Mapping) for r in features):
            keys = inputs.keys()
            for i, row in enumerate(features):
                if row.keys() != keys:
                    _check_names(names, row.keys(), where=f" in example {i}")
            columns = {n: [row[n] for row in features] for n in names}
        elif len(names) == 1 and not any(isinstance(r, Mapping) for r in features):
            columns = {names[0]: features}
        else:
            raise PredictorInputError(
                f"Examples must be dicts of feature name -> value (inputs: {names}); bare values "
                "are accepted only when the model has exactly one input."
            )
    else:
        raise PredictorInputError(f"Features must be a dict of name -> values or a list of examples, got {type(features).__name__}.")
    if columns.keys() != inputs.keys():
        _check_names(names, columns.keys(), where="")
    size = None
    for n in names:
        values = columns[n]
        if type(values) is not list and (
            isinstance(values, str | bytes | Mapping) or np.ndim(values) == 0 or not hasattr(values, "__len__")
        ):
            raise PredictorInputError(f"feature {n!r}: expected a list with one value per example, got {values!r:.80}.")
        if size is None:
            size = len(values)
        elif len(values) != size:
            raise PredictorInputError(
                f"Features have different batch sizes: {n!r} has {len(values)} examples, {names[0]!r} has "
                f"{size}; all must have the same."
            )
    if size == 0:
        raise PredictorInputError("Got a batch of 0 examples; send at least one.")
    return {n: columns[n] for n in names}, size


def convert_columns(inputs: Mapping[str, Mapping[str, Any]], columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Converts gathered columns to numpy arrays of the signature's dtypes, checking shapes."""
    return {n: _column(n, columns[n], spec) for n, spec in inputs.items()}


def columns_from_request(
    inputs: Mapping[str, Mapping[str, Any]], features: Mapping[str, Any] | Sequence[Any]
) -> dict[str, np.ndarray]:
    """Validates features given as columns or rows; returns numpy columns (see gather_columns)."""
    return convert_columns(inputs, gather_columns(inputs, features)[0])


def _check_names(expected: list[str], got: Any, where: str) -> None:
    missing = [n for n in expected if n not in got]
    unknown = sorted(set(got) - set(expected))
    if missing:
        raise PredictorInputError(f"Missing feature(s) {missing}{where}; the model expects {expected}.")
    if unknown:
        raise PredictorInputError(f"Unknown feature(s) {unknown}{where}; the model expects {expected}.")
