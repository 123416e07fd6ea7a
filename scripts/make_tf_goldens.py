"""Writes TensorFlow 2.15's results on randomized cases to tests/conformance/goldens/ (JSON).

tests/conformance/ compares jax-estimator against these files without TensorFlow. Regenerate
in a separate virtualenv (the test suite never needs TensorFlow):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 tensorflow-estimator==2.15.0
    /tmp/tfvenv/bin/python scripts/make_tf_goldens.py

Cases are drawn from a fixed seed: every feature column type (hash bucket over strings and
ints, vocabulary lists with default / OOV buckets, identity, bucketized, crosses of columns and
raw keys, weighted columns under embedding / linear / indicator with every combiner) and every
head (losses, metrics, predictions, with weights and label vocabularies).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.feature_column import feature_column_v2 as fc2  # noqa: E402
from tensorflow_estimator.python.estimator.head import (  # noqa: E402
    binary_class_head,
    multi_class_head,
    multi_label_head,
    regression_head,
)

fc = tf.feature_column
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "conformance", "goldens")
WORDS = ["a", "b", "c", "dog", "cat", "émoji🙂", "x y", "123", "-1", "zz" * 20]


def sparse_rows(column, features):
    """Each example's ids, sorted (TF's SparseTensor rows; order inside a row is not compared)."""
    ids = column.get_sparse_tensors(fc2.FeatureTransformationCache(features), None).id_tensor
    rows = [[] for _ in range(int(ids.dense_shape[0]))]
    for (row, _), value in zip(ids.indices.numpy().tolist(), ids.values.numpy().tolist(), strict=True):
        rows[row].append(int(value))
    return [sorted(r) for r in rows]


def strings(rng, shape, missing=0.2):
    values = rng.choice(WORDS, shape)
    return np.where(rng.random(shape) < missing, "", values)


def ints(rng, shape, low, high, missing=0.2):
    return np.where(rng.random(shape) < missing, -1, rng.integers(low, high, shape)).astype(np.int64)


def categorical_case(rng, key):
    """A random categorical column spec and its raw input ``[batch, width]``."""
    batch, width = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    kind = rng.choice(["hash_str", "hash_int", "vocab_str", "vocab_int", "identity", "bucketized"])
    if kind == "hash_str":
        return {"type": kind, "key": key, "size": int(rng.integers(1, 50))}, strings(rng, (batch, width))
    if kind == "hash_int":
        return {"type": kind, "key": key, "size": int(rng.integers(1, 50))}, ints(rng, (batch, width), -5, 10**6)
    if kind in ("vocab_str", "vocab_int"):
        n = int(rng.integers(1, 5))
        oov = int(rng.integers(0, 3))
        default = -1 if oov or rng.random() < 0.5 else int(rng.integers(0, n))
        if kind == "vocab_str":
            vocab = [str(v) for v in rng.choice(WORDS[:-1], n, replace=False)]
            raw = strings(rng, (batch, width))
        else:
            vocab = [int(v) for v in rng.choice(20, n, replace=False)]
            raw = ints(rng, (batch, width), 0, 25)
        return {"type": kind, "key": key, "vocab": vocab, "default": default, "oov": oov}, raw
    if kind == "identity":
        n = int(rng.integers(1, 8))
        if rng.random() < 0.5:
            return {"type": kind, "key": key, "n": n, "default": None}, ints(rng, (batch, width), 0, n)
        return ({"type": kind, "key": key, "n": n, "default": int(rng.integers(0, n))},
                ints(rng, (batch, width), 0, n + 3))
    bounds = sorted(set(np.round(rng.normal(size=int(rng.integers(1, 5))), 2).tolist()))
    return {"type": kind, "key": key, "bounds": bounds}, np.round(rng.normal(size=(batch, width)), 3).astype(np.float32)


def tf_column(spec):
    key, kind = spec["key"], spec["type"]
    if kind == "hash_str":
        return fc.categorical_column_with_hash_bucket(key, spec["size"])
    if kind == "hash_int":
        return fc.categorical_column_with_hash_bucket(key, spec["size"], dtype=tf.int64)
    if kind in ("vocab_str", "vocab_int"):
        dtype = tf.string if kind == "vocab_str" else tf.int64
        return fc.categorical_column_with_vocabulary_list(key, spec["vocab"], dtype, spec["default"], spec["oov"])
    if kind == "identity":
        return fc.categorical_column_with_identity(key, spec["n"], spec["default"])
    return fc.bucketized_column(fc.numeric_column(key, shape=spec["width"]), spec["bounds"])


def tf_input(spec, raw):
    if spec["type"] == "bucketized":
        spec["width"] = raw.shape[1]
    return tf.constant(raw)


def column_cases(rng, n):
    cases = []
    for _ in range(n):
        spec, raw = categorical_case(rng, "f")
        feats = {"f": tf_input(spec, raw)}
        cases.append({"column": spec, "input": raw.tolist(), "ids": sparse_rows(tf_column(spec), feats)})
    return cases


def cross_cases(rng, n):
    cases = []
    while len(cases) < n:
        batch = int(rng.integers(1, 5))
        leaves, feats, inputs = [], {}, {}
        for i in range(int(rng.integers(2, 4))):
            key = f"k{i}"
            kind = rng.choice(["column", "raw_str", "raw_int"])
            if kind == "column":
                spec, raw = categorical_case(rng, key)
                if spec["type"].startswith("hash"):
                    continue  # TF refuses to cross hashed columns
                raw = raw[:batch] if len(raw) >= batch else np.concatenate([raw] * batch)[:batch]
                feats[key] = tf_input(spec, raw)
                leaves.append(spec)
            else:  # raw keys without missing entries (TF would hash ""/-1; we treat them as missing)
                width = int(rng.integers(1, 3))
                raw = (strings(rng, (batch, width), 0.0) if kind == "raw_str"
                       else rng.integers(0, 100, (batch, width)).astype(np.int64))
                feats[key] = tf.constant(raw)
                leaves.append({"type": kind, "key": key})
            inputs[key] = raw.tolist()
        if len(leaves) < 2:
            continue
        size = int(rng.choice([1, 7, 100, 10**4, 2**40]))
        hash_key = None if rng.random() < 0.7 else int(rng.integers(1, 2**62))
        keys = [leaf["key"] if leaf["type"].startswith("raw") else tf_column(leaf) for leaf in leaves]
        col = fc.crossed_column(keys, size, hash_key)
        cases.append({"leaves": leaves, "size": size, "hash_key": hash_key, "input": inputs,
                      "ids": sparse_rows(col, feats)})
    return cases


def weighted_cases(rng, n):
    """Weighted identity ids under embedding, linear_model and indicator, every combiner."""
    cases = []
    for _ in range(n):
        buckets, batch, width, dim = 5, 4, 3, 2  # fixed shapes: jax compiles each shape once
        ids = rng.integers(0, buckets, (batch, width)).astype(np.int64)
        weights = np.round(rng.normal(size=(batch, width)), 2).astype(np.float32)
        weights[weights == 0] = 0.5  # TF drops 0.0 from dense weights, which misaligns ids and weights
        table = np.round(rng.normal(size=(buckets, dim)), 2).astype(np.float32)
        linear_w = np.round(rng.normal(size=(buckets, 1)), 2).astype(np.float32)
        combiner = str(rng.choice(["sum", "mean", "sqrtn"]))
        col = fc.weighted_categorical_column(fc.categorical_column_with_identity("id", buckets), "w")
        feats = {"id": tf.constant(ids), "w": tf.constant(weights)}
        emb = fc.embedding_column(col, dim, combiner=combiner, initializer=tf.constant_initializer(table))
        case = {"buckets": buckets, "ids": ids.tolist(), "weights": weights.tolist(), "table": table.tolist(),
                "linear_weights": linear_w.ravel().tolist(), "combiner": combiner,
                "embedding": tf.keras.layers.DenseFeatures([emb])(feats).numpy().tolist(),
                "indicator": tf.keras.layers.DenseFeatures([fc.indicator_column(col)])(feats).numpy().tolist()}
        with tf.Graph().as_default():
            out = tf.compat.v1.feature_column.linear_model(
                {"id": tf.constant(ids), "w": tf.constant(weights)}, [col], sparse_combiner=combiner)
            with tf.compat.v1.Session() as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                for var in tf.compat.v1.global_variables():
                    if "bias" not in var.name:
                        var.load(linear_w, sess)
                case["linear"] = sess.run(out).tolist()
        cases.append(case)
    return cases


def _np(value):
    value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    if value.dtype.kind in "SO":
        return [[v.decode() if isinstance(v, bytes) else v for v in row] for row in value.tolist()]
    return value.tolist()


def head_cases(rng, n):
    cases = []
    for i in range(n):
        kind = ["binary", "multiclass", "multilabel", "regression"][i % 4]
        batch = 8  # fixed shapes per head (jax compiles each shape once); values vary
        weighted = rng.random() < 0.7
        reduction = str(rng.choice(["sum_over_batch_size", "sum"]))
        tf_reduction = {"sum": tf.losses.Reduction.SUM,
                        "sum_over_batch_size": tf.losses.Reduction.SUM_OVER_BATCH_SIZE}[reduction]
        vocab = None
        n_classes = {"binary": 2, "multiclass": 4, "multilabel": 3, "regression": 2}[kind]
        kw = {"weight_column": "w" if weighted else None, "loss_reduction": tf_reduction}
        thresholds = sorted(set(np.round(rng.uniform(0.05, 0.95, int(rng.integers(0, 3))), 2).tolist()))
        if kind in ("binary", "multiclass", "multilabel") and rng.random() < 0.4:
            vocab = [f"class_{j}" for j in range(n_classes)]
        logits = np.round(rng.normal(scale=2.0, size=(batch, 1 if kind == "binary" else n_classes)), 3)
        logits = logits.astype(np.float32)
        if kind == "binary":
            head = binary_class_head.BinaryClassHead(thresholds=thresholds, label_vocabulary=vocab, **kw)
            ids = rng.integers(0, 2, (batch, 1))
            soft = vocab is None and rng.random() < 0.3
            labels = (np.round(rng.random((batch, 1)), 2).astype(np.float32) if soft else
                      np.array(vocab, dtype=object)[ids] if vocab else ids.astype(np.float32))
        elif kind == "multiclass":
            head = multi_class_head.MultiClassHead(n_classes, label_vocabulary=vocab, **kw)
            ids = rng.integers(0, n_classes, (batch, 1))
            labels = np.array(vocab, dtype=object)[ids] if vocab else ids.astype(np.int64)
        elif kind == "multilabel":
            vocab = None  # string multi-label labels are SparseTensors in TF; dense 0/1 here
            head = multi_label_head.MultiLabelHead(n_classes, thresholds=thresholds, **kw)
            labels = (np.round(rng.random((batch, n_classes)), 2).astype(np.float32) if rng.random() < 0.3
                      else rng.integers(0, 2, (batch, n_classes)).astype(np.int64))
        else:
            head = regression_head.RegressionHead(label_dimension=n_classes, **kw)
            labels = np.round(rng.normal(size=(batch, n_classes)), 3).astype(np.float32)
        weights = np.round(rng.uniform(0, 2, (batch, 1)), 2).astype(np.float32)
        weights[rng.random((batch, 1)) < 0.2] = 0.0
        features = {"w": tf.constant(weights)} if weighted else {}
        tf_labels = tf.constant(labels.astype(str) if labels.dtype == object else labels)
        loss = head.loss(labels=tf_labels, logits=tf.constant(logits), features=features)
        metrics = head.update_metrics(head.metrics(), features, tf.constant(logits), tf_labels)
        predictions = head.predictions(tf.constant(logits))
        cases.append({
            "head": kind, "n": n_classes, "vocab": vocab, "thresholds": thresholds, "reduction": reduction,
            "weights": weights.ravel().tolist() if weighted else None, "logits": logits.tolist(),
            "labels": labels.tolist(), "loss": float(loss),
            "metrics": {k: float(m.result()) for k, m in sorted(metrics.items())},
            "predictions": {k: _np(v) for k, v in sorted(predictions.items()) if k != "logits"},
        })
    return cases


CANNED_FEATURES = {
    "x": [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 0.5], [0.0, 0.0], [1.5, 1.5]],
    "c": [["a"], ["b"], ["zzz"], ["c"], ["a"], [""]],
    "w": [[1.0], [2.0], [0.5], [0.0], [1.5], [1.0]],
}
VOCAB = {"type": "vocab", "key": "c", "vocab": ["a", "b", "c"]}
NUMERIC = {"type": "numeric", "key": "x", "shape": 2}
# (estimator, columns by argument, other arguments, labels); optimizers are SGD at "lr" (TF and ours)
CANNED = [
    ("DNNClassifier", {"feature_columns": [NUMERIC, {"type": "embedding", "of": VOCAB, "dim": 2}]},
     {"hidden_units": [3], "n_classes": 3, "label_vocabulary": ["p", "q", "r"], "weight_column": "w", "lr": 0.1},
     [["p"], ["q"], ["r"], ["p"], ["r"], ["q"]]),
    ("DNNRegressor", {"feature_columns": [NUMERIC, {"type": "indicator", "of": VOCAB}]},
     {"hidden_units": [4, 2], "label_dimension": 2, "lr": 0.05},
     [[1.0, 0.0], [2.0, 1.0], [3.0, -1.0], [0.5, 0.5], [0.0, 2.0], [-1.0, 1.0]]),
    ("LinearClassifier", {"feature_columns": [NUMERIC, VOCAB]},
     {"sparse_combiner": "mean", "weight_column": "w", "lr": 0.2}, [[0], [1], [1], [0], [1], [0]]),
    ("LinearRegressor", {"feature_columns": [NUMERIC, VOCAB]}, {"lr": 0.1},
     [[1.0], [2.0], [3.0], [0.5], [0.0], [-1.0]]),
    ("DNNLinearCombinedRegressor", {"linear_feature_columns": [VOCAB, NUMERIC],
                                    "dnn_feature_columns": [NUMERIC, {"type": "indicator", "of": VOCAB}]},
     {"dnn_hidden_units": [3], "lr": 0.1}, [[1.0], [2.0], [3.0], [0.5], [0.0], [-1.0]]),
]


def _tf_canned_column(spec):
    if spec["type"] == "numeric":
        return fc.numeric_column(spec["key"], shape=spec["shape"])
    if spec["type"] == "vocab":
        return fc.categorical_column_with_vocabulary_list(spec["key"], spec["vocab"])
    if spec["type"] == "embedding":
        return fc.embedding_column(_tf_canned_column(spec["of"]), spec["dim"])
    return fc.indicator_column(_tf_canned_column(spec["of"]))


def _tf_estimator(name, columns, kwargs, lr, model_dir):
    from tensorflow.keras.optimizers import legacy  # noqa: PLC0415

    kwargs = {k: v for k, v in kwargs.items() if k != "lr"}
    kwargs.update({k: [_tf_canned_column(c) for c in cols] for k, cols in columns.items()})
    if name.startswith("DNNLinearCombined"):
        kwargs.update(linear_optimizer=legacy.SGD(lr), dnn_optimizer=legacy.SGD(lr))
    else:
        kwargs["optimizer"] = legacy.SGD(lr)
    return getattr(tf.estimator, name)(model_dir=model_dir, config=tf.estimator.RunConfig(tf_random_seed=7),
                                       **kwargs)


def canned_cases():
    """Canned estimators: weights before and after one SGD step, then evaluate and predict."""
    import tempfile  # noqa: PLC0415

    cases = []
    feats = {"x": np.array(CANNED_FEATURES["x"], np.float32), "c": np.array(CANNED_FEATURES["c"]),
             "w": np.array(CANNED_FEATURES["w"], np.float32)}
    for name, columns, kwargs, labels in CANNED:
        labels = np.array(labels)
        labels = labels.astype(np.float32) if labels.dtype.kind == "f" else labels
        def input_fn(labels=labels):
            return tf.data.Dataset.from_tensors((feats, labels))
        weights = []
        for lr in (0.0, kwargs["lr"]):  # the same seeded init; a zero rate keeps it
            est = _tf_estimator(name, columns, kwargs, lr, tempfile.mkdtemp())
            est.train(input_fn, steps=1)
            weights.append({n: np.asarray(est.get_variable_value(n)).tolist() for n in est.get_variable_names()
                            if n != "global_step" and "/SGD" not in n and "training" not in n})
        evaluated = est.evaluate(input_fn, steps=1)
        predicted = list(est.predict(lambda: tf.data.Dataset.from_tensors(feats)))
        keys = [k for k in predicted[0] if k not in ("all_classes", "all_class_ids")]
        cases.append({
            "estimator": name, "columns": columns, "kwargs": kwargs, "labels": labels.tolist(),
            "features": CANNED_FEATURES, "init": weights[0], "after_one_step": weights[1],
            "evaluate": {k: float(v) for k, v in evaluated.items() if k != "global_step"},
            "predictions": {k: _np(np.array([p[k] for p in predicted])) for k in keys},
        })
    return cases


def _float32_text(value):
    """Floats with 9 significant digits: exact for float32, and a third of the JSON."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list):
        return [_float32_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _float32_text(v) for k, v in value.items()}
    return value


def main(seed: int = 15) -> None:
    rng = np.random.default_rng(seed)
    goldens = {
        "columns": column_cases(rng, 300),
        "crosses": cross_cases(rng, 200),
        "weighted": weighted_cases(rng, 150),
        "heads": head_cases(rng, 200),
        "canned": canned_cases(),
    }
    os.makedirs(OUT, exist_ok=True)
    for name, cases in goldens.items():
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"tensorflow": tf.__version__, "seed": seed, "cases": _float32_text(cases)}, f, ensure_ascii=False,
                      separators=(",", ":"))
        print(name, len(cases), file=sys.stderr)


if __name__ == "__main__":
    main()
