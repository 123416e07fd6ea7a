"""Export for serving: the PREDICT computation as ``jax.export`` bytes + arrays + JSON.

``export_saved_model`` writes ``export_dir_base/<version>/`` (``<version>`` an integer
timestamp, unique and increasing; the directory appears atomically, complete; on a gs:// or
s3:// bucket, which cannot rename, the version is claimed first and counts as written once its
``saved_model.json`` is there, uploaded last)::

    saved_model.json     signature: raw inputs, model inputs, outputs, variables, versions,
                         and the manifest (size and SHA-256 of every other file); written last
    computation.jaxexport  jax.export serialization of (variables, features) -> predictions,
                         symbolic batch dimension, lowered for cpu, cuda and tpu
    transform.jaxexport  (only with ServingInput.transform) raw numeric -> model features, cpu
    variables.npz        parameters and model state as plain arrays (allow_pickle=False)
    preprocessing.json   the host-side feature transform (vocabularies, hash buckets, crosses)
                         and, for classifiers, the class names ``class_ids`` map to
    computation.mlir     (as_text=True only) the StableHLO text, for reading

``load(path)`` returns a :class:`Predictor` (``path`` local or a bucket URL); it needs neither
the model code nor pickle.

What is exported is a :class:`Servable`: a pure predict function, its arrays and the
preprocessing JSON (``Estimator.servable()`` returns one; build one directly to export
any JAX function), or any object with a ``servable(checkpoint_path)`` method.

The model server (``estimator.serving``) reads exports through this module's public names
only: ``load`` / ``Predictor``, ``export_incomplete_reason``, ``export_version_files``,
``SIGNATURE_FILE``, ``rest_columns``, ``is_b64``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from estimator._export_dir import FORMAT, FORMAT_VERSION, SIGNATURE_FILE, STRING, atomic_export_dir
from estimator._export_dir import incomplete_reason as export_incomplete_reason
from estimator._export_dir import version_files as export_version_files
from estimator._export_reader import ExportError, ExportFormatError
from estimator._predictor import Predictor, host_transform, load
from estimator._predictor_inputs import PredictorInputError, is_b64
from estimator._predictor_inputs import gather_columns as rest_columns
from estimator.keys import PredictionKeys
from input_pipelines import fs

__all__ = [
    "DEFAULT_PLATFORMS",
    "FORMAT",
    "FORMAT_VERSION",
    "ExportError",
    "ExportFormatError",
    "Exportable",
    "ExportableFunction",
    "Predictor",
    "PredictionKeys",
    "PredictorInputError",
    "SIGNATURE_FILE",
    "Servable",
    "ServingInput",
    "export_incomplete_reason",
    "export_saved_model",
    "export_version_files",
    "is_b64",
    "load",
    "rest_columns",
]

DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")


class ServingInput(NamedTuple):
    """What a serving client sends, and an optional on-device map to the model's features.

    Attributes:
      features: raw input name -> dtype string (``"float32"``, ``"int64"``, ``"string"``...)
        or ``(dtype, per_example_shape)``; the batch dimension is implicit.
      transform: optional jax-traceable ``fn(numeric_features) -> features``: it receives the
        raw numeric inputs (batch-major ``jax.Array``s; string inputs bypass it and are
        passed on unchanged), must work for any batch size, and returns the features the
        model's input pipeline would have produced (e.g. engineered columns). It is exported
        as its own computation and runs on the host before the host-side preprocessing, so
        loading still needs no model code.
    """

    features: Mapping[str, Any]
    transform: Callable[[dict[str, jax.Array]], Mapping[str, jax.Array]] | None = None


class Servable(NamedTuple):
    """Everything an export holds: a pure predict function, its arrays, the host-side JSON.

    Attributes:
      predict_fn: jax-traceable ``(params, model_state, features) -> predictions`` (a dict
        of batch-major arrays, or one array, served as ``output``).
      params: the parameter pytree.
      model_state: the non-trained state pytree (batch-norm statistics); None for none.
      preprocessing: JSON-able host-side description (``Preprocessing.to_json()``) the
        loader re-runs on raw features; None or ``{}`` for none.
      global_step: the training step the arrays come from (the export's signature records it).
    """

    predict_fn: Callable[[Any, Any, dict], Any]
    params: Any
    model_state: Any = None
    preprocessing: Mapping[str, Any] | None = None
    global_step: int = 0

    def servable(self, checkpoint_path: str | None = None) -> Servable:
        """Itself (a Servable holds one set of arrays, so ``checkpoint_path`` must be None)."""
        if checkpoint_path is not None:
            raise ExportError(f"checkpoint_path={checkpoint_path!r} was given for a Servable, which holds its "
                              "arrays already; export the Estimator, or call est.servable(checkpoint_path).")
        return self


ExportableFunction = Servable  # the name of one release before; same fields in the same order


@runtime_checkable
class Exportable(Protocol):
    """What ``export_saved_model`` takes: an ``Estimator``, a :class:`Servable`, anything with ``servable()``."""

    def servable(self, checkpoint_path: str | None = None) -> Servable:
        """The predict function and arrays of the latest (or given) checkpoint."""
        ...


def _servable_of(exportable: Any, checkpoint_path: str | None) -> Servable:
    """The Servable of ``exportable``; an object with only the old private hooks still works (deprecated)."""
    if hasattr(exportable, "servable"):
        return exportable.servable(checkpoint_path)
    if hasattr(exportable, "_restore_params") and hasattr(exportable, "_predict_apply"):
        warnings.warn(f"Exporting {type(exportable).__name__} through _restore_params/_predict_apply is deprecated "
                      "and removed in the next release: give it a servable(checkpoint_path) method returning "
                      "estimator.export.Servable.", DeprecationWarning, stacklevel=3)
        params, model_state, step = exportable._restore_params(checkpoint_path)
        preprocessing = getattr(exportable, "_export_preprocessing", dict)()
        return Servable(exportable._predict_apply, params, model_state, preprocessing, step)
    raise ExportError(f"Cannot export {type(exportable).__name__}: give an Estimator, an "
                      "estimator.export.Servable, or an object with a servable(checkpoint_path) method.")


def _normalize_serving_input(serving_input: Any) -> ServingInput:
    """Accepts a spec dict, a ServingInput, or a zero-argument function returning either."""
    if callable(serving_input) and not isinstance(serving_input, Mapping | ServingInput):
        serving_input = serving_input()
    if isinstance(serving_input, Mapping):
        serving_input = ServingInput(serving_input)
    if not isinstance(serving_input, ServingInput) or not serving_input.features:
        raise ExportError(
            "serving_input must be a non-empty dict name -> dtype or (dtype, shape), a "
            f"ServingInput(features, transform), or a function returning one; got {serving_input!r}."
        )
    features = {}
    for name, spec in serving_input.features.items():
        dtype, shape = (spec, ()) if isinstance(spec, str | type | np.dtype) else spec
        dtype = STRING if dtype in (str, "str", STRING, "object") else np.dtype(dtype).name
        if dtype != STRING and np.dtype(dtype).kind not in "biuf":
            raise ExportError(f"serving_input[{name!r}]: dtype {dtype!r} is neither numeric nor 'string'.")
        features[str(name)] = {"dtype": dtype, "shape": [int(d) for d in shape]}
    return ServingInput(features, serving_input.transform)


def _dummy_batch(inputs: Mapping[str, Mapping[str, Any]], n: int = 2) -> dict[str, np.ndarray]:
    return {
        k: np.full((n, *s["shape"]), "", dtype=object) if s["dtype"] == STRING else np.zeros((n, *s["shape"]), s["dtype"])
        for k, s in inputs.items()
    }


def _sym_specs(specs: Mapping[str, Mapping[str, Any]], batch: Any) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((batch, *s["shape"]), s["dtype"]) for k, s in specs.items()}


def _as_dict(outputs: Any) -> dict[str, Any]:
    return dict(outputs) if isinstance(outputs, Mapping) else {"output": outputs}


def _spec_of(arrays: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        k: {"dtype": jnp.dtype(jax.dtypes.canonicalize_dtype(np.asarray(v).dtype)).name, "shape": list(np.shape(v)[1:])}
        for k, v in arrays.items()
    }


def _export_transform(transform: Callable, inputs: Mapping[str, Any], batch: Any) -> jax_export.Exported:
    numeric = {k: s for k, s in inputs.items() if s["dtype"] != STRING}
    fn = jax.jit(lambda feats: _as_dict(transform(feats)))
    return jax_export.export(fn, platforms=["cpu"])(_sym_specs(numeric, batch))


def _model_inputs(serving: ServingInput, transform_exp: Any, preprocessing: dict) -> dict[str, Any]:
    """Runs a dummy raw batch through transform + host preprocessing to get the model's inputs."""
    raw = _dummy_batch(serving.features)
    if transform_exp is not None:
        numeric = {k: v for k, v in raw.items() if serving.features[k]["dtype"] != STRING}
        out = {k: np.asarray(v) for k, v in transform_exp.call(numeric).items()}
        raw = {**{k: v for k, v in raw.items() if k not in numeric}, **out}
    try:
        features = host_transform(preprocessing)(raw)
    except Exception as e:
        raise ExportError(f"The host-side preprocessing failed on a dummy batch of the serving inputs: {e}") from e
    for k, v in features.items():
        if np.asarray(v).dtype.kind not in "biuf":
            raise ExportError(
                f"Feature {k!r} is still {np.asarray(v).dtype} after host preprocessing; the device "
                "computation takes numbers only: give it a vocabulary/hash feature column or drop it."
            )
    return _spec_of(features)


def _variable_name(path: tuple) -> str:
    parts = []
    for p in path:
        parts.append(str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))))
    return "/".join(parts)


