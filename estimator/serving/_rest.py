"""TensorFlow Serving's REST JSON: request parsing, response shapes, status and metadata.

Reference: https://www.tensorflow.org/tfx/serving/api_rest (row format ``instances`` ->
``predictions``; columnar format ``inputs`` -> ``outputs``; Classify and Regress take
``examples`` (+ ``context``) and answer ``results``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from estimator.export import PredictionKeys, is_b64, rest_columns

SIGNATURE_NAME = "serving_default"


class ServingError(Exception):
    """A request the server answers with ``{"error": message}`` and an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


Request = tuple[dict[str, Any], int, str]  # (columns as sent, batch size, answer format)
VERBS = ("predict", "classify", "regress")


def _loads(body: bytes) -> Any:
    """JSON as TF Serving reads it: also the ``NaN``, ``Infinity`` and ``-Infinity`` tokens."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # the standard parser accepts NaN/Infinity; only requests that need it pay for it
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ServingError(400, f"Malformed JSON in request body: {e}") from None


def parse_request(verb: str, body: bytes, inputs: Mapping[str, Mapping[str, Any]]) -> Request:
    """Parses a ``:predict``, ``:classify`` or ``:regress`` body; returns ``(columns, batch_size, format)``.

    Columns hold the JSON values as sent, their layout checked (names, batch sizes); dtypes
    and shapes are checked by ``Predictor.prepare``. Raises ServingError(400) for malformed
    JSON or a body that is not TF Serving's shape; feature errors surface as
    ``PredictorInputError`` (also a 400). ``format`` is ``rows``, ``columns``, ``classify``
    or ``regress`` (see :func:`format_response`).
    """
    request = _loads(body)
    if not isinstance(request, dict):
        raise ServingError(400, "Request body must be a JSON object.")
    signature = request.get("signature_name", SIGNATURE_NAME)
    if signature not in ("", SIGNATURE_NAME):
        raise ServingError(400, f"Unknown signature_name {signature!r}; this model has only {SIGNATURE_NAME!r}.")
    if verb != "predict":
        return (*_parse_examples(request, inputs), verb)
    unknown = set(request) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise ServingError(400, f"Unknown request field(s) {sorted(unknown)}; use \"instances\" or \"inputs\".")
    if ("instances" in request) == ("inputs" in request):
        raise ServingError(400, 'Request must have exactly one of "instances" (row format) or "inputs" (columnar).')
    if "instances" in request:
        features = request["instances"]
        if not isinstance(features, list):
            raise ServingError(400, '"instances" must be a list of examples.')
        return (*rest_columns(inputs, features), "rows")
    features = request["inputs"]
    if not isinstance(features, dict) or (len(inputs) == 1 and "b64" not in inputs and is_b64(features)):
        if len(inputs) != 1:
            raise ServingError(400, f'"inputs" must be an object name -> values; the model has inputs {list(inputs)}.')
        features = {next(iter(inputs)): features}
    return (*rest_columns(inputs, features), "columns")


def _parse_examples(request: dict, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """TF Serving's Classify/Regress body: ``examples`` (feature dicts) plus shared ``context``."""
    unknown = set(request) - {"examples", "context", "signature_name"}
    if unknown:
        raise ServingError(400, f"Unknown request field(s) {sorted(unknown)}; use \"examples\" (and \"context\").")
    examples, context = request.get("examples"), request.get("context", {})
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        raise ServingError(400, '"examples" must be a list of objects feature name -> value.')
    if not isinstance(context, dict):
        raise ServingError(400, '"context" must be an object feature name -> value.')
    if context:
        examples = [{**context, **e} for e in examples]
    return rest_columns(inputs, examples)


def check_verb(verb: str, predictor: Any) -> None:
    """Rejects :classify on a non-classifier and :regress on a non-regressor export (400)."""
    if verb == "classify" and not predictor.is_classifier:
        raise ServingError(400, "This model is not a classifier (no probabilities with class names among its "
                                f"outputs {sorted(predictor.outputs)}); use :predict.")
    if verb == "regress" and not predictor.is_regressor:
        raise ServingError(400, "This model is not a regressor (no one-number \"predictions\" among its outputs "
                                f"{sorted(predictor.outputs)}); use :predict.")


def _as_lists(value: np.ndarray) -> Any:
    """numpy -> JSON lists; bytes (class names) as UTF-8 strings, else TF Serving's {"b64": ...}."""
    value = np.asarray(value)
    if value.dtype == object or value.dtype.kind == "S":
        return np.vectorize(_text, otypes=[object])(value).tolist() if value.size else value.tolist()
    return value.tolist()


def _text(value: Any) -> Any:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode()}


def format_response(outputs: Mapping[str, np.ndarray], fmt: str) -> dict[str, Any]:
    """TF Serving's answer for ``fmt`` (see :func:`parse_request`).

    ``rows``: ``predictions`` (bare values when there is one output); ``columns``:
    ``outputs``; ``classify``: ``results`` of ``[class, score]`` pairs per example;
    ``regress``: ``results`` of one number per example.
    """
    if fmt == "classify":
        classes, scores = _as_lists(outputs[PredictionKeys.ALL_CLASSES]), np.asarray(outputs[PredictionKeys.PROBABILITIES]).tolist()
        return {"results": [[list(pair) for pair in zip(c, p, strict=True)] for c, p in zip(classes, scores, strict=True)]}
    if fmt == "regress":
        return {"results": np.asarray(outputs[PredictionKeys.PREDICTIONS]).reshape(-1).tolist()}
    lists = {k: _as_lists(v) for k, v in outputs.items()}
    if fmt == "rows":
        if len(lists) == 1:
            return {"predictions": next(iter(lists.values()))}
        names = list(lists)
        return {"predictions": [dict(zip(names, row, strict=True)) for row in zip(*lists.values(), strict=True)]}
    if len(lists) == 1:
        return {"outputs": next(iter(lists.values()))}
    return {"outputs": lists}


def encode_response(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """:func:`format_response` as JSON bytes; NaN and infinities as TF Serving writes them
    (``NaN``, ``Infinity``, ``-Infinity``), not as null."""
    payload = format_response(outputs, fmt)
    encoded = orjson.dumps(payload)  # writes NaN and infinities as null, and nothing else as null
    if b"null" not in encoded or all(np.isfinite(v).all() for v in outputs.values() if np.asarray(v).dtype.kind == "f"):
        return encoded
    return json.dumps(payload, separators=(",", ":")).encode()


def format_predictions(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """The :predict answer in row (``predictions``) or columnar (``outputs``) form."""
    return format_response(outputs, "rows" if row_format else "columns")


def parse_predict(body: bytes, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], int, bool]:
    """Parses a :predict body; returns ``(columns, batch_size, row_format)`` (see :func:`parse_request`)."""
    columns, size, fmt = parse_request("predict", body, inputs)
    return columns, size, fmt == "rows"


def version_status(loaded: list[int], failed: Mapping[int, str] | None = None) -> dict[str, Any]:
    """``GET /v1/models/<name>`` body: loaded versions AVAILABLE, versions that failed to load END."""
    states = {v: {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in loaded}
    for v, message in (failed or {}).items():
        states.setdefault(v, {"state": "END", "status": {"error_code": "UNKNOWN", "error_message": message}})
    return {"model_version_status": [{"version": str(v), **states[v]} for v in sorted(states, reverse=True)]}


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
