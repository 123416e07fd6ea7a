"""``python -m estimator.serving --model_base_path gs://... / s3://...`` against the local emulators."""

from __future__ import annotations

import os
import time

import numpy as np
from _model_server import Server, Traffic

from estimator.export import SIGNATURE_FILE, ExportableFunction, export_saved_model
from input_pipelines import fs


def _scale(params, state, features):
    return {"scaled": features["v"] * params["s"]}


def _export(base: str, s: float) -> str:
    return export_saved_model(ExportableFunction(_scale, {"s": np.float32(s)}), base, {"v": "float32"})


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_bucket_is_polled_hot_swapped_and_falls_back_with_every_request_answered(bucket):
    base = f"{bucket}/models/scale"
    # nothing there yet (as if mistyped): a warning and 503s naming the path, until an export appears
    server = Server(base, "scale", "--poll_secs", "0.2", "--load_retry_backoff_secs", "0.1", wait_for=503)
    traffic = None
    try:
        error = server.status().json()["error"]
        assert "does not exist" in error and "mistyped?" in error and base in error
        assert server.predict({"instances": [1.0]}).status_code == 503
        assert _wait(lambda: "does not exist" in server.stderr(), 10)
        first = _export(base, 2.0)
        assert _wait(lambda: server.status().status_code == 200)
        traffic = Traffic(server)
        assert traffic.wait_for(2.0)
        # a newer version is uploaded while the server polls: half-written, then committed
        second = _export(base, 3.0)
        assert traffic.wait_for(3.0)
        assert server.status().json()["model_version_status"][0]["version"] == os.path.basename(second)
        # a third one, its signature uploaded before the variables are all there (a copy tool's order)
        third = fs.join(base, str(int(os.path.basename(second)) + 1))
        staged = _export(f"{bucket}/staging", 4.0)
        fs.write_atomically(fs.join(third, SIGNATURE_FILE), fs.read_bytes(fs.join(staged, SIGNATURE_FILE)))
        for name in ("computation.jaxexport", "preprocessing.json"):
            fs.write_atomically(fs.join(third, name), fs.read_bytes(fs.join(staged, name)))
        variables = fs.read_bytes(fs.join(staged, "variables.npz"))
        fs.write_atomically(fs.join(third, "variables.npz"), variables[:-5])
        time.sleep(1.0)  # several polls see it incomplete
        assert traffic.values[-1] == {"predictions": [3.0]}
        fs.write_atomically(fs.join(third, "variables.npz"), variables)
        assert traffic.wait_for(4.0)
        # deleting the served version falls back to the newest remaining one
        fs.rmtree(third)
        assert traffic.wait_for(3.0)
        fs.rmtree(second)
        assert traffic.wait_for(2.0)
        assert server.status().json()["model_version_status"][0]["version"] == os.path.basename(first)
    finally:
        if traffic is not None:
            traffic.close()
        server.stop()
    log = server.stderr()
    assert "Could not load" not in log  # incomplete versions were waited for, never tried
    assert traffic.failures == []
    assert {v["predictions"][0] for v in traffic.values} == {2.0, 3.0, 4.0}
