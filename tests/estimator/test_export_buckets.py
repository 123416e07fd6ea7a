"""Exports to gs:// and s3:// (local emulators): claimed versions, the signature as the commit, loading back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from _toy import input_fn, model_fn, regression_data

from estimator import Estimator, RunConfig
from estimator._export_dir import (
    CLAIM_FILE,
    STALE_TMP_SECS,
    complete_versions,
    garbage_collect,
    remove_stale_tmp,
)
from estimator.export import (
    SIGNATURE_FILE,
    ExportableFunction,
    ExportFormatError,
    export_incomplete_reason,
    export_saved_model,
    load,
)
from estimator.exporter import LatestExporter
from estimator.serving._versions import VersionManager
from input_pipelines import fs


def _scale(params, state, features):
    return {"scaled": features["v"] * params["s"]}


def _scaler(s: float) -> ExportableFunction:
    return ExportableFunction(_scale, {"s": np.float32(s)})


def _objects(url: str) -> dict[str, int]:
    return {name: size for name, (size, _token) in fs.stat_tree(url).items()}


def test_an_estimator_exported_to_a_bucket_loads_and_predicts_as_estimator_predict(bucket, tmp_path):
    est = Estimator(model_fn, model_dir=str(tmp_path / "model"), config=RunConfig(random_seed=3), params={})
    est.train(input_fn(n=32, batch_size=8), max_steps=4)
    base = f"{bucket}/exports/"  # a trailing slash as users type it
    path = est.export_saved_model(base, {"x": ("float32", [3])})
    assert path.startswith(f"{bucket}/exports/") and os.path.basename(path).isdigit()
    objects = _objects(path)
    signature = json.loads(fs.read_bytes(fs.join(path, SIGNATURE_FILE)))
    assert set(objects) == {CLAIM_FILE, SIGNATURE_FILE, *signature["manifest"]}
    assert all(objects[name] == entry["bytes"] for name, entry in signature["manifest"].items())
    assert complete_versions(f"{bucket}/exports") == [int(os.path.basename(path))]
    x, _ = regression_data(16, seed=5)
    want = list(est.predict(lambda: iter([{"x": x}]), yield_single_examples=False))[0]
    got = load(path)({"x": x})
    for key in ("predictions", "hidden"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)


def test_a_half_written_export_in_a_bucket_is_not_loaded_until_it_is_complete(bucket, tmp_path):
    local = export_saved_model(_scaler(3.0), str(tmp_path), {"v": "float32"})
    files = {name: open(os.path.join(local, name), "rb").read() for name in os.listdir(local)}  # noqa: SIM115
    base = f"{bucket}/serving"
    first = export_saved_model(_scaler(2.0), base, {"v": "float32"})
    version = fs.join(base, str(int(os.path.basename(first)) + 1))
    manager = VersionManager(base, lambda p: None, max_batch_size=2, retry_backoff_secs=0.0)

    def served() -> float:
        manager.refresh()
        return float(manager.current.predictor({"v": np.ones(1, np.float32)})["scaled"][0])

    assert served() == 2.0
    for name, data in files.items():  # the files an upload (gsutil cp -r) puts first, the signature not yet
        if name != SIGNATURE_FILE:
            fs.write_atomically(fs.join(version, name), data)
    assert export_incomplete_reason(version) == f"{SIGNATURE_FILE} is missing"
    with pytest.raises(ExportFormatError, match="not a complete export"):
        load(version)
    assert served() == 2.0
    # the signature is there, one listed file is short: still incomplete, and the loader refuses it
    fs.write_atomically(fs.join(version, SIGNATURE_FILE), files[SIGNATURE_FILE])
    short = files["variables.npz"][:-7]
    fs.write_atomically(fs.join(version, "variables.npz"), short)
    want = len(files["variables.npz"])
    assert export_incomplete_reason(version) == f"variables.npz has {want - 7} of {want} bytes"
    with pytest.raises(ExportFormatError, match="variables.npz: has"):
        load(version)
    assert served() == 2.0
    # right size, wrong bytes: complete by the listing, but its digest does not match: not served
    corrupt = bytearray(files["computation.jaxexport"])
    corrupt[20:28] = b"\x00" * 8
    fs.write_atomically(fs.join(version, "variables.npz"), files["variables.npz"])
    fs.write_atomically(fs.join(version, "computation.jaxexport"), bytes(corrupt))
    assert export_incomplete_reason(version) is None
    assert served() == 2.0
    assert "SHA-256 differs" in manager.failed_versions()[int(os.path.basename(version))]
    # completed: picked up at the next poll
    fs.write_atomically(fs.join(version, "computation.jaxexport"), files["computation.jaxexport"])
    assert served() == 3.0
    assert manager.failed_versions() == {}


def test_concurrent_exports_to_one_bucket_base_get_distinct_versions(bucket, monkeypatch):
    base = f"{bucket}/race"
    writers = 4
    listed = threading.Barrier(writers, timeout=60)
    real_listdir = fs.listdir

    def listdir_together(path):  # every writer sees the same versions, so all go for the same number
        try:
            return real_listdir(path)  # FileNotFoundError: nothing exported yet
        finally:
            listed.wait()

    monkeypatch.setattr(fs, "listdir", listdir_together)
    paths: dict[float, str] = {}
    errors = []

    def export(s: float) -> None:
        try:
            paths[s] = export_saved_model(_scaler(s), base, {"v": "float32"})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=export, args=(float(s),)) for s in range(1, writers + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.undo()
    assert errors == [], [repr(e) for e in errors]
    versions = sorted(int(os.path.basename(p)) for p in paths.values())
    assert len(set(versions)) == writers and versions == list(range(versions[0], versions[0] + writers))
    assert complete_versions(base) == versions
    for s, path in paths.items():  # each version holds one writer's files, not a mix
        assert load(path)({"v": np.ones(1, np.float32)})["scaled"][0] == s


def test_exporters_keep_n_on_a_bucket_and_stale_claims_are_collected(bucket):
    base = f"{bucket}/model/export/latest"
    exporter = LatestExporter("latest", {"v": "float32"}, exports_to_keep=2)
    paths = [exporter.export(_scaler(s), base, None, {}, False) for s in (1.0, 2.0, 3.0)]
    assert complete_versions(base) == [int(os.path.basename(p)) for p in paths[1:]]
    assert not fs.exists(paths[0])
    newest = int(os.path.basename(paths[-1]))
    # a writer that died a day ago (claim, some files, no signature), and one still writing
    dead, alive = fs.join(base, str(newest + 1)), fs.join(base, str(newest + 2))
    fs.write_atomically(fs.join(dead, CLAIM_FILE), json.dumps(
        {"host": "elsewhere", "pid": 1, "created_unix": 1.0, "writer": "x"}))
    fs.write_atomically(fs.join(dead, "variables.npz"), b"partial")
    fs.write_atomically(fs.join(alive, CLAIM_FILE), json.dumps(
        {"host": "elsewhere", "pid": 1, "created_unix": time.time() - STALE_TMP_SECS / 2, "writer": "y"}))
    fs.write_atomically(fs.join(base, str(newest + 3), "saved_model.json.part"), b"{")  # not an exporter's: kept
    # a writer on this host that was killed a moment ago
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    crashed = fs.join(base, str(newest + 4))
    fs.write_atomically(fs.join(crashed, CLAIM_FILE), json.dumps(
        {"host": socket.gethostname(), "pid": killed.pid, "created_unix": time.time(), "writer": "z"}))
    assert remove_stale_tmp(base) == [dead, crashed]
    garbage_collect(base, 2)
    assert not fs.exists(dead) and fs.exists(alive) and fs.exists(fs.join(base, str(newest + 3)))
    assert complete_versions(base) == [int(os.path.basename(p)) for p in paths[1:]]
    # the next export goes past every number taken, claimed or not
    assert int(os.path.basename(export_saved_model(_scaler(4.0), base, {"v": "float32"}))) == newest + 4


@pytest.mark.parametrize("name", ["../../other/variables.npz", "gs://elsewhere/x", "/abs/x", "a//b", "./x"])
def test_signature_entries_cannot_leave_a_bucket_export(gcs_bucket, name):
    path = export_saved_model(_scaler(1.0), f"{gcs_bucket}/e", {"v": "float32"})
    signature = json.loads(fs.read_bytes(fs.join(path, SIGNATURE_FILE)))
    signature["files"]["variables"] = name
    signature["manifest"][name] = signature["manifest"].pop("variables.npz")
    fs.write_atomically(fs.join(path, SIGNATURE_FILE), json.dumps(signature))
    with pytest.raises(ExportFormatError, match="not a file inside the export directory"):
        load(path)


def test_a_missing_bucket_is_named_as_possibly_mistyped(bucket):
    scheme = fs.protocol(bucket)
    for base in (f"{bucket}/no/such/prefix", f"{scheme}://no-such-bucket-{os.getpid()}/models"):
        manager = VersionManager(base, lambda p: None, max_batch_size=2)
        assert manager.refresh() is None and manager.current is None
        assert "does not exist" in manager.unavailable_reason and "mistyped?" in manager.unavailable_reason
        assert base in manager.unavailable_reason
        assert complete_versions(base) == []
    with pytest.raises(OSError, match="its bucket does not exist .mistyped.."):
        export_saved_model(_scaler(1.0), f"{scheme}://no-such-bucket-{os.getpid()}/models", {"v": "float32"})


def test_polling_a_bucket_costs_one_listing_and_keeps_serving_through_listing_errors(bucket, monkeypatch):
    base = f"{bucket}/polled"
    versions = [int(os.path.basename(export_saved_model(_scaler(s), base, {"v": "float32"}))) for s in (1.0, 2.0, 3.0)]
    calls = {"stat_tree": 0, "read_bytes": 0}

    def counted(name):
        real = getattr(fs, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    for name in calls:
        monkeypatch.setattr(fs, name, counted(name))
    manager = VersionManager(base, lambda p: None, max_batch_size=2)
    manager.refresh()
    assert manager.current.version == versions[-1]
    for name in calls:
        calls[name] = 0
    for _ in range(5):
        assert manager.refresh() is None
    assert calls == {"stat_tree": 5, "read_bytes": 0}  # unchanged signatures are not fetched again

    def unreachable(path):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(fs, "stat_tree", unreachable)
    assert manager.refresh() is None and manager.current.version == versions[-1]  # no false "deleted"
    fresh = VersionManager(base, lambda p: None, max_batch_size=2)
    fresh.refresh()
    assert fresh.current is None and "cannot be listed (ConnectionError: connection refused)" in fresh.unavailable_reason


def test_stat_tree_lists_the_same_files_and_sizes_locally_and_on_a_bucket(bucket, tmp_path):
    names = {"a.bin": b"x" * 7, "sub/b.bin": b"", "sub/deeper/c.bin": b"yz"}
    for root in (str(tmp_path / "t"), f"{bucket}/t"):
        for name, data in names.items():
            fs.write_atomically(fs.join(root, *name.split("/")), data)
        tree = fs.stat_tree(root)
        assert {n: size for n, (size, _) in tree.items()} == {n: len(d) for n, d in names.items()}, root
        fs.write_atomically(fs.join(root, "a.bin"), b"z" * 7)  # same size, rewritten: a new token
        assert fs.stat_tree(root)["a.bin"][1] != tree["a.bin"][1], root
        with pytest.raises(FileNotFoundError):
            fs.stat_tree(fs.join(root, "missing"))
