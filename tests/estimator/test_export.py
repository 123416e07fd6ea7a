"""Export for serving and loading back: layout, exact predictions, input checks, exporters."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from _toy import input_fn, model_fn, regression_data

from estimator import Estimator, RunConfig
from estimator import feature_column as fc
from estimator.export import (
    ExportableFunction,
    ExportError,
    PredictorInputError,
    ServingInput,
    export_saved_model,
    load,
)
from estimator.exporter import BestExporter, ExporterError, FinalExporter, LatestExporter

SPEC = {"x": ("float32", [3]), "k": "int32"}


def _toy_fn(params, state, features):
    h = jnp.tanh((features["x"] - state["mean"]) @ params["dense"]["kernel"] + params["dense"]["bias"])
    return {"score": h @ params["out"] + 0.5 * features["k"].astype(jnp.float32), "hidden": h}


def _toy_arrays(seed=0):
    rng = np.random.default_rng(seed)
    params = {"dense": {"kernel": rng.normal(size=(3, 4)).astype(np.float32),
                        "bias": rng.normal(size=4).astype(np.float32)},
              "out": rng.normal(size=4).astype(np.float32)}
    return params, {"mean": rng.normal(size=3).astype(np.float32)}


def _numpy_toy(params, state, x, k):
    h = np.tanh((x - state["mean"]) @ params["dense"]["kernel"] + params["dense"]["bias"])
    return {"score": h @ params["out"] + 0.5 * k, "hidden": h}


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory):
    params, state = _toy_arrays()
    base = str(tmp_path_factory.mktemp("exports"))
    path = export_saved_model(ExportableFunction(_toy_fn, params, state, global_step=7), base, SPEC, as_text=True)
    return path, params, state


def test_layout_signature_and_plain_arrays(toy_export):
    path, params, _ = toy_export
    assert os.path.dirname(path) and os.path.basename(path).isdigit()
    assert sorted(os.listdir(path)) == ["computation.jaxexport", "computation.mlir", "preprocessing.json",
                                        "saved_model.json", "variables.npz"]
    with open(os.path.join(path, "saved_model.json")) as f:
        sig = json.load(f)
    assert sig["inputs"] == {"x": {"dtype": "float32", "shape": [3]}, "k": {"dtype": "int32", "shape": []}}
    assert sig["outputs"] == {"hidden": {"dtype": "float32", "shape": [4]}, "score": {"dtype": "float32", "shape": []}}
    assert sig["platforms"] == ["cpu", "cuda", "tpu"] and sig["global_step"] == 7 and sig["jax_version"]
    with np.load(os.path.join(path, "variables.npz"), allow_pickle=False) as npz:  # plain arrays, no pickle
        np.testing.assert_array_equal(npz["params/dense/kernel"], params["dense"]["kernel"])
        assert sorted(npz.files) == ["model_state/mean", "params/dense/bias", "params/dense/kernel", "params/out"]
    assert "stablehlo" in open(os.path.join(path, "computation.mlir")).read()


@pytest.mark.parametrize("n", [1, 3, 8, 13])
def test_predictions_match_numpy_in_rows_and_columns(toy_export, n):
    path, params, state = toy_export
    predictor = load(path, max_bucket=4)  # 13 rows: split into padded buckets
    rng = np.random.default_rng(n)
    x, k = rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 5, size=n)
    want = _numpy_toy(params, state, x, k)
    by_columns = predictor({"x": x.tolist(), "k": k.tolist()})
    by_rows = predictor([{"x": list(map(float, xi)), "k": int(ki)} for xi, ki in zip(x, k, strict=True)])
    for got in (by_columns, by_rows):
        assert sorted(got) == ["hidden", "score"] and got["score"].shape == (n,)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("features, message", [
    ({"x": [[1.0, 2.0, 3.0]]}, "Missing feature(s) ['k']"),
    ({"x": [[1.0, 2.0, 3.0]], "k": [1], "z": [1]}, "Unknown feature(s) ['z']"),
    ({"x": [[1.0, 2.0]], "k": [1]}, "feature 'x': expected shape [batch] + [3]"),
    ({"x": [["a", "b", "c"]], "k": [1]}, "feature 'x': expected float32 numbers"),
    ({"x": [[1.0, 2.0, 3.0]], "k": [1.5]}, "feature 'k': expected integers"),
    ({"x": [[1.0, 2.0, 3.0]], "k": [True]}, "got booleans"),
    ({"x": [[1.0, 2.0, 3.0], [1.0]], "k": [1, 2]}, "ragged"),
    ({"x": [[1.0, 2.0, 3.0]], "k": [1, 2]}, "different batch sizes"),
    ({"x": [[1.0, 2.0, 3.0]], "k": 1}, "feature 'k': expected a list"),
    ([{"x": [1.0, 2.0, 3.0]}], "Missing feature(s) ['k'] in example 0"),
    ([], "empty list"),
    ([1.0, 2.0], "bare values"),
    ("x", "must be a dict"),
])
def test_bad_inputs_name_the_problem(toy_export, features, message):
    with pytest.raises(PredictorInputError) as info:
        load(toy_export[0])(features)
    assert message in str(info.value)


def test_versions_are_unique_increasing_and_atomic(tmp_path):
    fn = ExportableFunction(_toy_fn, *_toy_arrays())
    paths = [export_saved_model(fn, str(tmp_path), SPEC) for _ in range(3)]  # same second
    versions = [int(os.path.basename(p)) for p in paths]
    assert versions == sorted(set(versions)) and len(versions) == 3
    assert sorted(os.listdir(tmp_path)) == sorted(map(str, versions))  # no temporary left behind

    def broken(params, state, features):
        raise RuntimeError("boom")

    with pytest.raises(ExportError, match="boom"):
        export_saved_model(ExportableFunction(broken, *_toy_arrays()), str(tmp_path), SPEC)
    assert sorted(os.listdir(tmp_path)) == sorted(map(str, versions))


def test_transform_runs_before_the_model_and_bfloat16_round_trips(tmp_path):
    params = {"w": np.array([1.5, -2.0], dtype=jnp.bfloat16)}

    def fn(p, s, f):
        return {"y": f["xy"] @ p["w"].astype(jnp.float32)}

    serving = ServingInput({"a": "float32", "b": "float32"},
                           transform=lambda f: {"xy": jnp.stack([f["a"] * 2, f["b"] + 1], axis=-1)})
    predictor = load(export_saved_model(ExportableFunction(fn, params), str(tmp_path), lambda: serving))
    got = predictor({"a": [1.0, 2.0], "b": [0.0, 3.0]})["y"]
    np.testing.assert_allclose(got, [2 * 1.5 - 2.0, 4 * 1.5 - 8.0])


def test_string_input_needs_host_preprocessing(tmp_path):
    with pytest.raises(ExportError, match="'s' is still"):
        export_saved_model(ExportableFunction(_toy_fn, *_toy_arrays()), str(tmp_path), {"s": "string"})
    with pytest.raises(ExportError, match="neither numeric nor 'string'"):
        export_saved_model(ExportableFunction(_toy_fn, *_toy_arrays()), str(tmp_path), {"s": "complex64"})


def _train_toy_estimator(model_dir) -> Estimator:
    est = Estimator(model_fn, model_dir=str(model_dir), config=RunConfig(random_seed=3), params={})
    est.train(input_fn(n=32, batch_size=8), max_steps=4)
    return est


_LOADER = textwrap.dedent("""
    import importlib.abc, json, sys
    import numpy as np

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("models", "_toy", "tests"):
                raise ImportError(f"the loader must not import {name}")

    sys.meta_path.insert(0, Block())
    from estimator.export import load

    export_dir, features_json, out = sys.argv[1:]
    with open(features_json) as f:
        got = load(export_dir)(json.load(f))
    np.savez(out, **got)
    assert not any(m.split(".")[0] in ("models", "_toy") for m in sys.modules)
