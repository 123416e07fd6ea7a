"""Shared helpers for input_pipelines tests."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


def _resumes(ds, cuts, full=None):
    """Check that restoring the state saved after `c` elements yields exactly the rest."""
    full = list(ds) if full is None else full
    for c in cuts:
        it = iter(ds)
        for _ in range(c):
            next(it)
        state = json.loads(json.dumps(it.state()))  # must survive JSON
        it.close()
        again = iter(ds)
        again.restore(state)
        rest = list(again)
        assert len(rest) == len(full) - c, f"cut {c}: {len(rest)} left, expected {len(full) - c}"
        _assert_same(rest, full[c:])
    return full


@pytest.fixture
def assert_same():
    """Deep equality of elements (dicts / tuples of arrays)."""
    return _assert_same


@pytest.fixture
def assert_resumes():
    """`assert_resumes(ds, cuts)`: exact continuation after restore at each cut point."""
    return _resumes


@pytest.fixture(scope="session")
def taxi_module():
    """models/taxi_data.py (the generator behind scripts/make_taxi_data.py)."""
    from models import taxi_data

    return taxi_data


@pytest.fixture(scope="session")
def taxi_shards(tmp_path_factory, taxi_module):
    """Six small synthetic taxi CSV shards (3000 rows), no header."""
    out = tmp_path_factory.mktemp("taxi")
    return taxi_module.write_taxi_shards(str(out), rows=3000, shards=6, seed=7, chunk_rows=400)
