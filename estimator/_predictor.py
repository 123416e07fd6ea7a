"""Loading an export back: validated inputs -> host preprocessing -> the serialized computation.

Needs neither the model code nor pickle: the computation is ``jax.export`` bytes, the
variables an ``.npz`` read with ``allow_pickle=False``, everything else JSON. Batches are
padded to power-of-two buckets so a server never recompiles; each bucket's compiled
call is cached.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from estimator._export_dir import STRING
from estimator._export_reader import (
    ExportFiles,
    ExportFormatError,
    check_platform,
    class_names,
    deserialize,
    read_signature,
    read_variables,
)
from estimator._predictor_inputs import PredictorInputError, convert_columns, gather_columns
from estimator.keys import PredictionKeys


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
        files = ExportFiles(path, self.signature)
        full, data = files.read("computation")
        self._exported = deserialize(full, data, self.signature)
        check_platform(self._exported, full)
        self._transform = None
        if self.signature["files"].get("transform"):
            full, data = files.read("transform")
            self._transform = jax.jit(deserialize(full, data, self.signature).call)
        full, data = files.read("preprocessing")
        try:
            description = json.loads(data)
            if not isinstance(description, dict):
                raise ValueError("not a JSON object")
            self._host = host_transform(description)
        except ValueError as e:  # JSON errors and FeatureColumnError
            raise ExportFormatError(f"{full}: not a valid preprocessing description ({e}).") from None
        self._class_names = class_names(description, self.signature["outputs"], full)
        self._variables = jax.device_put(read_variables(files, self._exported))
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



def load(path: str, max_bucket: int = 1024) -> Predictor:
    """Loads an export directory written by ``export_saved_model``; see :class:`Predictor`."""
    return Predictor(path, max_bucket=max_bucket)
