"""Shared setup of tests/scripts: tiny taxi CSVs made once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the helpers beside the tests

from _taxi_runs import make_tiny_data  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Tiny train/valid taxi CSVs (scripts/make_taxi_data.py)."""
    return make_tiny_data(tmp_path_factory.mktemp("taxi"))
