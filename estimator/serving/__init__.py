"""TensorFlow-Serving-compatible HTTP model server for exports (``python -m estimator.serving``)."""

from estimator.serving.app import ServerConfig, build_app

__all__ = ["ServerConfig", "build_app"]
