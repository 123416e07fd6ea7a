"""The model server over real HTTP: TF Serving's REST API, errors, batching, version hot swap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import jax.numpy as jnp
import numpy as np
import pytest
from _model_server import Server

from estimator.export import ExportableFunction, export_saved_model, load

SPEC = {"x": ("float32", [3]), "k": "int32"}


def _two_inputs(params, state, features):
    return {"y": features["x"] @ params["w"] + 0.5 * features["k"].astype(jnp.float32),
            "h": jnp.tanh(features["x"])}


def _numpy_two_inputs(w, x, k):
    x = np.asarray(x, np.float32)
    return {"y": x @ w + 0.5 * np.asarray(k, np.float32), "h": np.tanh(x)}


def _one_input(params, state, features):
    return {"scaled": features["v"] * params["s"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("taxi_exports"))
    w = np.random.default_rng(0).normal(size=3).astype(np.float32)
    path = export_saved_model(ExportableFunction(_two_inputs, {"w": w}), base, SPEC)
    version = os.path.basename(path)
    server = Server(base, "taxi", "--max_body_bytes", "4096", "--max_batch_size", "16",
                    "--version_labels", f"stable={version},canary={int(version) + 1}")
    yield server, w, int(os.path.basename(path)), path
    server.stop()


def test_status_and_metadata_in_tf_serving_shape(served):
    server, _, version, _ = served
    status = httpx.get(f"{server.url}/v1/models/taxi").json()
    assert status == {"model_version_status": [
        {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert httpx.get(f"{server.url}/v1/models/taxi/versions/{version}").status_code == 200
    meta = httpx.get(f"{server.url}/v1/models/taxi/metadata").json()
    assert meta["model_spec"] == {"name": "taxi", "signature_name": "", "version": str(version)}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT" and sig["inputs"]["k"]["dtype"] == "DT_INT32"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert sorted(sig["outputs"]) == ["h", "y"] and sig["method_name"] == "tensorflow/serving/predict"


def test_row_and_columnar_predictions_match_numpy_and_the_loader(served):
    server, w, version, path = served
    x, k = [[0.5, -1.0, 2.0], [1.0, 2.0, 3.0]], [1, 4]
    want = _numpy_two_inputs(w, x, k)
    rows = server.predict({"instances": [{"x": x[0], "k": k[0]}, {"x": x[1], "k": k[1]}]})
    assert rows.status_code == 200
    preds = rows.json()["predictions"]
    assert len(preds) == 2 and sorted(preds[0]) == ["h", "y"]
    np.testing.assert_allclose([p["y"] for p in preds], want["y"], rtol=1e-6)
    np.testing.assert_allclose([p["h"] for p in preds], want["h"], rtol=1e-6)
    cols = server.predict({"inputs": {"x": x, "k": k}}, version=version).json()["outputs"]
    direct = load(path)({"x": x, "k": k})
    np.testing.assert_allclose(cols["y"], direct["y"], rtol=1e-6)
    np.testing.assert_allclose(cols["h"], direct["h"], rtol=1e-6)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "Malformed JSON"),
    ({"instances": [{"x": [1.0, 2.0, 3.0]}]}, 400, "Missing feature(s) ['k']"),
    ({"instances": [{"x": [1.0, 2.0, 3.0], "k": 1, "z": 2}]}, 400, "Unknown feature(s) ['z']"),
    ({"instances": [{"x": ["a", "b", "c"], "k": 1}]}, 400, "feature 'x': expected float32 numbers"),
    ({"instances": [{"x": [1.0, 2.0], "k": 1}]}, 400, "feature 'x': expected shape"),
    ({"inputs": {"x": [[1.0, 2.0, 3.0]], "k": [1.5]}}, 400, "feature 'k': expected integers"),
    ({"instances": [], }, 400, "empty list"),
    ({"instances": [[1.0, 2.0, 3.0]]}, 400, "bare values"),
    ({"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}], "inputs": {}}, 400, "exactly one of"),
    ({"examples": []}, 400, "Unknown request field"),
    ([1, 2], 400, "JSON object"),
    ({"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}], "signature_name": "other"}, 400, "signature_name"),
])
def test_bad_requests_get_400_and_the_server_stays_up(served, body, status, message):
    server = served[0]
    r = server.predict(body)
    assert r.status_code == status and message in r.json()["error"]
    assert server.predict({"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}]}).status_code == 200


def test_unknown_model_version_or_path_get_404_and_big_bodies_413(served):
    server, _, version, _ = served
    ok = {"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}]}
    assert "not found" in server.predict(ok, name="other").json()["error"]
    assert server.predict(ok, name="other").status_code == 404
    assert server.predict(ok, version=version + 1).status_code == 404
    assert httpx.get(f"{server.url}/v1/models/other").status_code == 404
    assert httpx.get(f"{server.url}/v2/nothing").json()["error"].startswith("No such endpoint")
    assert server.predict({"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}]}, name="taxi").status_code == 200
    big = {"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}] * 200}  # over --max_body_bytes 4096
    r = server.predict(big)
    assert r.status_code == 413 and "over the limit" in r.json()["error"]
    assert server.predict(ok).status_code == 200


def test_version_and_label_routes_and_tf_serving_error_shapes(served):
    server, w, version, _ = served
    ok = {"instances": [{"x": [1.0, 2.0, 3.0], "k": 1}]}
    want = server.predict(ok).json()
    for prefix in (f"/versions/{version}", "/labels/stable"):
        assert httpx.post(f"{server.url}/v1/models/taxi{prefix}:predict", json=ok).json() == want
        assert httpx.get(f"{server.url}/v1/models/taxi{prefix}").json()["model_version_status"][0]["version"] == str(version)
        assert httpx.get(f"{server.url}/v1/models/taxi{prefix}/metadata").status_code == 200
    for path, message in [("/labels/canary:predict", f"Version {version + 1} of model 'taxi' is not loaded"),
                          ("/labels/nope:predict", "Unrecognized version label 'nope'"),
                          (f"/versions/{version + 7}:predict", "is not loaded")]:
        r = httpx.post(f"{server.url}/v1/models/taxi{path}", json=ok)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert list(r.json()) == ["error"] and message in r.json()["error"]
    r = httpx.post(f"{server.url}/v1/models/taxi:explain", json=ok)
    assert r.status_code == 404 and list(r.json()) == ["error"]
    for method, path in [("GET", ":predict"), ("PUT", ":predict"), ("POST", ""), ("DELETE", "/metadata")]:
        r = httpx.request(method, f"{server.url}/v1/models/taxi{path}", json=ok)
        assert r.status_code == 405 and list(r.json()) == ["error"], (method, path, r.text)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served):
    server, w, _, _ = served
    rng = np.random.default_rng(1)
    cases = [(rng.normal(size=(n, 3)).round(3).tolist(), rng.integers(0, 9, n).tolist())
             for n in rng.integers(1, 4, size=48)]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            async def one(x, k):
                return await http.post("/v1/models/taxi:predict", json={"inputs": {"x": x, "k": k}})
            bad = http.post("/v1/models/taxi:predict", json={"inputs": {"x": [[1.0, 2.0]], "k": [1]}})
            return await asyncio.gather(bad, *(one(x, k) for x, k in cases))

    bad, *answers = asyncio.run(run())
    assert bad.status_code == 400  # a bad request merged into a batch fails alone
    for (x, k), r in zip(cases, answers, strict=True):
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["outputs"]["y"], _numpy_two_inputs(w, x, k)["y"], rtol=1e-5, atol=1e-6)
    metrics = httpx.get(f"{server.url}/monitoring/prometheus/metrics").text
    assert 'jax_estimator_serving_requests_total{model="taxi",api="predict",status="200"}' in metrics
    assert "jax_estimator_serving_request_latency_seconds_bucket" in metrics
    batches = int(metrics.split('jax_estimator_serving_batch_size_count{model="taxi"} ')[1].split()[0])
    requests = sum(int(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith('jax_estimator_serving_requests_total{model="taxi",api="predict"'))
    assert 0 < batches < requests  # some requests shared a device call
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def test_new_version_is_hot_swapped_under_traffic_never_a_half_written_one(tmp_path):
    base = str(tmp_path)
    export_saved_model(ExportableFunction(_one_input, {"s": np.float32(2.0)}), base, {"v": "float32"})
    server = Server(base, "scale", "--poll_secs", "0.2", "--predict_in_thread", "true")
    try:
        # bare instances for a one-input model, answered as bare predictions
        assert server.predict({"instances": [1.0, 3.0]}).json() == {"predictions": [2.0, 6.0]}
        assert server.predict({"inputs": [1.0]}).json() == {"outputs": [2.0]}
        # a half-written export with a higher number (no signature file) and a temp dir: never served
        os.makedirs(os.path.join(base, "99999999999"))
        with open(os.path.join(base, "99999999999", "variables.npz"), "wb") as f:
            f.write(b"partial")
        os.makedirs(os.path.join(base, ".tmp-export-1-abc"))

        async def traffic():
            seen, failures = [], []
            stop = asyncio.Event()

            async def client(http):
                while not stop.is_set():
                    r = await http.post("/v1/models/scale:predict", json={"instances": [1.0]})
                    (seen if r.status_code == 200 else failures).append(r.json())

            async def swap():
                await asyncio.sleep(0.5)
                new = await asyncio.to_thread(export_saved_model, ExportableFunction(
                    _one_input, {"s": np.float32(3.0)}), base, {"v": "float32"})
                deadline = time.time() + 60
                while time.time() < deadline and (not seen or seen[-1]["predictions"] != [3.0]):
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # keep traffic going on the new version
                stop.set()
                return os.path.basename(new)

            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                results = await asyncio.gather(swap(), *(client(http) for _ in range(4)))
            return results[0], seen, failures

        new_version, seen, failures = asyncio.run(traffic())
        assert failures == []
        values = [r["predictions"] for r in seen]
        assert set(map(tuple, values)) == {(2.0,), (3.0,)}
        switch = values.index([3.0])
        assert all(v == [3.0] for v in values[switch + 8:])  # once swapped, only in-flight requests see the old one
        status = httpx.get(f"{server.url}/v1/models/scale").json()["model_version_status"]
        assert [s["version"] for s in status] == [new_version]
    finally:
        server.stop()


def test_a_missing_serving_dependency_names_the_extra():
    code = "import sys; sys.modules['starlette'] = None; import estimator.serving"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "serving extra" in done.stderr and "'starlette'" in done.stderr
