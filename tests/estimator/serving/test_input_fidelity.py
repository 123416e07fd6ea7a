"""Client mistakes over real HTTP: TF Serving's typing of JSON, 400s naming the feature, no harm to neighbours."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest
from _model_server import Server

from estimator import RunConfig
from estimator import feature_column as fc
from estimator.canned import LinearRegressor

NUMPY_WORDS = ("float64", "int64", "<U", "ndarray", "numpy", "object", "dtype(")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A regressor over a float input and an identity column [0, 10) (int32 input)."""
    tmp = tmp_path_factory.mktemp("identity")
    columns = [fc.numeric_column("x"), fc.categorical_column_with_identity("k", 10)]
    est = LinearRegressor(columns, model_dir=str(tmp / "m"), config=RunConfig(random_seed=0))
    rng = np.random.default_rng(0)
    feats = {"x": rng.normal(size=32).astype(np.float32), "k": rng.integers(0, 10, 32).astype(np.int32)}
    est.train(lambda: iter([(feats, feats["x"] + feats["k"])] * 3), max_steps=3)
    est.export_saved_model(str(tmp / "e"), {"x": "float32", "k": "int32"})
    server = Server(str(tmp / "e"), "m", "--max_batch_size", "64")
    yield server, est
    server.stop()


def _want(est, x, k):
    feats = {"x": np.asarray(x, np.float32), "k": np.asarray(k, np.int32)}
    return np.array([p["predictions"][0] for p in est.predict(lambda: iter([feats]))])


@pytest.mark.parametrize("body, message", [
    ({"instances": [{"x": 1.0, "k": 10}]}, "identity column 'k'"),
    ({"instances": [{"x": 1.0, "k": -7}]}, "identity column 'k'"),
    ({"instances": [{"x": 1.0, "k": 2 ** 31}]}, "feature 'k': 2147483648 is out of the int32 range"),
    ({"instances": [{"x": 1.0, "k": -(2 ** 31) - 1}]}, "out of the int32 range"),
    ({"instances": [{"x": 1.0, "k": 2 ** 70}]}, "feature 'k': expected integers (int32)"),
    ({"instances": [{"x": 1.0, "k": 1.0}]}, "feature 'k': expected integers (int32), got numbers that are not"),
    ({"inputs": {"x": [1.0, 2.0], "k": [1, 2.5]}}, "feature 'k': expected integers"),
    ({"instances": [{"x": 1e39, "k": 1}]}, "feature 'x': 1e+39 is beyond the float32 range"),
    ({"instances": [{"x": -3.5e38, "k": 1}]}, "beyond the float32 range"),
    ({"instances": [{"x": True, "k": 1}]}, "feature 'x': expected float32 numbers, got booleans"),
    ({"instances": [{"x": 1.0, "k": False}]}, "feature 'k': expected integers (int32), got booleans"),
    ({"inputs": {"x": [1.0, True], "k": [1, 2]}}, "feature 'x': expected float32 numbers, got booleans"),
    ({"inputs": {"x": [1.0, 2.0], "k": [1, True]}}, "feature 'k': expected integers (int32), got booleans"),
    ({"instances": [{"x": "1.0", "k": 1}]}, "feature 'x': expected float32 numbers, got strings"),
    ({"instances": [{"x": None, "k": 1}]}, "feature 'x': expected float32 numbers, got nulls"),
    ({"instances": [{"x": [1.0], "k": 1}]}, "feature 'x': expected shape [batch] + []"),
    ({"inputs": {"x": [[1.0, 2.0], [3.0]], "k": [1, 2]}}, "feature 'x'"),
])
def test_bad_values_are_400_naming_the_feature_without_numpy_words(served, body, message):
    server, _ = served
    r = server.predict(body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error
    assert not any(w in error for w in NUMPY_WORDS), error
    assert server.predict({"instances": [{"x": 1.0, "k": 1}]}).status_code == 200


def test_nan_and_infinity_tokens_are_accepted_and_answered_as_tokens(served):
    server, est = served
    body = '{"instances": [{"x": NaN, "k": 1}, {"x": Infinity, "k": 2}, {"x": -Infinity, "k": 3}, {"x": 2.0, "k": 4}]}'
    r = server.predict(body)
    assert r.status_code == 200, r.text
    assert "NaN" in r.text and "null" not in r.text
    got = [p[0] if isinstance(p, list) else p for p in json.loads(r.text)["predictions"]]
    want = _want(est, [np.nan, np.inf, -np.inf, 2.0], [1, 2, 3, 4])
    np.testing.assert_allclose(got, want, rtol=1e-6)  # nan == nan, inf == inf here
    edges = server.predict({"inputs": {"x": [3.4e38, -3.4e38], "k": [9, 0]}})
    assert edges.status_code == 200  # float32's largest values and the identity range's ends are fine


def test_one_bad_request_among_31_good_concurrent_ones_fails_alone(served):
    server, est = served
    rng = np.random.default_rng(3)
    cases = [(rng.normal(size=n).round(3).tolist(), rng.integers(0, 10, n).tolist()) for n in rng.integers(1, 4, 31)]

    async def run():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            async def one(x, k):
                return await http.post("/v1/models/m:predict", json={"inputs": {"x": x, "k": k}})
            for _ in range(3):  # several rounds: the bad one lands in merged batches
                bad = one([0.5, 0.5], [3, 99])
                answers = await asyncio.gather(*(one(x, k) for x, k in cases[:15]), bad,
                                               *(one(x, k) for x, k in cases[15:]))
                yield answers[15], answers[:15] + answers[16:]

    async def collect():
        return [item async for item in run()]

    for bad, good in asyncio.run(collect()):
        assert bad.status_code == 400 and "identity column 'k'" in bad.json()["error"]
        for (x, k), r in zip(cases, good, strict=True):
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(np.ravel(r.json()["outputs"]), _want(est, x, k), rtol=1e-5, atol=1e-6)
    metrics = httpx.get(f"{server.url}/metrics").text
    calls = float(metrics.split('jax_estimator_serving_batch_size_count{model="m"} ')[1].split()[0])
    requests = sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith('jax_estimator_serving_requests_total{model="m",api="predict"'))
    assert calls < requests - 32  # requests shared device calls, so the bad one was merged with good ones


