"""The pure training core: the state, its initialisation and the train step, free of any Estimator.

``TrainState`` is the pytree a checkpoint holds (as a dict, so the checkpoint
format is unchanged). ``make_train_step`` / ``make_train_loop`` turn an
``nn.Transformed`` model_fn and an optimizer into ``(state, acc, features,
labels) -> (state, acc, loss)``: one step, or a ``lax.scan`` over a stacked
group of batches. ``acc`` accumulates the loss on the device and the first
step whose loss was not finite, read back only when a summary or checkpoint
needs it. ``spec_statics`` is the one place the non-array parts of the
model_fn's EstimatorSpec (the optimizer, the metric objects) come from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import distribute, nn
from estimator.spec import ModeKeys

WarmStart = Callable[[Any, Any], tuple[Any, Any]]
TrainStep = Callable[[Any, Any, Any, Any], tuple[Any, Any, Any]]


class TrainState(NamedTuple):
    """Everything that changes while training: the global step, variables, optimizer slots, the rng."""

    step: Any
    params: Any
    model_state: Any
    opt_state: Any
    rng: Any

    def to_tree(self) -> dict[str, Any]:
        """The checkpointed form (a dict keyed by field name)."""
        return self._asdict()

    @classmethod
    def from_tree(cls, tree: Mapping[str, Any]) -> TrainState:
        """The state of a checkpointed dict."""
        return cls(**tree)


class SpecStatics(NamedTuple):
    """The non-array parts of a model_fn's EstimatorSpec in one mode."""

    optimizer: optax.GradientTransformation | None
    metrics: dict[str, Any]


def spec_statics(transformed: nn.Transformed, mode: str, features: Any, labels: Any,
                 eager: bool = False) -> SpecStatics:
    """The optimizer and metric objects ``transformed``'s model_fn returns for inputs shaped like these.

    Traces the model_fn abstractly (``jax.eval_shape``: nothing is computed), or
    runs it once with ``eager`` (``RunConfig.debug``: a model_fn may read values).
    """
    specs = []

    def trace(key):
        params, model_state = transformed.init(key, features, labels)
        spec, _ = transformed.apply(params, model_state, key if mode == ModeKeys.TRAIN else None, features, labels)
        specs.append(spec)
        return spec.loss

    key = jax.random.PRNGKey(0)
    trace(key) if eager else jax.eval_shape(trace, key)
    spec = specs[-1]
    return SpecStatics(spec.optimizer, {k: op.metric for k, op in (spec.eval_metrics or {}).items()})


def with_accumulation(optimizer: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
    """``optimizer`` applying the mean gradient of every ``steps`` steps (``steps`` 1: unchanged)."""
    return optax.MultiSteps(optimizer, every_k_schedule=steps) if steps > 1 else optimizer


def fresh_variables(transformed: nn.Transformed, seed: int, features: Any, labels: Any,
                    warm_start: WarmStart | None = None, jit: bool = True) -> tuple[Any, Any, Any]:
    """``(params, model_state, train rng)`` initialised from ``seed``, then warm-started."""
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
    init = jax.jit(transformed.init) if jit else transformed.init
    params, model_state = init(init_rng, features, labels)
    if warm_start is not None:
        params, model_state = warm_start(params, model_state)
    return params, model_state, train_rng


def init_state(transformed: nn.Transformed, optimizer: optax.GradientTransformation, seed: int, features: Any,
               labels: Any, warm_start: WarmStart | None = None, jit: bool = True) -> TrainState:
    """A fresh ``TrainState`` at step 0 (host arrays: the caller places them)."""
    params, model_state, rng = fresh_variables(transformed, seed, features, labels, warm_start, jit)
    return TrainState(jnp.zeros((), jnp.int32), params, model_state, optimizer.init(params), rng)


def abstract_state(transformed: nn.Transformed, optimizer: optax.GradientTransformation, seed: int,
                   features: Any, labels: Any) -> TrainState:
    """Shapes and dtypes of ``init_state`` (nothing computed), to restore a checkpoint into."""
    return jax.eval_shape(lambda: init_state(transformed, optimizer, seed, features, labels, jit=False))


def _one_step(transformed: nn.Transformed, optimizer: optax.GradientTransformation) -> Callable:
    def one_step(state: TrainState, features: Any, labels: Any) -> tuple[TrainState, Any]:
        step_rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            spec, new_model_state = transformed.apply(params, state.model_state, step_rng, features, labels)
            return spec.loss, new_model_state

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, model_state, opt_state, state.rng), loss

    return one_step


def _accumulate(acc: dict[str, Any], loss: Any, step: Any) -> dict[str, Any]:
    bad = jnp.logical_and(acc["nan_step"] < 0, jnp.logical_not(jnp.isfinite(loss)))
    return {"loss_sum": acc["loss_sum"] + loss, "count": acc["count"] + 1,
            "nan_step": jnp.where(bad, step, acc["nan_step"])}


def make_train_step(transformed: nn.Transformed, optimizer: optax.GradientTransformation) -> TrainStep:
    """``(state, acc, features, labels) -> (state, acc, loss)`` for one batch (pure; jit it)."""
    one_step = _one_step(transformed, optimizer)

    def train_step(state, acc, features, labels):
        state, loss = one_step(state, features, labels)
        return state, _accumulate(acc, loss, state.step), loss

    return train_step


def make_train_loop(transformed: nn.Transformed, optimizer: optax.GradientTransformation) -> TrainStep:
    """Like ``make_train_step`` over a stacked group of batches (``lax.scan``); the loss is the group's mean."""
    one_step = _one_step(transformed, optimizer)

    def train_loop(state, acc, features, labels):
        def body(carry, batch):
            state, acc, total = carry
            state, loss = one_step(state, *batch)
            return (state, _accumulate(acc, loss, state.step), total + loss), None

        zero = jnp.zeros((), jnp.float32)
        (state, acc, total), _ = jax.lax.scan(body, (state, acc, zero), (features, labels))
        return state, acc, total / jax.tree.leaves(features)[0].shape[0]

    return train_loop


def zero_accumulator(mesh: Any) -> dict[str, Any]:
    """An empty loss accumulator, replicated on ``mesh`` like the step's outputs.

    An uncommitted input would give the jitted step a second signature, compiled once more per train().
    """
    acc = {"loss_sum": np.zeros((), np.float32), "count": np.zeros((), np.int32),
           "nan_step": np.full((), -1, np.int32)}
    return jax.device_put(acc, distribute.replicated(mesh))
