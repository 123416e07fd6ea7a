"""Feature columns with tf.estimator's semantics, split into a host side and a device side.

A feature column says how a raw input feature becomes model input. Each column
has two halves:

* the **host side** (numpy, vectorised, run on every batch in the input thread
  by ``transform_features``): strings to ids by vocabulary, hashing (TensorFlow's
  FarmHash ``Fingerprint64``, so ids equal TensorFlow's), identity range checks
  and crossing. It replaces string features by int32 id arrays named
  ``"<column name>__ids"`` (int64 for columns of ``2**31`` buckets or more, which
  the 32-bit device side refuses) and passes numeric features through;
* the **device side** (jnp, inside the jitted ``model_fn``): bucketizing numbers,
  one-hot / indicator counts, embedding lookups with their combiners, and the
  concatenation into the input layer (``input_layer``) or the weighted sum of a
  linear model (``linear_model``).

Multivalent (variable-length) categorical inputs are dense 2-D arrays
``[batch, n]`` padded with a missing marker: ``""`` for strings and ``-1`` for
integers (TensorFlow's ignore values); a missing entry contributes nothing.
Sparse tensors are not used.

Columns serialize to JSON (``columns_to_config`` / ``columns_from_config``) so an
exported model can run the host side with library code only; vocabulary files are
read once and embedded. ``numeric_column``'s ``normalizer_fn`` is a Python
callable that runs on the device side (it becomes part of the exported
computation) and is therefore not part of the JSON.

Layout: ``base`` (column classes, constants, helpers), ``numeric`` (numeric and
bucketized), ``categorical`` (vocabulary, hash, identity, weighted), ``crossed``,
``dense`` (indicator, embedding, ``input_layer``, ``linear_model``),
``host_transform`` and ``config`` (JSON); every public name is importable from
``estimator.feature_column`` itself.

Deviation from TensorFlow worth knowing: ``crossed_column`` inputs given by raw key
are dense arrays here, so, as in TensorFlow's ``SparseCross`` with dense inputs,
the crossed categorical columns come first and raw keys after them; ``""``/``-1``
entries of raw keys are treated as missing (TensorFlow would hash them).
"""

from estimator.feature_column.base import (
    COMBINERS,
    DEFAULT_HASH_KEY,
    IDS_SUFFIX,
    MAX_DEVICE_BUCKETS,
    MISSING_ID,
    CategoricalColumn,
    DenseColumn,
    FeatureColumn,
    FeatureColumnError,
)
from estimator.feature_column.base import (
    _check_combiner as _check_combiner,  # the canned estimators' argument check
)
from estimator.feature_column.categorical import (
    HashedCategoricalColumn,
    IdentityCategoricalColumn,
    VocabularyCategoricalColumn,
    WeightedCategoricalColumn,
    categorical_column_with_hash_bucket,
    categorical_column_with_identity,
    categorical_column_with_vocabulary_file,
    categorical_column_with_vocabulary_list,
    weighted_categorical_column,
)
from estimator.feature_column.config import (
    columns_from_config,
    columns_to_config,
    preprocessing_config,
)
from estimator.feature_column.crossed import CrossedColumn, crossed_column
from estimator.feature_column.dense import (
    EmbeddingColumn,
    IndicatorColumn,
    embedding_column,
    indicator_column,
    input_layer,
    linear_model,
)
from estimator.feature_column.host_transform import (
    MAX_CROSS_TABLE,
    HostTransform,
    host_transform_from_json,
    transform_features,
)
from estimator.feature_column.numeric import (
    BucketizedColumn,
    NumericColumn,
    bucketized_column,
    numeric_column,
)

__all__ = [
    "BucketizedColumn", "CategoricalColumn", "CrossedColumn", "DenseColumn", "EmbeddingColumn",
    "FeatureColumn", "FeatureColumnError", "HashedCategoricalColumn", "HostTransform", "IdentityCategoricalColumn",
    "IndicatorColumn", "NumericColumn", "VocabularyCategoricalColumn", "WeightedCategoricalColumn",
    "bucketized_column", "categorical_column_with_hash_bucket",
    "categorical_column_with_identity", "categorical_column_with_vocabulary_file",
    "categorical_column_with_vocabulary_list", "columns_from_config", "columns_to_config",
    "crossed_column", "embedding_column", "host_transform_from_json", "indicator_column", "input_layer",
    "linear_model", "numeric_column", "preprocessing_config", "transform_features", "weighted_categorical_column",
    # constants (public since the single-module layout)
    "COMBINERS", "DEFAULT_HASH_KEY", "IDS_SUFFIX", "MAX_CROSS_TABLE", "MAX_DEVICE_BUCKETS", "MISSING_ID",
]
