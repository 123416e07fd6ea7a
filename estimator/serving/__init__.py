"""TensorFlow-Serving-compatible HTTP model server for exports (``python -m estimator.serving``)."""

try:
    from estimator.serving import _http  # noqa: F401 - uvicorn's httptools protocol: fail early, naming the extra
    from estimator.serving.app import ServerConfig, build_app
except ModuleNotFoundError as error:
    if (error.name or "").split(".")[0] not in ("uvicorn", "starlette", "orjson", "httptools"):
        raise
    raise ModuleNotFoundError(
        f"The model server needs {error.name.split('.')[0]!r}, which is part of the serving extra: "
        "pip install -e '.[serving]' (or pip install 'jax-estimator[serving]')."
    ) from error

__all__ = ["ServerConfig", "build_app"]
