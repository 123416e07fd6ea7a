"""Prints TensorFlow 2.15's results for the parity cases of issue 15 (tests hold them as constants).

Run in a separate virtualenv with TensorFlow (never needed by the test suite):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 tensorflow-estimator==2.15.0
    /tmp/tfvenv/bin/python scripts/tf_goldens/probe_tf_parity.py

Each section prints ``name = value``; the tests quote the value and this script's name.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.feature_column import feature_column_v2 as fc2  # noqa: E402

fc = tf.feature_column


def show(name, value):
    if isinstance(value, tf.Tensor | tf.Variable):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    print(f"{name} = {value!r}")


def sparse_ids(column, features):
    """The column's id SparseTensor as a dense [batch, n] list, -9 where no entry."""
    cache = fc2.FeatureTransformationCache(features)
    ids = column.get_sparse_tensors(cache, None).id_tensor
    return tf.sparse.to_dense(ids, default_value=-9).numpy().tolist()


def dense(columns, features):
    return tf.keras.layers.DenseFeatures(columns)(features).numpy().tolist()


def linear(columns, features, weights, combiner):
    """tf.compat.v1 linear_model with the categorical column's weights set to ``weights``."""
    with tf.Graph().as_default():
        feats = {k: tf.constant(v) for k, v in features.items()}
        out = tf.compat.v1.feature_column.linear_model(feats, columns, sparse_combiner=combiner)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for var in tf.compat.v1.global_variables():
                if "bias" not in var.name:
                    var.load(np.asarray(weights, np.float32).reshape(var.shape), sess)
            return sess.run(out).tolist()


print("tf", tf.__version__)

# 1. hash bucket over an int feature: -1 is missing
h = fc.categorical_column_with_hash_bucket("k", 10, dtype=tf.int64)
feats = {"k": tf.constant([[1, -1], [-1, -1], [7, 3]], tf.int64)}
show("hash_int_ids", sparse_ids(h, feats))
show("hash_int_indicator", dense([fc.indicator_column(h)], feats))

# 2. cross of a vocabulary column (OOV -> default -1) with a raw key
v = fc.categorical_column_with_vocabulary_list("v", ["a", "b", "c"], default_value=-1)
x = fc.crossed_column([v, "s"], 100)
feats = {"v": tf.constant([["a"], ["zzz"], [""]]), "s": tf.constant([["x"], ["y"], ["z"]])}
show("vocab_ids", sparse_ids(v, feats))
show("cross_vocab_oov_ids", sparse_ids(x, feats))
vi = fc.categorical_column_with_vocabulary_list("vi", [10, 20], dtype=tf.int64, default_value=-1)
xi = fc.crossed_column([vi, "s"], 1000)
feats_i = {"vi": tf.constant([[10], [99], [-1]], tf.int64), "s": tf.constant([["x"], ["y"], ["z"]])}
show("cross_int_vocab_oov_ids", sparse_ids(xi, feats_i))
# 11. crossing a hashed column
try:
    fc.crossed_column([h, "s"], 10)
    show("cross_hashed", "accepted")
except ValueError as e:
    show("cross_hashed", f"ValueError: {e}")

# 3. weighted categorical column with negative / zero weights
ident = fc.categorical_column_with_identity("id", 3)
w = fc.weighted_categorical_column(ident, "w")
feats = {"id": tf.constant([[0, 2], [1, 0], [2, 1], [0, 1]], tf.int64),
         "w": tf.constant([[2.0, -1.0], [-0.5, 0.5], [-2.0, -3.0], [1.0, -1.0]])}
# (no 0.0 weights: TF drops them from dense weight inputs, then ids and weights do not align)
table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
for combiner in ("sum", "mean", "sqrtn"):
    emb = fc.embedding_column(w, 2, combiner=combiner, initializer=tf.constant_initializer(table))
    show(f"weighted_embedding_{combiner}", dense([emb], feats))
    show(f"weighted_linear_{combiner}", linear([w], feats, [1.0, 10.0, 100.0], combiner))
show("weighted_indicator", dense([fc.indicator_column(w)], feats))

# 4. hash bucket sizes above 2**31
big = fc.categorical_column_with_hash_bucket("b", 2**33)
feats = {"b": tf.constant([["abc"], ["hello"], ["zz"]])}
show("hash_big_ids", sparse_ids(big, feats))
bigx = fc.crossed_column(["b", "s"], 2**40)
show("cross_big_ids", sparse_ids(bigx, {**feats, "s": tf.constant([["x"], ["y"], ["z"]])}))

# 5. vocabulary file: lines split on "\n" only
tmp = tempfile.mkdtemp()
cases = {"unicode_separators": "a\u2028b\nc\u0085d\ne\x0bf\x1cg\nh\u2029\n",
         "crlf": "x\r\ny\r\nz\n"}
for name, text in cases.items():
    path = os.path.join(tmp, name + ".txt")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    col = fc.categorical_column_with_vocabulary_file("t", path)
    show(f"vocab_file_{name}_size", col.vocabulary_size)
    entries = text.split("\n")[:-1]
    probe = entries + [e.rstrip("\r") for e in entries] + ["a", "zzz"]
    show(f"vocab_file_{name}_probe", probe)
    show(f"vocab_file_{name}_ids", sparse_ids(col, {"t": tf.constant([probe])}))

# 6-8. heads
from tensorflow_estimator.python.estimator.head import binary_class_head, multi_label_head  # noqa: E402

