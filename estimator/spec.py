"""EstimatorSpec and ModeKeys: what a ``model_fn`` returns, validated per mode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax


class ModeKeys:
    """The three modes a ``model_fn`` is traced in (tf.estimator's values)."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"

    ALL = (TRAIN, EVAL, PREDICT)


class EstimatorSpecError(ValueError):
    """A ``model_fn`` returned an EstimatorSpec that cannot run in its mode."""


class EstimatorSpec(NamedTuple):
    """What a ``model_fn`` returns for one mode.

    Attributes:
      mode: one of ``ModeKeys``.
      predictions: an array or dict of arrays (batch-major); required in PREDICT.
      loss: a scalar array; required in TRAIN and EVAL.
      optimizer: an ``optax.GradientTransformation`` applied to the gradients
        of ``loss``; required in TRAIN (it plays tf.estimator's ``train_op``).
      eval_metrics: dict of name -> ``estimator.metrics.MetricOp`` (the metric
        and this batch's state); merged over all batches by ``evaluate``.

    Exports serve ``predictions`` (tf's ``export_outputs`` has no counterpart).
    """

    mode: str
    predictions: Any = None
    loss: Any = None
    optimizer: optax.GradientTransformation | None = None
    eval_metrics: Mapping[str, Any] | None = None

    def validate(self) -> EstimatorSpec:
        """Checks the spec has what its mode needs; returns it, or raises EstimatorSpecError."""
        if self.mode not in ModeKeys.ALL:
            raise EstimatorSpecError(
                f"EstimatorSpec.mode is {self.mode!r}; expected one of {ModeKeys.ALL}."
            )
        where = f"EstimatorSpec for mode {self.mode!r}"
        if self.mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
            if self.loss is None:
                raise EstimatorSpecError(f"{where} has no loss; model_fn must return loss=... in {self.mode}.")
            shape = jnp.shape(self.loss)
            if shape != ():
                raise EstimatorSpecError(
                    f"{where}: loss must be a scalar, got shape {shape}; reduce it, e.g. jnp.mean(per_example_loss)."
                )
        if self.mode == ModeKeys.TRAIN:
            if self.optimizer is None:
                raise EstimatorSpecError(
                    f"{where} has no optimizer; pass optimizer=optax.adam(1e-3) (or any optax transformation)."
                )
            if not isinstance(self.optimizer, optax.GradientTransformation):
                raise EstimatorSpecError(
                    f"{where}: optimizer must be an optax.GradientTransformation, got {type(self.optimizer).__name__}."
                )
        if self.mode == ModeKeys.PREDICT and self.predictions is None:
            raise EstimatorSpecError(f"{where} has no predictions; model_fn must return predictions=... in PREDICT.")
        if self.eval_metrics is not None:
            from estimator.metrics import MetricOp

            for name, op in self.eval_metrics.items():
                if not isinstance(op, MetricOp):
                    raise EstimatorSpecError(
                        f"{where}: eval_metrics[{name!r}] is a {type(op).__name__}; expected a MetricOp, "
                        "e.g. metrics.Mean()(values) or metrics.RootMeanSquaredError()(labels, predictions)."
                    )
        return self
