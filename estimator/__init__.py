"""jax-estimator: Estimator-style training, evaluation, export and serving on JAX.

The canned estimators and heads are also importable from here, as ``tf.estimator.DNNRegressor`` is.
"""

from estimator import canned, export, feature_column, metrics, nn
from estimator.canned import (
    BaselineClassifier,
    BaselineEstimator,
    BaselineRegressor,
    BinaryClassHead,
    DNNClassifier,
    DNNEstimator,
    DNNLinearCombinedClassifier,
    DNNLinearCombinedEstimator,
    DNNLinearCombinedRegressor,
    DNNRegressor,
    Head,
    HeadError,
    LinearClassifier,
    LinearEstimator,
    LinearRegressor,
    MultiClassHead,
    MultiLabelHead,
    RegressionHead,
)
from estimator.checkpoint import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    UnsupportedCheckpointLocationError,
)
from estimator.distribute import InputContext
from estimator.estimator import Estimator, EstimatorError, ModelFnError, TrainingInterruptedError
from estimator.export import ExportError, Servable, ServingInput
from estimator.exporter import BestExporter, Exporter, ExporterError, FinalExporter, LatestExporter
from estimator.hooks import (
    EarlyStoppingHook,
    Hook,
    LoggingHook,
    NanLossDuringTrainingError,
    NanLossHook,
    ProfilerHook,
    ProgressHook,
    RunContext,
    RunValues,
    StopAtStepHook,
    stop_if_no_decrease_hook,
    stop_if_no_increase_hook,
)
from estimator.keys import MetricKeys, PredictionKeys
from estimator.model_dir_lock import ModelDirLockError
from estimator.preprocessing import FeatureColumnPreprocessing, NoPreprocessing, Preprocessing
from estimator.run_config import RunConfig, RunConfigError
from estimator.spec import EstimatorSpec, EstimatorSpecError, ModeKeys
from estimator.train_core import TrainState
from estimator.training import EvalSpec, TrainSpec, train_and_evaluate
from estimator.warm_start import WarmStartError, WarmStartSettings

__all__ = [
    "BaselineClassifier",
    "BaselineEstimator",
    "BaselineRegressor",
    "BestExporter",
    "BinaryClassHead",
    "CheckpointCorruptError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "DNNClassifier",
    "DNNEstimator",
    "DNNLinearCombinedClassifier",
    "DNNLinearCombinedEstimator",
    "DNNLinearCombinedRegressor",
    "DNNRegressor",
    "EarlyStoppingHook",
    "Estimator",
    "EstimatorError",
    "EstimatorSpec",
    "EstimatorSpecError",
    "EvalSpec",
    "ExportError",
    "Exporter",
    "ExporterError",
    "FeatureColumnPreprocessing",
    "FinalExporter",
    "Head",
    "HeadError",
    "Hook",
    "InputContext",
    "LatestExporter",
    "LinearClassifier",
    "LinearEstimator",
    "LinearRegressor",
    "LoggingHook",
    "MetricKeys",
    "ModeKeys",
    "ModelDirLockError",
    "ModelFnError",
    "MultiClassHead",
    "MultiLabelHead",
    "NanLossDuringTrainingError",
    "NanLossHook",
    "NoPreprocessing",
    "PredictionKeys",
    "Preprocessing",
    "ProfilerHook",
    "ProgressHook",
    "RegressionHead",
    "RunConfig",
    "RunConfigError",
    "RunContext",
    "RunValues",
    "Servable",
    "ServingInput",
    "StopAtStepHook",
    "TrainSpec",
    "TrainState",
    "TrainingInterruptedError",
    "UnsupportedCheckpointLocationError",
    "WarmStartError",
    "WarmStartSettings",
    "canned",
    "export",
    "feature_column",
    "metrics",
    "nn",
    "stop_if_no_decrease_hook",
    "stop_if_no_increase_hook",
    "train_and_evaluate",
]
