"""Reading an export directory back: the signature, its files (checked against the manifest),
the serialized computation and the variables; every defect raises ExportFormatError.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from estimator._export_dir import SIGNATURE_FILE, STRING
from estimator.keys import PredictionKeys
from input_pipelines import fs


class ExportError(ValueError):
    """An export cannot be written as asked, or a directory is not a readable export."""


class ExportFormatError(ExportError):
    """A directory is not a readable export (missing, truncated, corrupt or inconsistent files)."""


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

    where = fs.join(path, SIGNATURE_FILE)
    try:
        signature = json.loads(fs.read_bytes(where))
    except FileNotFoundError:
        raise ExportFormatError(f"{path!r} is not a complete export: {SIGNATURE_FILE} is missing.") from None
    except OSError as e:
        raise ExportFormatError(f"{where}: cannot be read ({e.strerror or e}).") from None
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


class ExportFiles:
    """Reads an export's files by signature key, inside the directory, checked against the manifest."""

    def __init__(self, path: str, signature: Mapping[str, Any]):
        self.path = path
        self.signature = signature
        self.manifest = signature.get("manifest")

    def read(self, key: str) -> tuple[str, bytes]:
        from estimator._export_dir import member_path

        name = self.signature["files"][key]
        full = member_path(self.path, name)
        sig = fs.join(self.path, SIGNATURE_FILE)
        if full is None:
            raise ExportFormatError(f"{sig}: files.{key} = {name!r} is not a file inside the export directory.")
        try:
            data = fs.read_bytes(full)
        except FileNotFoundError:
            raise ExportFormatError(f"{full}: missing (named by files.{key} in {SIGNATURE_FILE}).") from None
        except OSError as e:
            raise ExportFormatError(f"{full}: cannot be read ({e.strerror or e}).") from None
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


def deserialize(full: str, data: bytes, signature: Mapping[str, Any]) -> jax_export.Exported:
    """Deserializes a ``jax.export`` file; a damaged or version-mismatched one raises ExportFormatError."""
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


def check_platform(exported: jax_export.Exported, full: str) -> None:
    """Raises ExportFormatError unless the computation was lowered for this process's backend."""
    here = _this_platform()
    have = [p.lower() for p in exported.platforms]
    if here not in have and not (here == "cuda" and "rocm" in have):
        raise ExportFormatError(
            f"{full}: the computation was lowered for {have}, not for this process's default backend "
            f"{here!r}; re-export with platforms including {here!r}, or run with JAX_PLATFORMS=cpu "
            "if it was lowered for cpu.")


def read_variables(files: ExportFiles, exported: jax_export.Exported) -> list[np.ndarray]:
    """The export's variables, checked against the signature and the computation's inputs."""
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


def class_names(description: Mapping[str, Any], outputs: Mapping[str, Any], where: str) -> np.ndarray | None:
    """The class names a classifier export maps ``class_ids`` to (bytes, as Estimator.predict yields)."""
    names = description.get("class_names", description.get("label_vocabulary"))
    if names is None or not ({PredictionKeys.CLASS_IDS, PredictionKeys.ALL_CLASS_IDS} & outputs.keys()):
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ExportFormatError(f"{where}: class_names must be a non-empty list of strings.")
    return np.array([n.encode() for n in names], dtype=object)


def _stored_to_array(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Undoes the uint view used to store non-numpy dtypes such as bfloat16."""
    if arr.dtype.name == dtype:
        return arr
    target = jax.numpy.dtype(dtype)
    if arr.dtype.kind != "u" or arr.dtype.itemsize != target.itemsize:
        raise ValueError(f"stored as {arr.dtype.name}, the signature says {dtype}")
    return arr.view(target)

