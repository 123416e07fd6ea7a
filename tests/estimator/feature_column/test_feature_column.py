"""Feature columns: host-side ids (vs TensorFlow's published values), device-side layers vs numpy."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from estimator import feature_column as fc
from estimator import nn
from estimator.feature_column._fingerprint import fingerprint64, fingerprint_cat64

# Reference values. Fingerprint64("Hello"/"World"): tensorflow/core/platform/fingerprint_test.cc.
# The others: the farmhashna::Hash64 vectors of github.com/tecnickcom/farmhash64 (python tests),
# covering every length branch (0, 1-3, 4-7, 8-16, 17-32, 33-64, >64 bytes).
FINGERPRINTS = [
    ("Hello", 15404698994557526151), ("World", 18308117990299812472),
    ("", 0x9AE16A3B2F90404F), ("a", 0xB3454265B6DF75E3), ("abc", 0x24A5B3A074E7F369),
    ("abcde", 0xC22F4663E54E04D4), ("abcdefghi", 0x332C8ED4DAE5BA42),
    ("0123456789=012345", 0x46A7416ED4861E3B), ("C is as portable as Stonehedge!!", 0xB944F8A16261E414),
    ("I wouldn't marry him with a ten foot pole.", 0xA9961670CE2A46D9),
    ("For every action there is an equal and opposite government program.", 0x55182F8859ECA4CE),
    ("The fugacity of a constituent in a mixture of gases at a given temperature is proportional "
     "to its mole fraction.  Lewis-Randall Rule", 0x098EFF6958C5E91A),
]


def test_fingerprint64_matches_tensorflow_and_farmhash_reference_values():
    strings = np.array([s for s, _ in FINGERPRINTS], dtype=object)
    got = fingerprint64(strings)
    assert [int(g) for g in got] == [v for _, v in FINGERPRINTS]
    # bytes, str and 2-D inputs hash alike
    assert int(fingerprint64(np.array([[b"Hello"]]))[0, 0]) == FINGERPRINTS[0][1]


def test_hash_bucket_matches_tf_to_hash_bucket_fast_doc_example():
    # tf.strings.to_hash_bucket_fast(["Hello", "TensorFlow", "2.x"], 3) -> [0, 2, 2] (TF API docs)
    col = fc.categorical_column_with_hash_bucket("w", 3)
    ids = fc.transform_features({"w": np.array(["Hello", "TensorFlow", "2.x", ""])}, [col])["w__ids"]
    np.testing.assert_array_equal(ids[:, 0], [0, 2, 2, -1])


def test_crossed_hash_matches_tf_sparse_cross_hashed():
    # tensorflow/python/kernel_tests/sparse_ops/sparse_cross_op_test.py:
    # test_hashed_zero_bucket_no_hash_key -> 1971693436396284976, test_hashed_no_hash_key -> 83.
    h = np.uint64(fc.DEFAULT_HASH_KEY)
    for s in ["batch1-FC1-F1", "batch1-FC2-F1", "batch1-FC3-F1"]:
        h = fingerprint_cat64(h, fingerprint64(np.array([s]))[0])
    assert int(h) % (2**63 - 1) == 1971693436396284976
    col = fc.crossed_column(["a", "b", "c"], 100)
    feats = {"a": np.array(["batch1-FC1-F1"]), "b": np.array(["batch1-FC2-F1"]),
             "c": np.array(["batch1-FC3-F1"])}
    assert fc.transform_features(feats, [col])["a_X_b_X_c__ids"].tolist() == [[83]]


def test_hash_ids_are_the_same_in_another_process():
    code = ("import numpy as np; from estimator import feature_column as fc; "
            "c = fc.crossed_column(['w', 'n'], 10**6); "
            "print(fc.transform_features({'w': np.array(['x', 'yy']), 'n': np.array([3, 4])}, [c])"
            "['n_X_w__ids'].ravel().tolist())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout for seed in (1, 2)}
    col = fc.crossed_column(["w", "n"], 10**6)
    here = fc.transform_features({"w": np.array(["x", "yy"]), "n": np.array([3, 4])}, [col])
    assert runs == {f"{here['n_X_w__ids'].ravel().tolist()}\n"}


def test_crossed_column_is_cartesian_with_missing_entries_dropped():
    col = fc.crossed_column(["a", "b"], 50)
    feats = {"a": np.array([["x", "y"], ["x", ""]]), "b": np.array([[1, 2], [-1, -1]])}
    ids = fc.transform_features(feats, [col])["a_X_b__ids"]
    assert ids.shape == (2, 4)
    assert (ids[0] >= 0).all() and (ids[1] == -1).all()
    # first cross of row 0 is (x, 1): categorical order is "strings fingerprinted, ints as is"
    fp = fingerprint_cat64(fingerprint_cat64(np.uint64(fc.DEFAULT_HASH_KEY), fingerprint64(np.array(["x"]))[0]),
                           np.uint64(1))
    assert ids[0, 0] == int(fp) % 50


def test_bucketize_is_bisect_right():
    col = fc.bucketized_column(fc.numeric_column("x"), [0.0, 1.0, 2.5])
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.49, 2.5, 100.0], np.float32)
    expected = np.searchsorted([0.0, 1.0, 2.5], x, side="right")
    np.testing.assert_array_equal(expected, [0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(col.host_ids({"x": x})[:, 0], expected)
    ids, _ = col.device_ids({"x": x})
    np.testing.assert_array_equal(np.asarray(ids)[:, 0], expected)
    np.testing.assert_array_equal(np.asarray(col.dense({"x": x})), np.eye(4)[expected])


def test_bucketized_multi_dimensional_offsets_ids_per_dimension():
    col = fc.bucketized_column(fc.numeric_column("x", shape=2), [0.0])
    ids, _ = col.device_ids({"x": np.array([[-1.0, 1.0]], np.float32)})
    assert np.asarray(ids).tolist() == [[0, 3]] and col.num_buckets == 4


def test_vocabulary_ids_oov_buckets_and_default_value():
    vocab = ["Sun", "Mon", "Tue"]
    oov = fc.categorical_column_with_vocabulary_list("d", vocab, num_oov_buckets=4)
    dflt = fc.categorical_column_with_vocabulary_list("d", vocab, default_value=2)
    x = {"d": np.array(["Mon", "Fri", "", "Sun"], dtype=object)}
    fri = 3 + int(fingerprint64(np.array(["Fri"]))[0] % np.uint64(4))
    np.testing.assert_array_equal(oov.host_ids(x)[:, 0], [1, fri, -1, 0])
    np.testing.assert_array_equal(dflt.host_ids(x)[:, 0], [1, 2, -1, 0])
    ints = fc.categorical_column_with_vocabulary_list("n", [10, 20])
    np.testing.assert_array_equal(ints.host_ids({"n": np.array([20, 5, -1])})[:, 0], [1, -1, -1])
    with pytest.raises(fc.FeatureColumnError, match="duplicate"):
        fc.categorical_column_with_vocabulary_list("d", ["a", "a"])


def test_vocabulary_file_is_embedded_in_the_config(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("red\ngreen\nblue\n")
    col = fc.categorical_column_with_vocabulary_file("color", str(path), vocabulary_size=2)
    path.unlink()
    (restored,) = fc.columns_from_config(json.loads(json.dumps(fc.columns_to_config([col]))))
    np.testing.assert_array_equal(restored.host_ids({"color": np.array(["green", "blue"])})[:, 0], [1, -1])


def test_vocabulary_file_in_a_bucket_reads_like_a_local_one(bucket):
    from input_pipelines import fs
    url = fs.join(bucket, "vocab", "colors.txt")
    fs.write_atomically(url, "red\r\ngreen\nblue\n")  # "\r" stays part of the entry, as in TF
    col = fc.categorical_column_with_vocabulary_file("color", url)
    ids = col.host_ids({"color": np.array(["red\r", "red", "blue"])})[:, 0]
    np.testing.assert_array_equal(ids, [0, -1, 2])
    with pytest.raises(fc.FeatureColumnError, match=r"cannot read .*missing\.txt"):
        fc.categorical_column_with_vocabulary_file("color", fs.join(bucket, "missing.txt"))


def test_identity_out_of_range_raises_or_uses_default():
    col = fc.categorical_column_with_identity("h", 24)
    with pytest.raises(fc.FeatureColumnError, match="outside"):
        col.host_ids({"h": np.array([3, 24])})
    col = fc.categorical_column_with_identity("h", 24, default_value=0)
    np.testing.assert_array_equal(col.host_ids({"h": np.array([3, 24, -1])})[:, 0], [3, 0, -1])


def _apply(fn, features, params=None):
    model = nn.transform(fn)
    if params is None:
        params, _ = model.init(0, features)
    return model.apply(params, {}, None, features)[0], params


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_embedding_combiners_with_weights_match_numpy(combiner):
    cat = fc.categorical_column_with_identity("ids", 4)
    col = fc.embedding_column(fc.weighted_categorical_column(cat, "w"), 2, combiner=combiner)
    raw = {"ids": np.array([[0, 2, -1], [-1, -1, -1]]), "w": np.array([[1.0, 3.0, 7.0], [1.0, 1.0, 1.0]])}
    feats = fc.transform_features(raw, [col])
    table = np.arange(8, dtype=np.float32).reshape(4, 2)
    params = {"input_layer": {"ids_weighted_by_w_embedding": {"embedding_weights": table}}}
    out, _ = _apply(lambda f: fc.input_layer(f, [col]), feats, params)
    total = 1.0 * table[0] + 3.0 * table[2]
    denom = {"sum": 1.0, "mean": 4.0, "sqrtn": np.sqrt(10.0)}[combiner]
    np.testing.assert_allclose(np.asarray(out), [total / denom, [0.0, 0.0]], rtol=1e-6)


def test_embedding_default_init_is_truncated_normal_with_stddev_1_over_sqrt_dim():
    col = fc.embedding_column(fc.categorical_column_with_identity("i", 2000), 4)
    feats = fc.transform_features({"i": np.array([1])}, [col])
    _, params = _apply(lambda f: fc.input_layer(f, [col]), feats)
    table = np.asarray(params["input_layer"]["i_embedding"]["embedding_weights"])
    assert table.shape == (2000, 4) and np.abs(table).max() <= 2 * 0.5 + 1e-6
    assert 0.3 < table.std() < 0.5  # a N(0, 0.5) truncated at 2 sigma has std 0.44


def test_indicator_counts_and_input_layer_order_by_name():
    color = fc.categorical_column_with_vocabulary_list("color", ["r", "g", "b"])
    cols = [fc.numeric_column("z", normalizer_fn=lambda x: x * 10), fc.indicator_column(color),
            fc.numeric_column("a", shape=2)]
    raw = {"color": np.array([["r", "r", "b"], ["", "", ""]]), "z": np.array([1.0, 2.0]),
           "a": np.array([[5.0, 6.0], [7.0, 8.0]])}
    out, params = _apply(lambda f: fc.input_layer(f, cols), fc.transform_features(raw, cols))
    assert params == {}
    # sorted names: a, color_indicator, z
    np.testing.assert_allclose(np.asarray(out), [[5, 6, 2, 0, 1, 10], [7, 8, 0, 0, 0, 20]])


def test_input_layer_rejects_categorical_columns():
    col = fc.categorical_column_with_identity("i", 3)
    with pytest.raises(fc.FeatureColumnError, match="embedding_column or indicator_column"):
        _apply(lambda f: fc.input_layer(f, [col]), fc.transform_features({"i": np.array([1])}, [col]))


def test_linear_model_matches_numpy_with_names_and_sparse_combiner():
    b = fc.bucketized_column(fc.numeric_column("x"), [0.0, 1.0])
    tags = fc.categorical_column_with_vocabulary_list("tags", ["a", "b", "c"])
    cols = [fc.numeric_column("n"), b, tags]
    raw = {"x": np.array([-1.0, 0.5]), "n": np.array([2.0, 3.0]), "tags": np.array([["a", "c"], ["b", ""]])}
    feats = fc.transform_features(raw, cols)
    w_b, w_t = np.array([[1.0], [2.0], [3.0]]), np.array([[10.0], [20.0], [30.0]])
    params = {"linear_model": {"n": {"weights": np.array([[0.5]])}, "x_bucketized": {"weights": w_b},
                               "tags": {"weights": w_t}, "bias_weights": np.array([0.25])}}
    for combiner, tag_part in (("sum", [40.0, 20.0]), ("mean", [20.0, 20.0]),
                               ("sqrtn", [40.0 / np.sqrt(2), 20.0])):
        out, _ = _apply(lambda f, c=combiner: fc.linear_model(f, cols, sparse_combiner=c), feats, params)
        expected = np.array([2.0 * 0.5, 3.0 * 0.5]) + np.array([1.0, 2.0]) + np.array(tag_part) + 0.25
        np.testing.assert_allclose(np.asarray(out)[:, 0], expected, rtol=1e-6)


def test_transform_passes_numbers_through_drops_strings_and_fills_defaults():
    cols = [fc.numeric_column("p", default_value=1.5), fc.numeric_column("engineered")]
    out = fc.transform_features({"k": np.array(["a", "b"]), "n": np.array([1, 2], np.int64)}, cols)
    assert set(out) == {"n", "p"} and out["n"].dtype == np.int32
    np.testing.assert_array_equal(out["p"], [[1.5], [1.5]])
    # a key produced on the device (feature_engineering_fn) is not required on the host
    with pytest.raises(fc.FeatureColumnError, match="engineered"):
        _apply(lambda f: fc.input_layer(f, cols), out)


def test_config_round_trip_gives_equal_columns_and_ids():
    day = fc.categorical_column_with_vocabulary_list("day", ["Sun", "Mon"], num_oov_buckets=1)
    lat = fc.bucketized_column(fc.numeric_column("lat"), [40.0, 41.0])
    cols = [fc.embedding_column(fc.crossed_column([lat, day, "hour"], 97), 3, combiner="sum"),
            fc.indicator_column(fc.categorical_column_with_hash_bucket("w", 5)), lat,
            fc.embedding_column(fc.categorical_column_with_identity("i", 4, default_value=0), 2)]
    config = json.loads(json.dumps(fc.preprocessing_config(cols)))
    assert fc.columns_from_config(config["feature_columns"]) == cols
    raw = {"day": np.array(["Mon", "Wed"]), "lat": np.array([40.5, 39.0]), "hour": np.array([3, 7]),
           "w": np.array(["x", "y"]), "i": np.array([1, 9])}
    a, b = fc.transform_features(raw, cols), fc.host_transform_from_json(config)(raw)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _cross_hash(ids, size):
    h = np.uint64(fc.DEFAULT_HASH_KEY)
    for i in ids:
        h = fingerprint_cat64(h, np.uint64(i))
    return int(h) % size


def test_host_transform_gives_the_hashed_ids_of_a_cross_of_columns():
    xy = fc.bucketized_column(fc.numeric_column("xy", shape=2), [0.0, 0.5])  # 2 ids per example: 0..2, 3..5
    day = fc.categorical_column_with_vocabulary_list("day", ["Sun", "Mon"], num_oov_buckets=1)
    cross = fc.crossed_column([xy, day], 1000)
    raw = {"xy": np.array([[-1.0, 0.7], [0.2, 0.2], [0.9, -3.0]], np.float32), "day": np.array(["Mon", "", "Fri"])}
    ids = fc.HostTransform([cross])(raw)["day_X_xy_bucketized__ids"]
    xy_ids = np.searchsorted([0.0, 0.5], raw["xy"], side="right") + [0, 3]
    day_ids = [1, -1, 2]  # "Fri": the only OOV bucket
    expected = [[-1 if d == -1 else _cross_hash([x, d], 1000) for x in row] for row, d in zip(xy_ids, day_ids, strict=True)]
    np.testing.assert_array_equal(ids, expected)


def test_host_transform_equals_transform_features():
    color = fc.categorical_column_with_vocabulary_list("color", ["red", "green", "blue"], num_oov_buckets=2)
    word = fc.categorical_column_with_hash_bucket("word", 20)
    ident = fc.categorical_column_with_identity("n", 6, default_value=0)
    xy = fc.bucketized_column(fc.numeric_column("xy", shape=2), [0.0, 0.5])
    odd = fc.VocabularyCategoricalColumn("color", ("red", "green"), default_value=9)  # id out of range
    plain = fc.categorical_column_with_vocabulary_list("color", ["red", "green"])  # OOV: id -1, crossed
    cols = [fc.crossed_column([color, "word"], 97), fc.crossed_column([plain, xy], 300), fc.crossed_column([fc.crossed_column([color, ident], 40), xy], 400),
            fc.crossed_column(["word", "n", xy], 31, hash_key=7), fc.crossed_column([xy, xy], 20),
            fc.crossed_column([odd, ident], 50), fc.indicator_column(color), fc.embedding_column(word, 2)]
    rng = np.random.default_rng(0)
    raw = {"color": rng.choice(["red", "green", "blue", "pink", ""], (64, 2)),
           "word": rng.choice(["x", "yy", "", "z" * 70], (64, 3)), "n": rng.integers(-1, 9, 64),
           "xy": rng.uniform(-1, 1, (64, 2)).astype(np.float32)}
    transform = fc.HostTransform(cols)
    for rows in (slice(0, 1), slice(0, 64)):
        batch = {k: v[rows] for k, v in raw.items()}
        a, b = fc.transform_features(batch, cols), transform(batch)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_gradients_flow_into_embeddings_under_jit():
    col = fc.embedding_column(fc.categorical_column_with_identity("i", 3), 2)
    feats = fc.transform_features({"i": np.array([0, 2])}, [col])
    model = nn.transform(lambda f: fc.input_layer(f, [col]).sum())
    params, _ = model.init(0, feats)
    grads = jax.jit(jax.grad(lambda p: model.apply(p, {}, None, feats)[0]))(params)
    g = np.asarray(grads["input_layer"]["i_embedding"]["embedding_weights"])
    np.testing.assert_allclose(g, [[1, 1], [0, 0], [1, 1]])


# ----------------------------------------------------------------------------- TensorFlow goldens
# Values printed by scripts/tf_goldens/probe_tf_parity.py under tensorflow-cpu 2.15.1 +
# tensorflow-estimator 2.15.0 (the name after "TF:" is the probe's output line). TF's sparse ids are
# shown densified with -9 where an example has no entry; ours use -1 there.


def _tf_ids(ids):
    return [[-1 if i == -9 else i for i in row] for row in ids]


def _run(fn, raw, columns, params=None):
    """``fn`` (device side) on the host transform of ``raw``; params given or freshly made."""
    out, _ = _apply(fn, fc.transform_features(raw, columns), params)
    return np.asarray(out)


def test_hash_bucket_on_ints_treats_minus_one_as_missing_like_tf():
    col = fc.categorical_column_with_hash_bucket("k", 10, dtype="int64")
    feats = {"k": np.array([[1, -1], [-1, -1], [7, 3]], np.int64)}
    ids = fc.transform_features(feats, [col])["k__ids"]
    np.testing.assert_array_equal(ids, _tf_ids([[9, -9], [-9, -9], [8, 1]]))  # TF: hash_int_ids
    indicator = _run(lambda f: fc.input_layer(f, [fc.indicator_column(col)]), feats, [col])
    expected = np.zeros((3, 10))  # TF: hash_int_indicator
    expected[0, 9] = expected[2, 8] = expected[2, 1] = 1.0
    np.testing.assert_array_equal(indicator, expected)


@pytest.mark.parametrize("tables", [False, True])
def test_cross_of_a_vocabulary_crosses_its_oov_id_like_tf(tables):
    v = fc.categorical_column_with_vocabulary_list("v", ["a", "b", "c"])
    vi = fc.categorical_column_with_vocabulary_list("vi", [10, 20], dtype="int64")
    cols = [fc.crossed_column([v, "s"], 100), fc.crossed_column([vi, "s"], 1000)]
    feats = {"v": np.array([["a"], ["zzz"], [""]]), "vi": np.array([[10], [99], [-1]]),
             "s": np.array([["x"], ["y"], ["z"]])}
    out = fc.HostTransform(cols, cross_tables=tables)(feats)
    np.testing.assert_array_equal(fc.transform_features(feats, [v])["v__ids"], [[0], [-1], [-1]])
    np.testing.assert_array_equal(out["s_X_v__ids"], [[43], [8], [-1]])  # TF: cross_vocab_oov_ids
    np.testing.assert_array_equal(out["s_X_vi__ids"], [[43], [808], [-1]])  # TF: cross_int_vocab_oov_ids


def test_crossing_a_hashed_column_is_refused_like_tf():
    # TF: cross_hashed -> ValueError "categorical_column_with_hash_bucket is not supported for crossing"
    with pytest.raises(fc.FeatureColumnError, match="not supported for crossing.*feature name 'k'"):
        fc.crossed_column([fc.categorical_column_with_hash_bucket("k", 10), "s"], 10)


WEIGHTED_IDS = np.array([[0, 2], [1, 0], [2, 1], [0, 1]])
WEIGHTED_W = np.array([[2.0, -1.0], [-0.5, 0.5], [-2.0, -3.0], [1.0, -1.0]], np.float32)
TF_WEIGHTED_EMBEDDING = {  # TF: weighted_embedding_<combiner>, table [[1, 2], [3, 4], [5, 6]]
    "sum": [[-3.0, -2.0], [-1.0, -1.0], [-19.0, -24.0], [-2.0, -2.0]],
    "mean": [[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [1.0, 2.0]],
    "sqrtn": [[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [1.0, 2.0]],
}
TF_WEIGHTED_LINEAR = {  # TF: weighted_linear_<combiner>, weights [1, 10, 100], bias 0
    "sum": [[-98.0], [-4.5], [-230.0], [-9.0]],
    "mean": [[1.0], [1.0], [0.0], [1.0]],
    "sqrtn": [[1.0], [1.0], [0.0], [1.0]],
}


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_weighted_column_with_negative_weights_matches_tf(combiner):
    w = fc.weighted_categorical_column(fc.categorical_column_with_identity("id", 3), "w")
    feats = {"id": WEIGHTED_IDS, "w": WEIGHTED_W}
    emb = fc.embedding_column(w, 2, combiner=combiner)
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    got = _run(lambda f: fc.input_layer(f, [emb]), feats, [emb],
                 params={"input_layer": {"id_weighted_by_w_embedding": {"embedding_weights": table}}})
    np.testing.assert_allclose(got, TF_WEIGHTED_EMBEDDING[combiner], rtol=1e-6)
    weights = {"linear_model": {w.name: {"weights": np.array([[1.0], [10.0], [100.0]], np.float32)},
                                "bias_weights": np.zeros(1, np.float32)}}
    got = _run(lambda f: fc.linear_model(f, [w], sparse_combiner=combiner), feats, [w], params=weights)
    np.testing.assert_allclose(got, TF_WEIGHTED_LINEAR[combiner], rtol=1e-6)
    # indicator: weights summed, negative ones included (TF: weighted_indicator)
    got = _run(lambda f: fc.input_layer(f, [fc.indicator_column(w)]), feats, [w])
    np.testing.assert_allclose(got, [[2.0, 0.0, -1.0], [0.5, -0.5, 0.0], [0.0, -3.0, -2.0], [1.0, -1.0, 0.0]])


def test_hash_buckets_beyond_int32_give_int64_ids_on_the_host_and_a_clear_error_on_the_device():
    big = fc.categorical_column_with_hash_bucket("b", 2**33)
    cross = fc.crossed_column(["b", "s"], 2**40)
    feats = {"b": np.array([["abc"], ["hello"], ["zz"]]), "s": np.array([["x"], ["y"], ["z"]])}
    for out in (fc.transform_features(feats, [big, cross]), fc.HostTransform([big, cross])(feats)):
        assert out["b__ids"].dtype == np.int64
        np.testing.assert_array_equal(out["b__ids"], [[1961358185], [5120724200], [2319923302]])  # TF: hash_big_ids
        np.testing.assert_array_equal(out["b_X_s__ids"], [[803120689965], [851760247378], [431134396546]])  # TF: cross_big_ids
    small = fc.transform_features(feats, [fc.categorical_column_with_hash_bucket("b", 2**31 - 1)])
    assert small["b__ids"].dtype == np.int32
    with pytest.raises(fc.FeatureColumnError, match="int32 ids the device"):
        fc.embedding_column(big, 2).dense(out)


def test_int64_features_beyond_int32_are_not_wrapped():
    out = fc.transform_features({"n": np.array([2**40, 5], np.int64), "m": np.array([3, -4], np.int64)}, [])
    assert out["m"].dtype == np.int32 and out["n"].dtype == np.float32
    np.testing.assert_array_equal(out["n"], [2.0**40, 5.0])


@pytest.mark.parametrize("text, size, probe, ids", [
    # TF: vocab_file_unicode_separators_{size,probe,ids}
    ("a\u2028b\nc\u0085d\ne\x0bf\x1cg\nh\u2029\n", 4, ["a\u2028b", "c\x85d", "e\x0bf\x1cg", "h\u2029", "a", "zzz"],
     [0, 1, 2, 3, -1, -1]),
    # TF: vocab_file_crlf_* ("\r" stays part of the entry)
    ("x\r\ny\r\nz\n", 3, ["x\r", "y\r", "z", "x", "y", "zzz"], [0, 1, 2, -1, -1, -1]),
])
def test_vocabulary_file_splits_on_newline_only_like_tf(tmp_path, text, size, probe, ids):
    path = tmp_path / "vocab.txt"
    path.write_bytes(text.encode("utf-8"))
    col = fc.categorical_column_with_vocabulary_file("t", str(path))
    assert col.num_buckets == size
    np.testing.assert_array_equal(fc.transform_features({"t": np.array([probe])}, [col])["t__ids"], [ids])
