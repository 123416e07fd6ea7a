"""Loading an export back: validated inputs -> host preprocessing -> the serialized computation.

Needs neither the model code nor pickle: the computation is ``jax.export`` bytes, the
variables an ``.npz`` read with ``allow_pickle=False``, everything else JSON. Batches are
padded to power-of-two buckets so a server never recompiles; each bucket's compiled
call is cached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import itertools
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from estimator._export_dir import SIGNATURE_FILE
from estimator.keys import PredictionKeys

STRING = "string"


class PredictorInputError(ValueError):
    """The features given to a Predictor do not match its signature (an HTTP 400 when served)."""


class ExportError(ValueError):
    """An export cannot be written as asked, or a directory is not a readable export."""


class ExportFormatError(ExportError):
    """A directory is not a readable export (missing, truncated, corrupt or inconsistent files)."""


def host_transform(description: Mapping[str, Any]) -> Callable[[dict], dict]:
    """Builds the host-side feature transform described by an export's preprocessing JSON.

    Without ``feature_columns`` it is the identity. Otherwise the library's feature-column
    code rebuilds the transform from the JSON (no model code involved).
    """
    if "feature_columns" not in description:
        return lambda features: features
    from estimator import feature_column

    return feature_column.host_transform_from_json(dict(description))


def _bucket(n: int, max_bucket: int) -> int:
    """Smallest power of two >= n (n <= max_bucket)."""
    return min(max_bucket, 1 << max(0, n - 1).bit_length())


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


_SUPPORTED_FORMAT_VERSIONS = (1, 2)
_REQUIRED_FILES = ("computation", "variables", "preprocessing")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        parts.append(int(digits or 0))
    return tuple(parts)


def _check_specs(specs: Any, key: str, where: str) -> None:
    if not isinstance(specs, dict) or (key != "outputs" and not specs):
        raise ExportFormatError(f"{where}: {key!r} must be an object name -> {{dtype, shape}}.")
    for name, spec in specs.items():
        ok = isinstance(spec, dict) and isinstance(spec.get("shape"), list) and all(
            type(d) is int and d >= 0 for d in spec["shape"])
        if ok:
            try:
                ok = spec["dtype"] == STRING or np.dtype(jax.numpy.dtype(spec["dtype"])).kind in "biuf"
            except (TypeError, ValueError):
                ok = False
        if not ok:
            raise ExportFormatError(f"{where}: {key}[{name!r}] = {spec!r:.200} is not a {{dtype, shape}} spec.")


def read_signature(path: str) -> dict[str, Any]:
    """Reads and checks an export's signature file; raises ExportFormatError naming what is wrong."""
    from estimator._export_dir import FORMAT

    where = os.path.join(path, SIGNATURE_FILE)
    try:
        with open(where, "rb") as f:
            signature = json.loads(f.read())
    except FileNotFoundError:
        raise ExportFormatError(f"{path!r} is not a complete export: {SIGNATURE_FILE} is missing.") from None
    except OSError as e:
        raise ExportFormatError(f"{where}: cannot be read ({e.strerror}).") from None
    except ValueError as e:
        raise ExportFormatError(f"{where}: not valid JSON ({e}); the export is truncated or corrupt.") from None
    if not isinstance(signature, dict) or signature.get("format") != FORMAT:
        raise ExportFormatError(f"{where}: not a jax-estimator export signature (no \"format\": {FORMAT!r}).")
    version = signature.get("format_version")
    if type(version) is not int or version not in _SUPPORTED_FORMAT_VERSIONS:
        newer = isinstance(version, int) and version > max(_SUPPORTED_FORMAT_VERSIONS)
        raise ExportFormatError(
            f"{where}: format_version {version!r} is not one this jax-estimator reads "
            f"({list(_SUPPORTED_FORMAT_VERSIONS)})" + ("; upgrade jax-estimator to load it." if newer else "."))
    if not isinstance(signature.get("jax_version"), str):
        raise ExportFormatError(f"{where}: jax_version is missing or not a string.")
    platforms = signature.get("platforms")
    if not isinstance(platforms, list) or not platforms or not all(isinstance(p, str) for p in platforms):
        raise ExportFormatError(f"{where}: platforms must be a non-empty list of platform names, got {platforms!r:.100}.")
    for key in ("inputs", "model_inputs", "outputs"):
        _check_specs(signature.get(key), key, where)
    variables = signature.get("variables")
    if not isinstance(variables, list) or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("dtype"), str)
            and isinstance(v.get("shape"), list) for v in variables):
        raise ExportFormatError(f"{where}: variables must be a list of {{name, dtype, shape}}.")
    files = signature.get("files")
    if not isinstance(files, dict) or any(not isinstance(files.get(k), str) for k in _REQUIRED_FILES):
        raise ExportFormatError(f"{where}: files must name {list(_REQUIRED_FILES)} (got {files!r:.200}).")
    if version >= 2 and not isinstance(signature.get("manifest"), dict):
        raise ExportFormatError(f"{where}: format_version {version} needs a manifest of file sizes and digests.")
    return signature


