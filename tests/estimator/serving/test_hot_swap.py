"""Hot swap as deployments really copy: file by file, half-done, retried, and deleted versions."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
from _model_server import Server, Traffic

from estimator.export import ExportableFunction, export_saved_model
from estimator.serving._rest import version_status
from estimator.serving._versions import VersionManager


def _scale(params, state, features):
    return {"scaled": features["v"] * params["s"]}


def _export(base, s, **kw):
    return export_saved_model(ExportableFunction(_scale, {"s": np.float32(s)}), str(base), {"v": "float32"}, **kw)


def _copy_slowly(src: str, dst: str, order: list[str], pause: float, rewrite_signature=None) -> None:
    """Copies like gsutil/rsync might: the signature first, each file in two halves, with pauses."""
    os.makedirs(dst)
    for name in order:
        with open(os.path.join(src, name), "rb") as f:
            data = f.read()
        if name == "saved_model.json" and rewrite_signature is not None:
            data = rewrite_signature(data)
        with open(os.path.join(dst, name), "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(pause)
            f.write(data[len(data) // 2 :])
        time.sleep(pause)


def _as_format_1(data: bytes) -> bytes:
    """The same signature as an export from before manifests (format_version 1)."""
    sig = json.loads(data)
    del sig["manifest"]
    sig["format_version"] = 1
    return json.dumps(sig).encode()


def test_file_by_file_copies_are_waited_for_retried_and_deletion_falls_back(tmp_path):
    base, staging = tmp_path / "base", tmp_path / "staging"
    first = _export(base, 2.0)
    v2_src, v3_src = _export(staging, 3.0), _export(staging, 4.0)
    server = Server(str(base), "scale", "--poll_secs", "0.1", "--load_retry_backoff_secs", "0.1")
    traffic = Traffic(server)
    try:
        assert traffic.wait_for(2.0)
        # gsutil order: the signature before the variables are complete; polled many times half-done
        order = ["saved_model.json", "preprocessing.json", "computation.jaxexport", "variables.npz"]
        v2 = str(base / "1900000000")
        _copy_slowly(v2_src, v2, order, pause=0.4)
        assert traffic.wait_for(3.0)
        # an old-format export (no manifest) copied the same way fails to load half-done; retried until it loads
        v3 = str(base / "1900000001")
        _copy_slowly(v3_src, v3, order, pause=0.4, rewrite_signature=_as_format_1)
        assert traffic.wait_for(4.0)
        log = server.stderr()
        assert "Could not load version 1900000001" in log  # it was caught half-done ...
        assert "Could not load version 1900000000" not in log  # ... the manifest one never was
        # deleting the served version falls back to the newest remaining one
        shutil.rmtree(v3)
        assert traffic.wait_for(3.0)
        assert server.status().json()["model_version_status"][0]["version"] == "1900000000"
        shutil.rmtree(v2)
        assert traffic.wait_for(2.0)
        assert server.status().json()["model_version_status"][0]["version"] == os.path.basename(first)
        # the last one deleted too: keeps serving it from memory, with a warning
        shutil.rmtree(first)
        time.sleep(0.5)
        assert server.predict({"instances": [1.0]}).json() == {"predictions": [2.0]}
        assert "no other complete version" in server.stderr()
    finally:
        traffic.close()
        server.stop()
    assert traffic.failures == []
    seen = [v["predictions"][0] for v in traffic.values]
    assert set(seen) == {2.0, 3.0, 4.0}  # never anything else (no half-loaded model)


def test_a_broken_version_is_retried_with_bounded_backoff_and_again_when_its_files_change(tmp_path):
    good = _export(tmp_path, 2.0)
    bad = _export(tmp_path, 3.0)
    with open(os.path.join(bad, "computation.jaxexport"), "r+b") as f:  # same size, other bytes
        f.seek(10)
        f.write(b"\x00" * 8)
    now = [0.0]
    manager = VersionManager(str(tmp_path), lambda p: None, max_batch_size=2, max_load_retries=3,
                             retry_backoff_secs=1.0, clock=lambda: now[0])
    assert manager.refresh() is None and manager.current.version == int(os.path.basename(good))
    attempts = [0.0]  # the newest (bad) was tried first, then the good one loaded
    for _ in range(40):  # 20 s of polls every 0.5 s
        before = manager.failed_versions().get(int(os.path.basename(bad)), "")
        manager.refresh()
        after = manager.failed_versions()[int(os.path.basename(bad))]
        if after != before:
            attempts.append(now[0])
        now[0] += 0.5
    assert attempts == [0.0, 1.0, 3.0, 7.0]  # 1 + 3 retries, backoff 1, 2, 4 s; then given up
    assert "gave up after 4 attempts" in manager.failed_versions()[int(os.path.basename(bad))]
    assert "computation.jaxexport" in manager.failed_versions()[int(os.path.basename(bad))]
    status = version_status([manager.current.version], manager.failed_versions())["model_version_status"]
    assert [(s["version"], s["state"], s["status"]["error_code"]) for s in status] == [
        (os.path.basename(bad), "END", "UNKNOWN"), (os.path.basename(good), "AVAILABLE", "OK")]
    shutil.rmtree(bad)
    shutil.copytree(_export(tmp_path / "again", 3.0), bad)  # fixed files: loaded at once
    manager.refresh()
    assert manager.current.version == int(os.path.basename(bad))
