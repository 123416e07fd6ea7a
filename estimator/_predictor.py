"""Loading an export back: validated inputs -> host preprocessing -> the serialized computation.

Needs neither the model code nor pickle: the computation is ``jax.export`` bytes, the
variables an ``.npz`` read with ``allow_pickle=False``, everything else JSON. Batches are
padded to power-of-two buckets so a server never recompiles; each bucket's compiled
call is cached.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from estimator._export_dir import SIGNATURE_FILE

STRING = "string"


class PredictorInputError(ValueError):
    """The features given to a Predictor do not match its signature (an HTTP 400 when served)."""


class ExportFormatError(ValueError):
    """A directory is not a readable export (missing or inconsistent files)."""


def host_transform(description: Mapping[str, Any]) -> Callable[[dict], dict]:
    """Builds the host-side feature transform described by an export's preprocessing JSON.

    An empty description is the identity. Otherwise the library's feature-column code
    rebuilds the transform from the JSON (no model code involved).
    """
    if not description:
        return lambda features: features
    from estimator import feature_column

    return feature_column.host_transform_from_json(dict(description))


def _bucket(n: int, max_bucket: int) -> int:
    """Smallest power of two >= n (n <= max_bucket)."""
    return min(max_bucket, 1 << max(0, n - 1).bit_length())


def _column(name: str, values: Any, spec: Mapping[str, Any]) -> np.ndarray:
    """Converts one feature's batch of values to a numpy array checked against its spec."""
    dtype, shape = spec["dtype"], tuple(spec["shape"])
    where = f"feature {name!r}"
    try:
        arr = np.asarray(values)
    except ValueError as e:
        raise PredictorInputError(f"{where}: values are ragged or malformed ({e}).") from None
    if arr.dtype == object and dtype != STRING:
        raise PredictorInputError(f"{where}: expected {dtype} numbers of shape {list(shape)} per example, got mixed or nested values.")
    if dtype == STRING:
        if arr.size and arr.dtype.kind not in "USO":
            raise PredictorInputError(f"{where}: expected strings, got {arr.dtype.name} values.")
        if arr.dtype.kind == "O" and not all(isinstance(v, str) for v in arr.flat):
            arr = _decode_b64(arr, where)
        arr = arr.astype(object)
    else:
        target = np.dtype(dtype)
        kind = arr.dtype.kind
        if arr.size and kind not in "biuf":
            raise PredictorInputError(f"{where}: expected {dtype} numbers, got {arr.dtype.name} values (e.g. strings).")
        if kind == "b" and target.kind != "b":
            raise PredictorInputError(f"{where}: expected {dtype} numbers, got booleans.")
        if kind == "f" and target.kind in "iu" and not np.all(np.mod(arr, 1) == 0):
            raise PredictorInputError(f"{where}: expected integers ({dtype}), got fractional numbers.")
        arr = arr.astype(target, copy=False)
    if arr.ndim == 0 or arr.shape[1:] != shape:
        got = list(arr.shape[1:]) if arr.ndim else "a scalar (no batch dimension)"
        raise PredictorInputError(
            f"{where}: expected shape [batch] + {list(shape)}, got per-example shape {got}."
        )
    return arr