def _stored(arr: np.ndarray) -> np.ndarray:
    """Non-numpy dtypes (bfloat16, ...) are stored as a same-width unsigned view."""
    return arr if arr.dtype.isbuiltin == 1 else arr.view(f"u{arr.dtype.itemsize}")


def export_saved_model(
    estimator: Exportable,
    export_dir_base: str,
    serving_input: Any,
    checkpoint_path: str | None = None,
    as_text: bool = False,
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
) -> str:
    """Exports ``estimator``'s PREDICT computation for serving; returns the new version's path.

    Args:
      estimator: an ``Estimator``, a :class:`Servable`, or anything with ``servable(checkpoint_path)``.
      export_dir_base: parent directory; the export goes to ``export_dir_base/<version>``. A
        bucket URL (``gs://...``, ``s3://...``) works too: there the version is claimed first
        and ``saved_model.json`` uploaded last, as the commit (buckets cannot rename).
      serving_input: what clients send: a dict name -> dtype or (dtype, shape) (``"string"``
        allowed: strings go through the host-side preprocessing only), a
        :class:`ServingInput` with a device-side ``transform``, or a zero-argument function
        returning either (tf.estimator's ``serving_input_receiver_fn``).
      checkpoint_path: checkpoint to export; the latest one when None.
      as_text: also write the StableHLO text as ``computation.mlir``.
      platforms: platforms the computation is lowered for, all in one artifact.
    """
    serving = _normalize_serving_input(serving_input)
    servable = _servable_of(estimator, checkpoint_path)
    params, model_state, global_step = servable.params, servable.model_state, servable.global_step
    preprocessing = dict(servable.preprocessing or {})
    try:
        preprocessing_json = json.dumps(preprocessing, indent=1, sort_keys=True)
    except TypeError as e:
        raise ExportError(f"The preprocessing JSON (Preprocessing.to_json()) must be JSON-able data: {e}") from e
    (batch,) = jax_export.symbolic_shape("batch")
    transform_exp = _export_transform(serving.transform, serving.features, batch) if serving.transform else None
    model_inputs = _model_inputs(serving, transform_exp, preprocessing)

    variables = {"params": params, "model_state": {} if model_state is None else model_state}
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(variables)
    leaves = [np.asarray(jax.device_get(v)) for _, v in with_paths]
    names = [_variable_name(p) for p, _ in with_paths]

    def serve(var_leaves: list, features: dict) -> dict:
        v = jax.tree_util.tree_unflatten(treedef, var_leaves)
        return _as_dict(servable.predict_fn(v["params"], v["model_state"], features))

    leaf_specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
    try:
        exported = jax_export.export(jax.jit(serve), platforms=list(platforms))(
            leaf_specs, _sym_specs(model_inputs, batch)
        )
    except Exception as e:
        raise ExportError(f"Could not export the PREDICT computation for platforms {platforms}: {e}") from e
    out_avals = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
    for k, aval in out_avals.items():
        if not aval.shape or not jax_export.is_symbolic_dim(aval.shape[0]):
            raise ExportError(f"Prediction {k!r} has shape {aval.shape}; every prediction must be batch-major.")
    signature = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jax_version": jax.__version__,
        "platforms": list(exported.platforms),
        "global_step": int(global_step),
        "created_unix": time.time(),
        "inputs": serving.features,
        "model_inputs": model_inputs,
        "outputs": {k: {"dtype": a.dtype.name, "shape": [int(d) for d in a.shape[1:]]} for k, a in out_avals.items()},
        "variables": [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape)} for n, a in zip(names, leaves, strict=True)],
        "files": {
            "computation": "computation.jaxexport",
            "transform": "transform.jaxexport" if transform_exp is not None else None,
            "variables": "variables.npz",
            "preprocessing": "preprocessing.json",
        },
    }
    with atomic_export_dir(export_dir_base) as box:
        d = box[0]
        manifest: dict[str, dict[str, Any]] = {}
        _write(d, "computation.jaxexport", exported.serialize(), manifest)
        if transform_exp is not None:
            _write(d, "transform.jaxexport", transform_exp.serialize(), manifest)
        buffer = io.BytesIO()
        np.savez(buffer, **{n: _stored(a) for n, a in zip(names, leaves, strict=True)})
        _write(d, "variables.npz", buffer.getvalue(), manifest)
        _write(d, "preprocessing.json", preprocessing_json.encode(), manifest)
        if as_text:
            _write(d, "computation.mlir", exported.mlir_module().encode(), manifest)
        signature["manifest"] = manifest  # written last: a copy is complete once every listed file matches
        _write(d, SIGNATURE_FILE, json.dumps(signature, indent=1).encode())
    return box[0]


def _write(export_dir: str, name: str, data: bytes, manifest: dict | None = None) -> None:
    with fs.open(fs.join(export_dir, name), "wb") as f:  # on buckets one object, visible once whole
        f.write(data)
    if manifest is not None:
        manifest[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