class _ExportFiles:
    """Reads an export's files by signature key, inside the directory, checked against the manifest."""

    def __init__(self, path: str, signature: Mapping[str, Any]):
        self.path = path
        self.signature = signature
        self.manifest = signature.get("manifest")

    def read(self, key: str) -> tuple[str, bytes]:
        from estimator._export_dir import member_path

        name = self.signature["files"][key]
        full = member_path(self.path, name)
        sig = os.path.join(self.path, SIGNATURE_FILE)
        if full is None:
            raise ExportFormatError(f"{sig}: files.{key} = {name!r} is not a file inside the export directory.")
        try:
            with open(full, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ExportFormatError(f"{full}: missing (named by files.{key} in {SIGNATURE_FILE}).") from None
        except OSError as e:
            raise ExportFormatError(f"{full}: cannot be read ({e.strerror}).") from None
        if self.manifest is not None:
            entry = self.manifest.get(name)
            if not isinstance(entry, dict):
                raise ExportFormatError(f"{sig}: the manifest does not list {name!r} (files.{key}).")
            if len(data) != entry.get("bytes"):
                problem = f"has {len(data)} bytes, the manifest in {SIGNATURE_FILE} says {entry.get('bytes')}"
            elif hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                problem = f"its SHA-256 differs from the manifest's in {SIGNATURE_FILE}"
            else:
                problem = None
            if problem:
                raise ExportFormatError(f"{full}: {problem}; the file is incomplete (still being copied?) or corrupt.")
        return full, data


def _deserialize(full: str, data: bytes, signature: Mapping[str, Any]) -> jax_export.Exported:
    try:
        return jax_export.deserialize(bytearray(data))
    except Exception as e:  # noqa: BLE001 - flatbuffer/struct/index errors of a damaged file
        written, here = signature["jax_version"], jax.__version__
        if _version_tuple(written) > _version_tuple(here):
            hint = f"It was written with jax {written}, newer than this jax {here}: upgrade jax to load it."
        elif written != here:
            hint = (f"It was written with jax {written}, this is jax {here}: the file is damaged, or too old "
                    "for this jax to read; re-export it with this jax.")
        else:
            hint = "The file is truncated or corrupt."
        raise ExportFormatError(
            f"{full}: not a readable jax.export serialization ({type(e).__name__}: {e}). {hint}") from None


def _this_platform() -> str:
    platform = jax.devices()[0].platform
    return {"gpu": "cuda"}.get(platform, platform)


def _check_platform(exported: jax_export.Exported, full: str) -> None:
    here = _this_platform()
    have = [p.lower() for p in exported.platforms]
    if here not in have and not (here == "cuda" and "rocm" in have):
        raise ExportFormatError(
            f"{full}: the computation was lowered for {have}, not for this process's default backend "
            f"{here!r}; re-export with platforms including {here!r}, or run with JAX_PLATFORMS=cpu "
            "if it was lowered for cpu.")


def _read_variables(files: _ExportFiles, exported: jax_export.Exported) -> list[np.ndarray]:
    full, data = files.read("variables")
    specs = files.signature["variables"]
    leaves = []
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            stored = set(npz.files)
            for spec in specs:
                if spec["name"] not in stored:
                    raise ExportFormatError(f"{full}: variable {spec['name']!r} of the signature is missing.")
                leaves.append(_stored_to_array(npz[spec["name"]], spec["dtype"]))
    except ExportFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib, pickled object arrays, bad headers
        raise ExportFormatError(f"{full}: not a readable variables archive ({type(e).__name__}: {e}).") from None
    avals = exported.in_avals[: len(leaves)]
    if len(exported.in_avals) != len(leaves) + len(files.signature["model_inputs"]):
        raise ExportFormatError(f"{full}: {len(leaves)} variables, but the computation takes "
                                f"{len(exported.in_avals) - len(files.signature['model_inputs'])}.")
    for spec, leaf, aval in zip(specs, leaves, avals, strict=True):
        if tuple(leaf.shape) != tuple(aval.shape) or leaf.dtype != aval.dtype:
            raise ExportFormatError(
                f"{full}: variable {spec['name']!r} is {leaf.dtype}{list(leaf.shape)}, the computation "
                f"expects {aval.dtype}{list(aval.shape)}.")
    return leaves


def _class_names(description: Mapping[str, Any], outputs: Mapping[str, Any], where: str) -> np.ndarray | None:
    """The class names a classifier export maps ``class_ids`` to (bytes, as Estimator.predict yields)."""
    names = description.get("class_names", description.get("label_vocabulary"))
    if names is None or not ({PredictionKeys.CLASS_IDS, PredictionKeys.ALL_CLASS_IDS} & outputs.keys()):
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ExportFormatError(f"{where}: class_names must be a non-empty list of strings.")
    return np.array([n.encode() for n in names], dtype=object)


class Predictor:
    """A loaded export: ``predictor(features) -> {output name: np.ndarray}``.

    Classifier exports (``class_names`` in their preprocessing) also give ``classes`` and
    ``all_classes`` (bytes), the keys ``Estimator.predict`` yields.

    Args:
      path: an export directory (``export_dir_base/<version>``).
      max_bucket: largest padded batch per device call; bigger requests are split.

    Raises:
      ExportFormatError: (an ``ExportError``) naming the file that is missing, truncated,
        corrupt or inconsistent, or the format/jax/platform mismatch.
    """

    def __init__(self, path: str, max_bucket: int = 1024):
        self.signature: dict[str, Any] = read_signature(path)
        self.path = path
        self.max_bucket = 1 << (max(1, max_bucket) - 1).bit_length()
        files = _ExportFiles(path, self.signature)
        full, data = files.read("computation")
        self._exported = _deserialize(full, data, self.signature)
        _check_platform(self._exported, full)
        self._transform = None
        if self.signature["files"].get("transform"):
            full, data = files.read("transform")
            self._transform = jax.jit(_deserialize(full, data, self.signature).call)
        full, data = files.read("preprocessing")
        try:
            description = json.loads(data)
            if not isinstance(description, dict):
                raise ValueError("not a JSON object")
            self._host = host_transform(description)
        except ValueError as e:  # JSON errors and FeatureColumnError
            raise ExportFormatError(f"{full}: not a valid preprocessing description ({e}).") from None
        self._class_names = _class_names(description, self.signature["outputs"], full)
        self._variables = jax.device_put(_read_variables(files, self._exported))
        self._outputs = dict(self.signature["outputs"])
        if self._class_names is not None:
            for ids, names in ((PredictionKeys.CLASS_IDS, PredictionKeys.CLASSES), (PredictionKeys.ALL_CLASS_IDS, PredictionKeys.ALL_CLASSES)):
                if ids in self._outputs:
                    self._outputs[names] = {"dtype": STRING, "shape": self._outputs[ids]["shape"]}
        self._compiled: dict[int, Any] = {}
        self._lock = threading.Lock()

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        """Raw serving inputs: name -> {"dtype", "shape"} (shape excludes the batch dimension)."""
        return self.signature["inputs"]

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """Outputs: name -> {"dtype", "shape"} (shape excludes the batch dimension)."""
        return self._outputs

    @property
    def is_classifier(self) -> bool:
        """Whether predictions carry class names and probabilities (TF Serving's :classify)."""
        return self._class_names is not None and PredictionKeys.PROBABILITIES in self._outputs and PredictionKeys.ALL_CLASSES in self._outputs

    @property
    def is_regressor(self) -> bool:
        """Whether predictions have one number per example under ``predictions`` (TF Serving's :regress)."""
        spec = self._outputs.get(PredictionKeys.PREDICTIONS)
        return spec is not None and spec["dtype"] != STRING and spec["shape"] in ([], [1])

    def __call__(self, features: Mapping[str, Any] | Sequence[Any]) -> dict[str, np.ndarray]:
        """Validates ``features`` (columns or rows) and returns predictions as numpy arrays."""
        return self.run(self.prepare(gather_columns(self.inputs, features)[0]))

    predict = __call__

    def prepare(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Checks gathered columns and computes the model's features (device transform + host side).

        Raises PredictorInputError naming the feature for any value the signature or the
        feature columns reject (types, ranges, out-of-range ids).
        """
        return self._model_features(convert_columns(self.inputs, columns))

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predicts on columns already checked by :func:`columns_from_request`."""
        return self.run(self._model_features(columns))

    def run(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predicts on model features from :meth:`prepare` (padded to buckets, split if large)."""
        n = len(next(iter(features.values())))
        if n > self.max_bucket:
            parts = [self.run({k: v[i : i + self.max_bucket] for k, v in features.items()})
                     for i in range(0, n, self.max_bucket)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        size = _bucket(n, self.max_bucket)
        if size != n:
            features = {k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) for k, v in features.items()}
        outs = self._compiled_for(size)(self._variables, features)
        outs = {k: np.asarray(v)[:n] for k, v in outs.items()}
        if self._class_names is not None:
            if PredictionKeys.CLASS_IDS in outs:
                outs[PredictionKeys.CLASSES] = self._class_names[outs[PredictionKeys.CLASS_IDS]]
            if PredictionKeys.ALL_CLASS_IDS in outs:
                outs[PredictionKeys.ALL_CLASSES] = self._class_names[outs[PredictionKeys.ALL_CLASS_IDS]]
        return outs

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
        from estimator.feature_column import FeatureColumnError

        try:
            features = self._host(features)
        except FeatureColumnError as e:  # e.g. an id outside an identity column's range: the client's values
            raise PredictorInputError(str(e)) from None
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
    if arr.dtype.name == dtype:
        return arr
    target = jax.numpy.dtype(dtype)
    if arr.dtype.kind != "u" or arr.dtype.itemsize != target.itemsize:
        raise ValueError(f"stored as {arr.dtype.name}, the signature says {dtype}")
    return arr.view(target)


def load(path: str, max_bucket: int = 1024) -> Predictor:
    """Loads an export directory written by ``export_saved_model``; see :class:`Predictor`."""
    return Predictor(path, max_bucket=max_bucket)