def _decode_b64(arr: np.ndarray, where: str) -> np.ndarray:
    """Strings given in TF Serving's binary form ``{"b64": "<base64>"}``, decoded (UTF-8 text)."""
    out = np.empty(arr.shape, object)
    for i, value in enumerate(arr.flat):
        if isinstance(value, dict) and value.keys() == {"b64"} and isinstance(value["b64"], str):
            try:
                value = base64.b64decode(value["b64"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise PredictorInputError(f"{where}: a {{\"b64\": ...}} value is not base64 of UTF-8 text ({e}).") from None
        elif not isinstance(value, str):
            raise PredictorInputError(f"{where}: expected strings (or {{\"b64\": \"...\"}}), got {type(value).__name__}.")
        out.flat[i] = value
    return out


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
        if all(type(r) is dict or isinstance(r, Mapping) for r in features):
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


def _read_computation(path: str) -> jax_export.Exported:
    with open(path, "rb") as f:
        return jax_export.deserialize(bytearray(f.read()))


class Predictor:
    """A loaded export: ``predictor(features) -> {output name: np.ndarray}``.

    Args:
      path: an export directory (``export_dir_base/<version>``).
      max_bucket: largest padded batch per device call; bigger requests are split.
    """

    def __init__(self, path: str, max_bucket: int = 1024):
        sig_path = os.path.join(path, SIGNATURE_FILE)
        if not os.path.isfile(sig_path):
            raise ExportFormatError(f"{path!r} is not a complete export: {SIGNATURE_FILE} is missing.")
        with open(sig_path) as f:
            self.signature: dict[str, Any] = json.load(f)
        self.path = path
        self.max_bucket = 1 << (max(1, max_bucket) - 1).bit_length()
        files = self.signature["files"]
        self._exported = _read_computation(os.path.join(path, files["computation"]))
        self._transform = None
        if files.get("transform"):
            self._transform = jax.jit(_read_computation(os.path.join(path, files["transform"])).call)
        with open(os.path.join(path, files["preprocessing"])) as f:
            self._host = host_transform(json.load(f))
        with np.load(os.path.join(path, files["variables"]), allow_pickle=False) as npz:
            leaves = [_stored_to_array(npz[v["name"]], v["dtype"]) for v in self.signature["variables"]]
        self._variables = jax.device_put(leaves)
        self._compiled: dict[int, Any] = {}
        self._lock = threading.Lock()

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """Raw serving inputs: name -> {"dtype", "shape"} (shape excludes the batch dimension)."""
        return self.signature["inputs"]

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """Outputs: name -> {"dtype", "shape"} (shape excludes the batch dimension)."""
        return self.signature["outputs"]

    def __call__(self, features: Mapping[str, Any] | Sequence[Any]) -> dict[str, np.ndarray]:
        """Validates ``features`` (columns or rows) and returns predictions as numpy arrays."""
        return self.predict_columns(columns_from_request(self.inputs, features))

    predict = __call__

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predicts on columns already checked by :func:`columns_from_request`."""
        n = len(next(iter(columns.values())))
        if n > self.max_bucket:
            parts = [
                self.predict_columns({k: v[i : i + self.max_bucket] for k, v in columns.items()})
                for i in range(0, n, self.max_bucket)
            ]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        size = _bucket(n, self.max_bucket)
        if size != n:
            columns = {k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) for k, v in columns.items()}
        features = self._model_features(columns)
        outs = self._compiled_for(size)(self._variables, features)
        return {k: np.asarray(v)[:n] for k, v in outs.items()}

    def warmup(self, max_batch: int) -> None:
        """Compiles every bucket up to ``max_batch`` so serving never compiles under load."""
        size = 1
        while True:
            self._compiled_for(min(size, self.max_bucket))
            if size >= min(max_batch, self.max_bucket):
                return
            size *= 2

    def _model_features(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = dict(columns)
        if self._transform is not None:
            numeric = {k: v for k, v in features.items() if self.inputs[k]["dtype"] != STRING}
            with jax.default_device(jax.devices("cpu")[0]):
                transformed = self._transform(numeric)
            strings = {k: v for k, v in features.items() if self.inputs[k]["dtype"] == STRING}
            features = {**strings, **{k: np.asarray(v) for k, v in transformed.items()}}
        features = self._host(features)
        model_inputs = self.signature["model_inputs"]
        return {k: np.asarray(features[k], dtype=jax.numpy.dtype(spec["dtype"])) for k, spec in model_inputs.items()}

    def _compiled_for(self, size: int) -> Callable:
        fn = self._compiled.get(size)
        if fn is None:
            with self._lock:
                fn = self._compiled.get(size)
                if fn is None:
                    feats = {
                        k: jax.ShapeDtypeStruct((size, *s["shape"]), s["dtype"])
                        for k, s in self.signature["model_inputs"].items()
                    }
                    fn = jax.jit(self._exported.call).lower(self._variables, feats).compile()
                    self._compiled[size] = fn
        return fn


def _stored_to_array(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Undoes the uint view used to store non-numpy dtypes such as bfloat16."""
    return arr if arr.dtype.name == dtype else arr.view(jax.numpy.dtype(dtype))


def load(path: str, max_bucket: int = 1024) -> Predictor:
    """Loads an export directory written by ``export_saved_model``; see :class:`Predictor`."""
    return Predictor(path, max_bucket=max_bucket)
