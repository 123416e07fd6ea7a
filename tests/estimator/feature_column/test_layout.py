"""The feature_column package keeps the single module's import paths."""

from __future__ import annotations

import importlib

import pytest

from estimator import feature_column as fc

# every public name of the former single module estimator/feature_column.py (apply_preprocessing
# was removed as dead code: host_transform_from_json is the one way to run an export's host side)
_FORMER_PUBLIC = [
    "BucketizedColumn", "CategoricalColumn", "CrossedColumn", "DenseColumn", "EmbeddingColumn",
    "FeatureColumn", "FeatureColumnError", "HashedCategoricalColumn", "HostTransform",
    "IdentityCategoricalColumn", "IndicatorColumn", "NumericColumn", "VocabularyCategoricalColumn",
    "WeightedCategoricalColumn", "bucketized_column", "categorical_column_with_hash_bucket",
    "categorical_column_with_identity", "categorical_column_with_vocabulary_file",
    "categorical_column_with_vocabulary_list", "columns_from_config", "columns_to_config",
    "crossed_column", "embedding_column", "host_transform_from_json", "indicator_column",
    "input_layer", "linear_model", "numeric_column", "preprocessing_config", "transform_features",
    "weighted_categorical_column", "IDS_SUFFIX", "MISSING_ID", "MAX_DEVICE_BUCKETS",
    "DEFAULT_HASH_KEY", "COMBINERS", "MAX_CROSS_TABLE",
]


@pytest.mark.parametrize("name", _FORMER_PUBLIC)
def test_former_public_name_is_importable_from_the_package(name):
    assert name in fc.__all__
    module = importlib.import_module("estimator.feature_column")
    assert getattr(module, name) is getattr(fc, name)


def test_each_public_name_is_defined_in_one_submodule_of_the_package():
    for name in fc.__all__:
        value = getattr(fc, name)
        home = getattr(value, "__module__", None)
        if home is not None and callable(value):
            assert home.startswith("estimator.feature_column."), (name, home)
            assert getattr(importlib.import_module(home), name) is value