logits = np.array([[-1.0], [0.5], [2.0], [0.25]], np.float32)
ml_logits = np.array([[1.0, -2.0, 0.5], [0.0, 1.5, -1.0]], np.float32)
mh = multi_label_head.MultiLabelHead(3)
show("multilabel_prediction_keys", sorted(mh.predictions(ml_logits)))
show("multilabel_classes", mh.predictions(ml_logits)["classes"])
mhv = multi_label_head.MultiLabelHead(3, label_vocabulary=["x", "y", "z"])
show("multilabel_classes_vocab", mhv.predictions(ml_logits)["classes"])


def head_eval(head, logits, labels, weights=None):
    features = {} if weights is None else {"w": tf.constant(weights)}
    loss = head.loss(labels=tf.constant(labels), logits=tf.constant(logits), features=features)
    metrics = head.update_metrics(head.metrics(), features, tf.constant(logits), tf.constant(labels))
    return float(loss), {k: round(float(m.result()), 6) for k, m in sorted(metrics.items())}


soft = np.array([[0.3], [0.9], [0.5], [1.0]], np.float32)
show("binary_soft", head_eval(binary_class_head.BinaryClassHead(), logits, soft))
ml_soft = np.array([[0.2, 0.0, 1.0], [0.5, 0.7, 0.1]], np.float32)
show("multilabel_soft", head_eval(multi_label_head.MultiLabelHead(3), ml_logits, ml_soft))
for name, bad in [("binary_soft_above_1", np.array([[1.5], [0.0], [0.0], [1.0]], np.float32))]:
    try:
        head_eval(binary_class_head.BinaryClassHead(), logits, bad)
        show(name, "accepted")
    except Exception as e:  # noqa: BLE001
        show(name, type(e).__name__)
zero_w = np.zeros((4, 1), np.float32)
show("binary_zero_weights", head_eval(binary_class_head.BinaryClassHead(weight_column="w"), logits,
                                      np.array([[0.0], [1.0], [1.0], [0.0]], np.float32), zero_w))

# more heads, with weights: binary (thresholds), multi-class (vocabulary), regression, multi-label
from tensorflow_estimator.python.estimator.head import multi_class_head, regression_head  # noqa: E402

weights = np.array([[1.0], [2.0], [0.5], [1.5]], np.float32)
hard = np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)
show("binary_weighted", head_eval(binary_class_head.BinaryClassHead(weight_column="w", thresholds=[0.3, 0.7]),
                                  logits, hard, weights))
mc_logits = np.array([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [-2.0, 1.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
show("multiclass_weighted_vocab", head_eval(
    multi_class_head.MultiClassHead(3, weight_column="w", label_vocabulary=["a", "b", "c"]), mc_logits,
    np.array([[b"a"], [b"a"], [b"c"], [b"b"]]), weights))
show("regression_weighted", head_eval(regression_head.RegressionHead(weight_column="w"), logits,
                                      np.array([[0.0], [1.0], [3.0], [-1.0]], np.float32), weights))
ml_hard = np.array([[1, 0, 1], [0, 1, 0]], np.int64)
show("multilabel_weighted", head_eval(multi_label_head.MultiLabelHead(3, weight_column="w", thresholds=[0.5]),
                                      ml_logits, ml_hard, np.array([[2.0], [0.5]], np.float32)))

# 9. DNN default optimizers: one step from the same init, string name vs an instance at rate 1
import tensorflow_estimator as tfe  # noqa: E402,F401
from tensorflow.keras.optimizers import legacy  # noqa: E402

show("keras_legacy_default_lr", {n: float(c().learning_rate) for n, c in
                                 [("Adagrad", legacy.Adagrad), ("Adam", legacy.Adam), ("Ftrl", legacy.Ftrl),
                                  ("RMSProp", legacy.RMSprop), ("SGD", legacy.SGD)]})
X = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], np.float32)
Y = np.array([[1.0], [2.0], [3.0]], np.float32)


def bias_step(optimizer):
    est = tf.estimator.DNNRegressor([3], [fc.numeric_column("x", shape=2)], optimizer=optimizer,
                                    model_dir=tempfile.mkdtemp(),
                                    config=tf.estimator.RunConfig(tf_random_seed=1))
    est.train(lambda: tf.data.Dataset.from_tensors(({"x": X}, Y)), steps=1)
    return float(est.get_variable_value("dnn/logits/bias")[0])


for name, unit in [("SGD", legacy.SGD(1.0)), ("Adagrad", legacy.Adagrad(1.0))]:
    by_name, at_one = bias_step(name), bias_step(unit)
    show(f"dnn_default_{name}_effective_lr", round(by_name / at_one, 6))


# canned LinearRegressor: two steps of its default FTRL (rate 0.2) from zeros
def linear_two_steps(**kw):
    cols = [fc.numeric_column("x", shape=2), fc.categorical_column_with_vocabulary_list("c", ["a", "b"])]
    est = tf.estimator.LinearRegressor(cols, model_dir=tempfile.mkdtemp(), **kw)
    feats = {"x": X, "c": np.array([["a"], ["b"], ["zzz"]])}
    est.train(lambda: tf.data.Dataset.from_tensors((feats, Y)).repeat(), steps=2)
    names = [n for n in est.get_variable_names() if n.startswith("linear/linear_model/") and "Ftrl" not in n]
    return {n: np.asarray(est.get_variable_value(n)).ravel().round(7).tolist() for n in sorted(names)}


show("linear_ftrl_two_steps", linear_two_steps())
show("linear_ftrl_two_steps_mean_combiner", linear_two_steps(sparse_combiner="mean"))
