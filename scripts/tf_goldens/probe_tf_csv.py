"""Prints the column types TensorFlow 2.15's make_csv_dataset infers (README's migration table).

Run as probe_tf_parity.py: /tmp/tfvenv/bin/python scripts/tf_goldens/probe_tf_csv.py
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

CASES = {
    "empty_then_int": "a,b\n,1\n7,2\n",
    "beyond_float32": "a,b\n1e39,1\n2.5,2\n",
    "bool_words": "a,b\ntrue,1\nfalse,2\n",
    "nan_inf": "a,b\nnan,1\ninf,2\n",
    "int_beyond_int32": "a,b\n5000000000,1\n3,2\n",
}
tmp = tempfile.mkdtemp()
print("tf", tf.__version__)
for name, text in CASES.items():
    path = os.path.join(tmp, name + ".csv")
    with open(path, "w") as f:
        f.write(text)
    ds = tf.data.experimental.make_csv_dataset(path, batch_size=2, shuffle=False, num_epochs=1)
    batch = next(iter(ds))
    print(f"csv_{name} = {({k: (v.dtype.name, v.numpy().tolist()) for k, v in batch.items()})!r}")
path = os.path.join(tmp, "select.csv")
with open(path, "w") as f:
    f.write("a,b,c\nx,1,2.5\ny,3,4.5\n")
ds = tf.data.experimental.make_csv_dataset(path, batch_size=2, shuffle=False, num_epochs=1,
                                           select_columns=["c", "a"])
try:
    batch = next(iter(ds))
    print(f"csv_unsorted_select = {({k: (v.dtype.name, v.numpy().tolist()) for k, v in batch.items()})!r}")
except Exception as e:  # noqa: BLE001
    print(f"csv_unsorted_select = {type(e).__name__}: {str(e)[:200]}")
