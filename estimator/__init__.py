"""jax-estimator: Estimator-style training, evaluation, export and serving on JAX."""

from estimator import canned, export, feature_column, metrics, nn
from estimator.checkpoint import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointWriteError,
)
from estimator.distribute import InputContext
from estimator.estimator import Estimator, EstimatorError, ModelFnError, TrainingInterruptedError
from estimator.export import ExportError, ServingInput
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
from estimator.model_dir_lock import ModelDirLockError
from estimator.run_config import RunConfig, RunConfigError
from estimator.spec import EstimatorSpec, EstimatorSpecError, ModeKeys
from estimator.train_core import TrainState
from estimator.training import EvalSpec, TrainSpec, train_and_evaluate
from estimator.warm_start import WarmStartError, WarmStartSettings

__all__ = [
    "BestExporter",
    "CheckpointCorruptError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "EarlyStoppingHook",
    "Estimator",
    "EstimatorError",
    "EstimatorSpec",
    "EstimatorSpecError",
    "EvalSpec",
    "ExportError",
    "Exporter",
    "ExporterError",
    "FinalExporter",
    "Hook",
    "InputContext",
    "LatestExporter",
    "LoggingHook",
    "ModeKeys",
    "ModelDirLockError",
    "ModelFnError",
    "NanLossDuringTrainingError",
    "NanLossHook",
    "ProfilerHook",
    "ProgressHook",
    "RunConfig",
    "RunConfigError",
    "RunContext",
    "RunValues",
    "ServingInput",
    "StopAtStepHook",
    "TrainSpec",
    "TrainState",
    "TrainingInterruptedError",
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
