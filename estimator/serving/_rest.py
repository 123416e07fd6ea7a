"""TensorFlow Serving's REST JSON: request parsing, response shapes, status and metadata.

Reference: https://www.tensorflow.org/tfx/serving/api_rest (row format ``instances`` ->
``predictions``; columnar format ``inputs`` -> ``outputs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from estimator._predictor import gather_columns

SIGNATURE_NAME = "serving_default"


class ServingError(Exception):
    """A request the server answers with ``{"error": message}`` and an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_predict(body: bytes, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], int, bool]:
    """Parses a :predict body; returns ``(columns, batch_size, row_format)``.

    Columns hold the JSON values as sent, their layout checked (names, batch sizes); dtypes
    and shapes are checked by ``convert_columns``. Raises ServingError(400) for malformed
    JSON or a body that is not TF Serving's shape; feature errors surface as
    ``PredictorInputError`` (also a 400).
    """
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ServingError(400, f"Malformed JSON in request body: {e}") from None
    if not isinstance(request, dict):
        raise ServingError(400, 'Request body must be a JSON object with "instances" or "inputs".')
    signature = request.get("signature_name", SIGNATURE_NAME)
    if signature not in ("", SIGNATURE_NAME):
        raise ServingError(400, f"Unknown signature_name {signature!r}; this model has only {SIGNATURE_NAME!r}.")
    unknown = set(request) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise ServingError(400, f"Unknown request field(s) {sorted(unknown)}; use \"instances\" or \"inputs\".")
    if ("instances" in request) == ("inputs" in request):
        raise ServingError(400, 'Request must have exactly one of "instances" (row format) or "inputs" (columnar).')
    if "instances" in request:
        features = request["instances"]
        if not isinstance(features, list):
            raise ServingError(400, '"instances" must be a list of examples.')
        return (*gather_columns(inputs, features), True)
    features = request["inputs"]
    if not isinstance(features, dict):
        if len(inputs) != 1:
            raise ServingError(400, f'"inputs" must be an object name -> values; the model has inputs {list(inputs)}.')
        features = {next(iter(inputs)): features}
    return (*gather_columns(inputs, features), False)


def format_predictions(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's answer: ``predictions`` (rows) or ``outputs`` (columns); bare when one output."""
    lists = {k: np.asarray(v).tolist() for k, v in outputs.items()}
    if row_format:
        if len(lists) == 1:
            return {"predictions": next(iter(lists.values()))}
        names = list(lists)
        return {"predictions": [dict(zip(names, row, strict=True)) for row in zip(*lists.values(), strict=True)]}
    if len(lists) == 1:
        return {"outputs": next(iter(lists.values()))}
    return {"outputs": lists}


def version_status(versions: list[int]) -> dict[str, Any]:
    """``GET /v1/models/<name>`` body: every loaded version AVAILABLE."""
    return {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in sorted(versions, reverse=True)
        ]
    }


_DTYPES = {
    "float16": "DT_HALF", "bfloat16": "DT_BFLOAT16", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
    "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64",
    "bool": "DT_BOOL", "string": "DT_STRING",
}


def _tensor_info(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    dims = [{"size": "-1", "name": ""}] + [{"size": str(d), "name": ""} for d in spec["shape"]]
    return {
        "dtype": _DTYPES.get(spec["dtype"], "DT_INVALID"),
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": name,
    }


def metadata(model_name: str, version: int, signature: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/models/<name>/metadata`` body in TF Serving's signature_def shape."""
    sig = {
        "inputs": {k: _tensor_info(k, s) for k, s in signature["inputs"].items()},
        "outputs": {k: _tensor_info(k, s) for k, s in signature["outputs"].items()},
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": model_name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE_NAME: sig}}},
    }
