"""Out-of-core: peak RSS does not grow with the amount of data streamed."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "benchmark_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_rss_flat_from_n_to_10n_shards(tmp_path, bench):
    small = bench.generate(str(tmp_path / "small"), total_mb=6, shard_mb=3)
    large = bench.generate(str(tmp_path / "large"), total_mb=60, shard_mb=3)
    a, b = bench.measure(small, stream_only=True), bench.measure(large, stream_only=True)
    assert b["rows"] > 9 * a["rows"] > 0
    # holding the data would add > 60 MB (raw bytes) or > 25 MB (parsed float32 columns)
    assert b["peak_rss_mb"] - a["peak_rss_mb"] < 15, (a, b)