""")


def _load_in_subprocess(tmp_path, export_dir, features):
    with open(tmp_path / "features.json", "w") as f:
        json.dump(features, f)
    script = tmp_path / "loader.py"
    script.write_text(_LOADER)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    subprocess.run([sys.executable, str(script), export_dir, str(tmp_path / "features.json"),
                    str(tmp_path / "out.npz")], check=True, env=env, cwd=str(tmp_path), timeout=120)
    with np.load(tmp_path / "out.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_estimator_export_matches_predict_in_a_subprocess(tmp_path):
    est = _train_toy_estimator(tmp_path / "model")
    path = est.export_saved_model(str(tmp_path / "export"), {"x": ("float32", [3])}, as_text=True)
    assert os.path.isfile(os.path.join(path, "computation.mlir"))  # tf.estimator's as_text: readable text too
    x, _ = regression_data(11, seed=5)
    want = list(est.predict(lambda: iter([{"x": x}]), yield_single_examples=False))[0]
    got = _load_in_subprocess(tmp_path, path, {"x": x.tolist()})
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_taxi_model_raw_columns_with_strings_match_predict_in_a_subprocess(tmp_path):
    from models.taxi_fare import DataParams, ModelParams, TaxiFareEstimator, serving_input

    rng = np.random.default_rng(0)
    n = 16
    raw = {"dayofweek": np.array(rng.choice(["Sun", "Mon", "Fri"], n), dtype=object),
           "hourofday": rng.integers(0, 24, n).astype(np.int32),
           "pickuplon": rng.uniform(-74.0, -73.8, n).astype(np.float32),
           "pickuplat": rng.uniform(40.6, 40.9, n).astype(np.float32),
           "dropofflon": rng.uniform(-74.0, -73.8, n).astype(np.float32),
           "dropofflat": rng.uniform(40.6, 40.9, n).astype(np.float32),
           "passengers": rng.integers(1, 4, n).astype(np.float32)}
    fare = rng.uniform(5, 30, n).astype(np.float32)
    est = TaxiFareEstimator(ModelParams(hidden_units=[8], nbuckets=4), with_time=True,
                            config=RunConfig(model_dir=str(tmp_path / "taxi"), random_seed=0))
    est.train(lambda: iter([(raw, fare)] * 2), max_steps=2)
    spec = serving_input(DataParams(train_files="", eval_files="", columns="feateng"))
    path = est.export_saved_model(str(tmp_path / "export"), spec)
    with open(os.path.join(path, "saved_model.json")) as f:
        assert sorted(json.load(f)["inputs"]) == sorted(raw)  # raw columns only: no key, no engineered ones
    want = list(est.predict(lambda: iter([raw]), yield_single_examples=False))[0]
    rows = [{k: v.tolist()[i] for k, v in raw.items()} for i in range(n)]
    got = _load_in_subprocess(tmp_path, path, rows)
    np.testing.assert_allclose(got["predictions"], want["predictions"], rtol=0, atol=1e-6)


def test_canned_estimator_with_vocabulary_strings_matches_predict(tmp_path):
    from estimator.canned import DNNRegressor

    color = fc.categorical_column_with_vocabulary_list("color", ["red", "green", "blue"])
    columns = [fc.numeric_column("size"), fc.embedding_column(color, 2)]
    est = DNNRegressor([4], columns, model_dir=str(tmp_path / "m"), config=RunConfig(random_seed=1))
    feats = {"size": np.array([1.0, 2.0, 3.0, 4.0], np.float32),
             "color": np.array(["red", "green", "blue", "pink"], dtype=object)}
    est.train(lambda: iter([(feats, np.array([1.0, 2.0, 3.0, 4.0], np.float32))] * 2), max_steps=2)
    predictor = load(est.export_saved_model(str(tmp_path / "e"), {"size": "float32", "color": "string"}))
    want = list(est.predict(lambda: iter([feats]), yield_single_examples=False))[0]
    got = predictor({"size": feats["size"].tolist(), "color": feats["color"].tolist()})
    np.testing.assert_allclose(got["predictions"], want["predictions"], rtol=0, atol=1e-6)
    # TF Serving's binary form of strings: {"b64": base64 of the UTF-8 bytes}
    b64 = [{"b64": base64.b64encode(c.encode()).decode()} for c in feats["color"]]
    got = predictor([{"size": s, "color": c} for s, c in zip(feats["size"].tolist(), b64, strict=True)])
    np.testing.assert_allclose(got["predictions"], want["predictions"], rtol=0, atol=1e-6)
    for bad, message in [({"b64": "not base64!"}, "not base64"), ({"b64": "/w=="}, "UTF-8"), (3, "got int")]:
        with pytest.raises(PredictorInputError, match=message):
            predictor({"size": [1.0], "color": [bad]})


# ------------------------------------------------------------------ exporters
def test_export_api_is_reexported_from_the_package_without_import_cycles():
    import estimator

    assert estimator.export.load is load
    assert (estimator.ServingInput, estimator.ExportError) == (ServingInput, ExportError)
    assert (estimator.LatestExporter, estimator.BestExporter, estimator.FinalExporter) == (
        LatestExporter, BestExporter, FinalExporter)
    fresh = "import estimator.exporter; from estimator import LatestExporter, export; export.load"
    subprocess.run([sys.executable, "-c", fresh], check=True, timeout=120)  # a new process: no import cycle


def _fn_model():
    return ExportableFunction(_toy_fn, *_toy_arrays())


def test_latest_exporter_keeps_the_newest_and_clears_stale_temporaries(tmp_path):
    stale, fresh = tmp_path / ".tmp-export-1-dead", tmp_path / ".tmp-export-2-busy"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (0, 0))  # left by a writer that crashed long ago
    exporter = LatestExporter("latest", SPEC, exports_to_keep=2)
    paths = [exporter.export(_fn_model(), str(tmp_path), None, {"average_loss": 1.0}, False) for _ in range(3)]
    assert sorted(os.listdir(tmp_path)) == [fresh.name] + [os.path.basename(p) for p in paths[1:]]


def test_final_exporter_exports_only_at_the_end(tmp_path):
    exporter = FinalExporter("final", SPEC)
    assert exporter.export(_fn_model(), str(tmp_path), None, {}, False) is None
    assert os.path.isdir(exporter.export(_fn_model(), str(tmp_path), None, {}, True))


def test_best_exporter_remembers_the_best_across_restarts(tmp_path):
    base = str(tmp_path)
    first = BestExporter("best", SPEC, exports_to_keep=5)
    assert first.export(_fn_model(), base, None, {"average_loss": 2.0}, False)
    assert first.export(_fn_model(), base, None, {"average_loss": 3.0}, False) is None
    restarted = BestExporter("best", SPEC)  # a new process: the best (2.0) is read back
    assert restarted.export(_fn_model(), base, None, {"average_loss": np.float32(2.5)}, False) is None
    assert restarted.export(_fn_model(), base, None, {"average_loss": 1.0}, False)
    assert len([d for d in os.listdir(base) if d.isdigit()]) == 2
    bigger = BestExporter("acc", SPEC, compare_fn=lambda best, cur: cur["accuracy"] > best["accuracy"])
    assert bigger.export(_fn_model(), str(tmp_path / "acc"), None, {"accuracy": 0.5}, False)
    assert bigger.export(_fn_model(), str(tmp_path / "acc"), None, {"accuracy": 0.4}, False) is None
    with pytest.raises(ExporterError, match="'average_loss', missing"):
        restarted.export(_fn_model(), base, None, {"loss": 1.0}, False)


# ------------------------------------------------------------------ loading damaged or crafted exports
def _fresh_export(tmp_path, **kw) -> str:
    return export_saved_model(ExportableFunction(_toy_fn, *_toy_arrays()), str(tmp_path / "e"), SPEC, **kw)


def _edit_signature(path, edit) -> None:
    sig_path = os.path.join(path, "saved_model.json")
    with open(sig_path) as f:
        sig = json.load(f)
    edit(sig)
    with open(sig_path, "w") as f:
        json.dump(sig, f)


def _without_manifest(sig) -> None:
    """As exports before format 2: the parsers, not the digests, meet the damage."""
    del sig["manifest"]
    sig["format_version"] = 1


def _truncate(path, name, keep=0.5) -> None:
    full = os.path.join(path, name)
    data = open(full, "rb").read()
    with open(full, "wb") as f:
        f.write(data[: int(len(data) * keep)])


@pytest.mark.parametrize("name", ["computation.jaxexport", "variables.npz", "preprocessing.json", "saved_model.json"])
@pytest.mark.parametrize("with_manifest", [True, False])
def test_truncated_or_corrupt_files_raise_export_error_naming_the_file(tmp_path, name, with_manifest):
    from estimator.export import ExportFormatError

    path = _fresh_export(tmp_path)
    if not with_manifest:
        _edit_signature(path, _without_manifest)
    _truncate(path, name)
    with pytest.raises(ExportError, match=name.replace(".", r"\.")) as info:
        load(path)
    assert isinstance(info.value, ExportFormatError)
    if with_manifest and name != "saved_model.json":
        assert "the manifest" in str(info.value)
    full = os.path.join(path, name)
    with open(full, "wb") as f:  # same size, garbage
        f.write(os.urandom(os.path.getsize(full) or 64))
    with pytest.raises(ExportError, match=name.replace(".", r"\.")):
        load(path)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(format_version=99), "format_version 99 .*upgrade jax-estimator"),
    (lambda s: s.update(format="something-else"), "not a jax-estimator export"),
    (lambda s: s.update(format_version=True), "format_version True is not one"),
    (lambda s: s.pop("jax_version"), "jax_version is missing"),
    (lambda s: s.update(platforms=[]), "platforms must be a non-empty list"),
    (lambda s: s.pop("variables"), "variables must be a list"),
    (lambda s: s["files"].pop("computation"), "files must name"),
    (lambda s: s["inputs"].update(x={"dtype": "complex", "shape": [3]}), r"inputs\['x'\]"),
    (lambda s: s["files"].update(computation="../../etc/passwd"), "files.computation = '../../etc/passwd' is not a file inside"),
    (lambda s: s["files"].update(computation="/etc/passwd"), "is not a file inside"),
    (lambda s: s["manifest"].pop("variables.npz"), "manifest does not list 'variables.npz'"),
    (lambda s: s["variables"][0].update(name="nope"), "variable 'nope' of the signature is missing"),
])
def test_inconsistent_or_crafted_signatures_are_refused_clearly(tmp_path, edit, message):
    path = _fresh_export(tmp_path)
    _edit_signature(path, edit)
    with pytest.raises(ExportError, match=message):
        load(path)


def test_symlinks_out_of_the_export_pickles_and_foreign_platforms_are_refused(tmp_path):
    path = _fresh_export(tmp_path)
    outside = tmp_path / "outside.npz"
    os.rename(os.path.join(path, "variables.npz"), outside)
    os.symlink(outside, os.path.join(path, "variables.npz"))
    with pytest.raises(ExportError, match="files.variables = 'variables.npz' is not a file inside"):
        load(path)
    for replacement, message in [
        (np.array([{"a": 1}], dtype=object), r"variables\.npz: not a readable variables archive"),  # a pickle
        (np.zeros(7, np.float32), r"variable 'params/out' is float32\[7\], the computation expects float32\[4\]"),
    ]:
        path = _fresh_export(tmp_path)
        with np.load(os.path.join(path, "variables.npz")) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["params/out"] = replacement
        np.savez(os.path.join(path, "variables.npz"), **arrays)
        _edit_signature(path, _without_manifest)
        with pytest.raises(ExportError, match=message):
            load(path)
    path = _fresh_export(tmp_path)
    _edit_signature(path, lambda s: (_without_manifest(s), s.update(jax_version="99.0.0")))
    _truncate(path, "computation.jaxexport")
    with pytest.raises(ExportError, match=r"written with jax 99\.0\.0, newer than this jax .*upgrade jax"):
        load(path)
    tpu_only = _fresh_export(tmp_path, platforms=("tpu",))
    with pytest.raises(ExportError, match=r"lowered for \['tpu'\], not for this process's default backend 'cpu'"):
        load(tpu_only)
