"""Canned estimators (tf.estimator's): heads, linear, DNN, wide-and-deep and baseline models."""

from estimator.canned.baseline import BaselineClassifier, BaselineEstimator, BaselineRegressor
from estimator.canned.dnn import DNNClassifier, DNNEstimator, DNNRegressor
from estimator.canned.dnn_linear_combined import (
    DNNLinearCombinedClassifier,
    DNNLinearCombinedEstimator,
    DNNLinearCombinedRegressor,
)
from estimator.canned.head import (
    BinaryClassHead,
    Head,
    HeadError,
    LossReduction,
    MultiClassHead,
    MultiLabelHead,
    RegressionHead,
)
from estimator.canned.linear import LinearClassifier, LinearEstimator, LinearRegressor
from estimator.canned.optimizers import OptimizerError, ftrl, get_optimizer
from estimator.keys import MetricKeys, PredictionKeys

__all__ = [
    "BaselineClassifier", "BaselineEstimator", "BaselineRegressor", "BinaryClassHead", "DNNClassifier",
    "DNNEstimator", "DNNLinearCombinedClassifier", "DNNLinearCombinedEstimator", "DNNLinearCombinedRegressor",
    "DNNRegressor", "Head", "HeadError", "LinearClassifier", "LinearEstimator", "LinearRegressor",
    "LossReduction", "MetricKeys", "MultiClassHead", "MultiLabelHead", "OptimizerError", "PredictionKeys",
    "RegressionHead", "ftrl",
    "get_optimizer",
]