def test_b64_strings_for_a_single_string_input_in_rows_and_columns(tmp_path):
    color = fc.categorical_column_with_vocabulary_list("color", ["red", "grün", "blue"])
    est = LinearRegressor([color], model_dir=str(tmp_path / "m"), config=RunConfig(random_seed=0))
    feats = {"color": np.array(["red", "grün", "blue", "x"], dtype=object)}
    est.train(lambda: iter([(feats, np.array([1.0, 2.0, 3.0, 4.0], np.float32))] * 3), max_steps=3)
    est.export_saved_model(str(tmp_path / "e"), {"color": "string"})
    server = Server(str(tmp_path / "e"), "s")
    try:
        want = [p["predictions"][0] for p in est.predict(lambda: iter([feats]))]
        b64 = [{"b64": base64.b64encode(c.encode()).decode()} for c in feats["color"]]
        for body in ({"instances": b64}, {"instances": [{"color": v} for v in b64]},
                     {"inputs": b64}, {"inputs": {"color": b64}}, {"instances": list(feats["color"])}):
            r = server.predict(body)
            assert r.status_code == 200, (body, r.text)
            got = r.json().get("predictions", r.json().get("outputs"))
            np.testing.assert_allclose(np.ravel(got), want, rtol=1e-6)
        bad = server.predict({"instances": [{"b64": "not base64!"}]})
        assert bad.status_code == 400 and "feature 'color'" in bad.json()["error"]
        number = server.predict({"instances": [3]})
        assert number.status_code == 400 and "expected strings" in number.json()["error"]
    finally:
        server.stop()
