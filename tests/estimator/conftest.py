"""Shared setup of tests/estimator.

* Makes the toy models and inputs (``_toy.py``) importable.
* Turns on JAX's persistent compilation cache in a per-session folder: every
  test builds new Estimators, whose jitted functions are new objects that JAX
  would compile again; with the cache, identical programs compile once per
  session (also in the subprocesses the tests start, through the environment).
"""

from __future__ import annotations

import os
import sys

import jax
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

_CACHE_OPTIONS = {
    "jax_compilation_cache_dir": "JAX_COMPILATION_CACHE_DIR",
    "jax_persistent_cache_min_compile_time_secs": "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "jax_persistent_cache_min_entry_size_bytes": "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
}


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    values = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("jax_cache")),
              "jax_persistent_cache_min_compile_time_secs": 0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
    saved = {name: getattr(jax.config, name) for name in values}
    saved_env = {env: os.environ.get(env) for env in _CACHE_OPTIONS.values()}
    for name, value in values.items():
        jax.config.update(name, value)
        os.environ[_CACHE_OPTIONS[name]] = str(value)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    for env, value in saved_env.items():
        if value is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = value
