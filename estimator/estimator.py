"""Estimator: train / evaluate / predict / export loops around a ``model_fn``.

The training state is one pytree ``{step, params, model_state, opt_state, rng}``;
the train step is one jitted function over it (donated), optionally running
``steps_per_loop`` steps per call with ``lax.scan``. Checkpoints hold that state
plus the input iterator's position, so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import _eval_results, distribute, nn
from estimator._prefetch import Prefetcher
from estimator._restore_cache import RestoreCache
from estimator.checkpoint import (
    CheckpointCorruptError,
    CheckpointStore,
    checkpoint_dir,
    parse_checkpoint_path,
)
from estimator.eval_history import write_eval_result
from estimator.hooks import Hook, NanLossDuringTrainingError, NanLossHook, RunContext, RunValues
from estimator.model_dir_lock import ModelDirLock, ModelDirLockError
from estimator.run_config import RunConfig
from estimator.spec import EstimatorSpec, EstimatorSpecError, ModeKeys
from estimator.summary import SummaryWriter, learning_rate_of
from estimator.warm_start import warm_start_values

log = logging.getLogger("estimator")

RESERVED_EVAL_KEYS = ("loss", "global_step")


class EstimatorError(ValueError):
    """The Estimator was called with arguments that cannot work."""


class ModelFnError(RuntimeError):
    """``model_fn`` raised while being traced; the message names the mode and the features."""


class TrainingInterruptedError(RuntimeError):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint; rerun to resume.

    ``exit_code`` is what a script should exit with: 128 + the signal number (143
    for SIGTERM, 130 for Ctrl-C), the status of a process the signal killed, so a
    scheduler restarts a preempted job as before (exit 0 would mark it finished).
    """

    def __init__(self, signum: int, step: int, path: str | None):
        self.signum, self.step, self.path = signum, step, path
        self.exit_code = 128 + signum
        saved = f"saved the checkpoint {path}" if path else "no checkpoint was saved"
        super().__init__(f"Training stopped by {signal.Signals(signum).name} at step {step}; {saved}. "
                         "Run the same command again to resume.")


def _accepted_args(fn: Callable) -> set[str]:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {"params", "mode", "config", "input_context", "labels"}
    return set(params)


def _describe(tree: Any) -> str:
    if tree is None:
        return "None"
    if isinstance(tree, Mapping):
        return ", ".join(f"{k}: {getattr(v, 'dtype', type(v).__name__)}{list(np.shape(v))}" for k, v in tree.items())
    return f"{getattr(tree, 'dtype', type(tree).__name__)}{list(np.shape(tree))}"


class _TraceRecord:
    """Non-array parts of an EstimatorSpec seen while tracing (the optimizer, the metrics)."""

    def __init__(self):
        self.optimizer: optax.GradientTransformation | None = None
        self.metrics: dict[str, Any] = {}


class Estimator:
    """Trains, evaluates, predicts with and exports a model given by ``model_fn``.

    Args:
      model_fn: ``(features, labels, mode, params, config) -> EstimatorSpec``;
        any subset of those argument names. Subclasses may instead override
        the ``model_fn`` method.
      model_dir: checkpoints, event files and exports; a temporary folder if None.
      config: a ``RunConfig``.
      params: hyper-parameters passed to ``model_fn`` and ``input_fn``.
      warm_start_from: a checkpoint path, a ``WarmStartSettings``, or a mapping
        variable name -> array; applied whenever fresh parameters are initialised.
    """

    def __init__(
        self,
        model_fn: Callable[..., EstimatorSpec] | None = None,
        model_dir: str | None = None,
        config: RunConfig | None = None,
        params: Mapping[str, Any] | None = None,
        warm_start_from: Any = None,
    ):
        if model_fn is None:
            if type(self).model_fn is Estimator.model_fn:
                raise EstimatorError("Estimator needs a model_fn: pass model_fn=... or subclass and override model_fn.")
            model_fn = self.model_fn
        if not callable(model_fn):
            raise EstimatorError(f"model_fn must be callable, got {type(model_fn).__name__}.")
        config = config or RunConfig()
        distribute.initialize(config)  # multi-process start-up, before any device is touched
        if model_dir and config.model_dir and os.path.abspath(model_dir) != os.path.abspath(config.model_dir):
            raise EstimatorError(
                f"model_dir={model_dir!r} differs from RunConfig.model_dir={config.model_dir!r}; give one of them."
            )
        model_dir = model_dir or config.model_dir
        if not model_dir:
            model_dir = tempfile.mkdtemp(prefix="estimator_")
            log.warning("Using temporary folder as model directory: %s", model_dir)
        if os.path.exists(model_dir) and not os.path.isdir(model_dir):
            raise EstimatorError(f"model_dir {model_dir!r} is a file, not a directory; give a directory path.")
        self._model_dir = os.path.abspath(model_dir)
        self._config = config.replace(model_dir=self._model_dir)
        self._params = dict(params or {})
        self._model_fn = model_fn
        self._model_fn_args = _accepted_args(model_fn)
        self._warm_start_from = warm_start_from
        self._mesh = distribute.data_mesh()
        self._local_mesh = distribute.local_mesh()  # evaluate / predict: every process on its own share
        self._records = {mode: _TraceRecord() for mode in ModeKeys.ALL}
        self._cache: dict[Any, Any] = {}
        self._store: CheckpointStore | None = None
        self._readers: dict[str, CheckpointStore] = {}
        self._restored = RestoreCache()  # the checkpoint read last, reused while it is read again
        self._lock = ModelDirLock(self._model_dir, config.model_dir_lock_timeout_secs, config.break_model_dir_lock)

    # ------------------------------------------------------------------ properties
    def model_fn(self, features: Any, labels: Any, mode: str, params: Mapping[str, Any]) -> EstimatorSpec:
        """Override in a subclass to define the model (instead of passing ``model_fn``)."""
        raise NotImplementedError

    @property
    def model_dir(self) -> str:
        """Where checkpoints and event files go."""
        return self._model_dir

    @property
    def config(self) -> RunConfig:
        """The RunConfig (with model_dir filled in)."""
        return self._config

    @property
    def params(self) -> dict[str, Any]:
        """A copy of the hyper-parameters given to ``model_fn``."""
        return dict(self._params)

    def eval_dir(self, name: str | None = None) -> str:
        """The event-file directory of evaluation ``name`` (``eval`` or ``eval_<name>``)."""
        return os.path.join(self._model_dir, f"eval_{name}" if name else "eval")

    # ------------------------------------------------------------------ hooks for subclasses
    def _host_preprocess(self, features: Any) -> Any:
        """Host-side numpy transform of every batch before it reaches the devices (identity here)."""
        return features

    def _host_preprocess_labels(self, labels: Any) -> Any:
        """Host-side numpy transform of every batch's labels (identity here; e.g. label vocabularies)."""
        return labels

    def _export_preprocessing(self) -> dict[str, Any]:
        """JSON description of ``_host_preprocess`` for exports (nothing here)."""
        return {}

    # ------------------------------------------------------------------ model_fn plumbing
    def _call_model_fn(self, features: Any, labels: Any, mode: str) -> EstimatorSpec:
        kwargs = {"features": features}
        optional = {"labels": labels, "mode": mode, "params": self.params, "config": self._config}
        kwargs.update({k: v for k, v in optional.items() if k in self._model_fn_args})
        try:
            spec = self._model_fn(**kwargs)
        except (EstimatorSpecError, ModelFnError, nn.NNError):
            raise
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise ModelFnError(
                f"model_fn failed in mode {mode!r} with features {{{_describe(features)}}} and labels "
                f"{_describe(labels)}: {error}"
            ) from error
        if not isinstance(spec, EstimatorSpec):
            raise EstimatorSpecError(f"model_fn must return an EstimatorSpec in mode {mode!r}, got {type(spec).__name__}.")
        if spec.mode != mode:
            raise EstimatorSpecError(f"model_fn was called in mode {mode!r} but returned an EstimatorSpec for {spec.mode!r}.")
        spec.validate()
        record = self._records[mode]
        if spec.optimizer is not None:
            record.optimizer = spec.optimizer
        if mode == ModeKeys.EVAL:
            metrics = dict(spec.eval_metrics or {})
            clash = [k for k in metrics if k in RESERVED_EVAL_KEYS]
            if clash:
                raise EstimatorSpecError(f"eval_metrics may not be named {clash}: the Estimator reports those itself.")
            record.metrics = {k: op.metric for k, op in metrics.items()}
        return spec

    def _transformed(self, mode: str) -> nn.Transformed:
        key = ("transformed", mode)
        if key not in self._cache:
            dtype = self._config.compute_dtype

            def fn(features, labels):
                if dtype:
                    with nn.mixed_precision(jnp.dtype(dtype)):
                        return self._call_model_fn(features, labels, mode)
                return self._call_model_fn(features, labels, mode)

            self._cache[key] = nn.transform(fn)
        return self._cache[key]

    def _jit(self, fn: Callable, **kwargs: Any) -> Callable:
        return fn if self._config.debug else jax.jit(fn, **kwargs)

    def _optimizer(self) -> optax.GradientTransformation:
        optimizer = self._records[ModeKeys.TRAIN].optimizer
        k = self._config.gradient_accumulation_steps
        return optax.MultiSteps(optimizer, every_k_schedule=k) if k > 1 else optimizer

    # ------------------------------------------------------------------ input
    def _input_iterator(self, input_fn: Callable, mode: str) -> Iterator:
        args = _accepted_args(input_fn)
        available = {
            "params": self.params,
            "mode": mode,
            "config": self._config,
            "input_context": distribute.InputContext.current(),
        }
        result = input_fn(**{k: v for k, v in available.items() if k in args})
        if isinstance(result, Mapping) or (
            isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping)
        ):
            return iter([result])
        if not isinstance(result, Iterable):
            raise EstimatorError(
                f"input_fn returned {type(result).__name__}; it must return an iterable of (features, labels) "
                "batches (e.g. an input_pipelines Dataset), or one (features, labels) batch."
            )
        return iter(result)

    def _prefetcher(self, iterator: Iterator, mode: str, group_size: int = 1,
                    max_batches: int | None = None, mesh: Any = None) -> Prefetcher:
        def features(batch):
            return _device_ready(self._host_preprocess(batch), mode, "feature")

        def labels(batch):
            return _device_ready(self._host_preprocess_labels(batch), mode, "label")

        return Prefetcher(iterator, self._mesh if mesh is None else mesh, features, labels, group_size,
                          max_batches, self._config.prefetch_batches)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoints(self) -> CheckpointStore:
        """The writer's store (training only: it creates directories and deletes old steps)."""
        if self._store is None:
            self._store = CheckpointStore(self._model_dir, self._config.keep_checkpoint_max)
        return self._store

    def _reader(self, root: str) -> CheckpointStore:
        """A read-only store of ``root`` (works on a read-only model_dir)."""
        if root not in self._readers:
            self._readers[root] = CheckpointStore(root, read_only=True)
        return self._readers[root]

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Holds the model_dir's training lock (process 0 takes it; re-entrant): one trainer per model_dir.

        ``train`` takes it itself; hold it around several calls (``train_and_evaluate``,
        writing a config beside the checkpoints) so no other trainer slips in between.
        Raises ``ModelDirLockError`` naming the holder.
        """
        chief = jax.process_index() == 0
        error = None
        if chief:
            try:
                self._lock.acquire()
            except ModelDirLockError as e:
                error = e
        agreed = distribute.agreed(error is None)  # every process fails together
        if error is not None:
            raise error
        if not agreed:
            raise ModelDirLockError(f"process 0 could not take the training lock of {self._model_dir}; see its log.")
        try:
            yield
        finally:
            if chief:
                self._lock.release()

    def latest_checkpoint(self) -> str | None:
        """Path of the newest complete checkpoint in model_dir, or None (damaged ones are skipped with a warning)."""
        if not os.path.isdir(checkpoint_dir(self._model_dir)):
            return None
        store = self._reader(self._model_dir)
        step = store.usable_latest_step()
        return None if step is None else store.step_path(step)

    def _read_checkpoint(self, checkpoint_path: str | None, keep: bool = True) -> tuple[dict[str, Any], str] | None:
        """``(state arrays, path)`` of the given or latest checkpoint, None when model_dir has none.

        ``keep``: keep it for the next read (predict, export, variables); evaluate only reuses a kept one.
        """
        root, step = parse_checkpoint_path(checkpoint_path or self._model_dir)
        if checkpoint_path is None and not os.path.isdir(checkpoint_dir(root)):
            return None
        store = self._reader(root)
        if step is not None:
            return self._restored.arrays(store, step, keep), store.step_path(step)
        found = self._restored.latest(store) or store.read_latest_arrays(
            restore=lambda latest: self._restored.arrays(store, latest, keep))
        if found is None:
            if checkpoint_path is None:
                return None
            raise EstimatorError(f"checkpoint_path={checkpoint_path!r} holds no complete checkpoint.")
        return found[1], store.step_path(found[0])

    def get_variable_names(self) -> list[str]:
        """Names of the variables in the latest checkpoint (parameters, model state, global_step)."""
        return sorted(self._variables())

    def get_variable_value(self, name: str) -> np.ndarray:
        """The value of variable ``name`` in the latest checkpoint."""
        variables = self._variables()
        if name not in variables:
            raise EstimatorError(f"No variable {name!r} in the latest checkpoint; variables: {sorted(variables)}.")
        return variables[name]

    def _variables(self) -> dict[str, np.ndarray]:
        found = self._read_checkpoint(None)
        if found is None:
            raise EstimatorError(f"No checkpoint in {self._model_dir}: train first, or point model_dir at one.")
        return self._restored.variables(found[0])

    # ------------------------------------------------------------------ fresh state
    def _fresh_variables(self, mode: str, features: Any, labels: Any) -> tuple[Any, Any, Any]:
        """Initialises (params, model_state) from the seed, applies warm start; returns them and the rng."""
        init_rng, train_rng = jax.random.split(jax.random.PRNGKey(self._config.random_seed))
        init = self._jit(self._transformed(mode).init)
        params, model_state = init(init_rng, features, labels)
        if self._warm_start_from is not None:
            params, model_state = self._apply_warm_start(params, model_state)
        return params, model_state, train_rng

    def _apply_warm_start(self, params: Any, model_state: Any) -> tuple[Any, Any]:
        flat_params, flat_state = nn.flatten_names(params), nn.flatten_names(model_state)
        values = warm_start_values(self._warm_start_from, {**flat_state, **flat_params})
        log.info("Warm-starting %d variables: %s", len(values), sorted(values))
        for name, value in values.items():
            target = flat_params if name in flat_params else flat_state
            target[name] = jnp.asarray(value, dtype=target[name].dtype)
        return nn.unflatten_names(flat_params), nn.unflatten_names(flat_state)

    def _state_shardings(self, abstract_state: Any) -> Any:
        return distribute.state_shardings(self._mesh, abstract_state, self._config.param_sharding)

    def _initial_train_state(self, features: Any, labels: Any) -> Any:
        params, model_state, rng = self._fresh_variables(ModeKeys.TRAIN, features, labels)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "model_state": model_state,
            "opt_state": self._optimizer().init(params),
            "rng": rng,
        }
        return jax.device_put(state, self._state_shardings(state))

    def _abstract_train_state(self, features: Any, labels: Any) -> Any:
        def make():
            init_rng, rng = jax.random.split(jax.random.PRNGKey(self._config.random_seed))
            params, model_state = self._transformed(ModeKeys.TRAIN).init(init_rng, features, labels)
            return {"step": jnp.zeros((), jnp.int32), "params": params, "model_state": model_state,
                    "opt_state": self._optimizer().init(params), "rng": rng}

        abstract = jax.eval_shape(make)
        shardings = self._state_shardings(abstract)
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)

    # ------------------------------------------------------------------ the train step
    def _train_functions(self) -> tuple[Callable, Callable]:
        if "train_step" in self._cache:
            return self._cache["train_step"], self._cache["train_loop"]
        transformed = self._transformed(ModeKeys.TRAIN)

        def one_step(state, features, labels):
            step_rng = jax.random.fold_in(state["rng"], state["step"])

            def loss_fn(params):
                spec, new_model_state = transformed.apply(params, state["model_state"], step_rng, features, labels)
                return spec.loss, new_model_state

            (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
            updates, opt_state = self._optimizer().update(grads, state["opt_state"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            new_state = {"step": state["step"] + 1, "params": params, "model_state": model_state,
                         "opt_state": opt_state, "rng": state["rng"]}
            return new_state, loss

        def accumulate(acc, loss, step):
            bad = jnp.logical_and(acc["nan_step"] < 0, jnp.logical_not(jnp.isfinite(loss)))
            return {"loss_sum": acc["loss_sum"] + loss, "count": acc["count"] + 1,
                    "nan_step": jnp.where(bad, step, acc["nan_step"])}

        def train_step(state, acc, features, labels):
            state, loss = one_step(state, features, labels)
            return state, accumulate(acc, loss, state["step"]), loss

        def train_loop(state, acc, features, labels):
            def body(carry, batch):
                state, acc, total = carry
                state, loss = one_step(state, *batch)
                return (state, accumulate(acc, loss, state["step"]), total + loss), None

            zero = jnp.zeros((), jnp.float32)
            (state, acc, total), _ = jax.lax.scan(body, (state, acc, zero), (features, labels))
            return state, acc, total / jax.tree.leaves(features)[0].shape[0]

        self._cache["train_step"] = self._jit(train_step, donate_argnums=(0, 1))
        self._cache["train_loop"] = self._jit(train_loop, donate_argnums=(0, 1))
        return self._cache["train_step"], self._cache["train_loop"]

    def _zero_accumulator(self) -> dict[str, Any]:
        # Placed like the step's outputs (replicated on the mesh): an uncommitted input
        # would give the jitted step a second signature, compiled once more per train().
        acc = {"loss_sum": np.zeros((), np.float32), "count": np.zeros((), np.int32),
               "nan_step": np.full((), -1, np.int32)}
        return jax.device_put(acc, distribute.replicated(self._mesh))

    # ------------------------------------------------------------------ train
    def train(
        self,
        input_fn: Callable,
        hooks: list[Hook] | None = None,
        steps: int | None = None,
        max_steps: int | None = None,
    ) -> Estimator:
        """Trains until ``steps`` more steps, ``max_steps`` in total, a hook's stop, or the input's end.

        Resumes from the latest checkpoint in model_dir, including the input
        position when the input iterator offers ``state()`` / ``restore()``; a
        damaged latest checkpoint is moved to ``corrupt_checkpoints/`` and the one
        before it used. Holds the model_dir's lock (``ModelDirLockError`` when
        another trainer has it). SIGTERM or SIGINT saves a checkpoint at the next
        step boundary and raises ``TrainingInterruptedError``. Returns self.
        """
        if steps is not None and max_steps is not None:
            raise EstimatorError("train: give steps or max_steps, not both.")
        for name, value in (("steps", steps), ("max_steps", max_steps)):
            if value is not None and (not isinstance(value, int | np.integer) or value <= 0):
                raise EstimatorError(f"train: {name} must be a positive integer, got {value!r}.")
        self._restored.clear()  # training needs the memory of a checkpoint kept for predict/evaluate
        with self.writer_lock():
            store = self._checkpoints()
            while True:  # each pass past the first moved one damaged checkpoint aside
                saved_step = store.usable_latest_step(quarantine=True)
                start_step = saved_step or 0
                if max_steps is not None and start_step >= max_steps:
                    log.info("Skipping training since max_steps has already saved (step %d >= %d).",
                             start_step, max_steps)
                    return self
                last_step = max_steps if max_steps is not None else (start_step + steps if steps is not None else None)
                loop = _TrainLoop(self, input_fn, list(hooks or []), saved_step, last_step)
                try:
                    return loop.run()
                except CheckpointCorruptError as error:
                    if loop.started or saved_step is None:
                        raise
                    log.warning("%s Falling back to the checkpoint before it.", error)
                    store.quarantine(saved_step)

    # ------------------------------------------------------------------ evaluate
    def _eval_functions(self) -> tuple[Callable, Callable]:
        if "eval_step" not in self._cache:
            transformed = self._transformed(ModeKeys.EVAL)

            def eval_step(params, model_state, features, labels):
                spec, _ = transformed.apply(params, model_state, None, features, labels)
                states = {k: op.state for k, op in (spec.eval_metrics or {}).items()}
                return spec.loss, states

            def merge(a, b):
                metrics = self._records[ModeKeys.EVAL].metrics
                return {k: metrics[k].merge(a[k], b[k]) for k in a}

            self._cache["eval_step"] = self._jit(eval_step)
            self._cache["eval_merge"] = self._jit(merge)
        return self._cache["eval_step"], self._cache["eval_merge"]

    def _variables_for(self, mode: str, checkpoint_path: str | None, features: Any, labels: Any) -> tuple[Any, Any, int]:
        # on every process: orbax restores collectively; an evaluation's checkpoint is not kept (it runs
        # between training chunks, which need the memory)
        found = self._read_checkpoint(checkpoint_path, keep=mode == ModeKeys.PREDICT)
        if found is None and features is None:  # no checkpoint and no input here: nothing to run
            return None, None, 0
        if found is None:
            log.warning("Could not find trained model in model_dir: %s, running initialization to %s.",
                        self._model_dir, "evaluate" if mode == ModeKeys.EVAL else "predict")
            params, model_state, _ = self._fresh_variables(mode, features, labels)
            step = 0
        else:
            state, path = found
            log.info("Restoring parameters from %s", path)
            params, model_state, step = state["params"], state.get("model_state") or {}, int(state["step"])
        replicated = distribute.replicated(self._local_mesh)
        return jax.device_put(params, replicated), jax.device_put(model_state, replicated), step

    def evaluate(
        self,
        input_fn: Callable,
        steps: int | None = None,
        hooks: list[Hook] | None = None,
        checkpoint_path: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Evaluates the latest (or given) checkpoint over ``steps`` batches or the whole input.

        Returns every eval metric, ``loss`` (mean of the per-batch losses) and
        ``global_step``; writes them as events in ``eval_dir(name)``. With several
        processes, each evaluates its own input (``steps`` batches of it at most)
        and the metrics are those of all processes' rows (``_eval_results``).
        """
        if steps is not None and steps <= 0:
            raise EstimatorError(f"evaluate: steps must be positive or None, got {steps!r}.")
        prefetcher = self._prefetcher(self._input_iterator(input_fn, ModeKeys.EVAL), ModeKeys.EVAL,
                                      max_batches=steps, mesh=self._local_mesh)
        hooks = list(hooks or [])
        context = RunContext(self, ModeKeys.EVAL)
        try:
            first = next(prefetcher, None)
            if first is None and jax.process_count() == 1:
                raise EstimatorError("evaluate: input_fn produced no batches.")
            params, model_state, step = self._variables_for(ModeKeys.EVAL, checkpoint_path,
                                                            *(first[:2] if first else (None, None)))
            eval_step, merge = self._eval_functions()
            for hook in hooks:
                hook.begin(context, step)
            loss_sum, batches, merged = 0.0, 0, None
            group = first
            while group is not None and not context.stop_requested:
                for hook in hooks:
                    hook.before_run(context, step)
                loss, states = eval_step(params, model_state, group.features, group.labels)
                merged = states if merged is None else merge(merged, states)
                loss_sum, batches = loss_sum + loss, batches + 1
                for hook in hooks:
                    hook.after_run(context, RunValues(step, loss))
                group = next(prefetcher, None)
            for hook in hooks:
                hook.end(context, step)
        finally:
            prefetcher.close()
        results = _eval_results.combine(self._records[ModeKeys.EVAL].metrics, merge, merged, loss_sum, batches, step)
        if results is None:
            raise EstimatorError(f"evaluate: input_fn produced no batches on any of the {jax.process_count()} processes.")
        log.info("Saving dict for global step %d: %s", step,
                 ", ".join(f"{k} = {v:.6g}" for k, v in sorted(results.items())))
        self._write_eval_results(results, name)
        return results

    def _write_eval_results(self, results: dict[str, Any], name: str | None) -> None:
        """TensorBoard events and the results.jsonl line; a read-only model_dir only gets a warning."""
        if jax.process_index() != 0:
            return
        eval_dir = self.eval_dir(name)
        try:
            writer = SummaryWriter(eval_dir)
            writer.scalars({k: v for k, v in results.items() if k != "global_step"}, results["global_step"])
            writer.close()
            write_eval_result(eval_dir, results)
        except OSError as error:
            log.warning("Could not record the evaluation in %s (%s); the results are returned but not saved.",
                        eval_dir, error)

    # ------------------------------------------------------------------ predict
    def _predict_apply(self, params: Any, model_state: Any, features: Any) -> Any:
        """Pure PREDICT computation: ``(params, model_state, features) -> predictions``."""
        spec, _ = self._transformed(ModeKeys.PREDICT).apply(params, model_state, None, features, None)
        return spec.predictions

    def _restore_params(self, checkpoint_path: str | None = None) -> tuple[Any, Any, int]:
        """``(params, model_state, global_step)`` of the latest (or given) checkpoint."""
        found = self._read_checkpoint(checkpoint_path)
        if found is None:
            raise EstimatorError(f"No checkpoint in {self._model_dir} to export or serve; train first.")
        state, _ = found
        return state["params"], state.get("model_state") or {}, int(state["step"])

    def predict(
        self,
        input_fn: Callable,
        predict_keys: list[str] | None = None,
        hooks: list[Hook] | None = None,
        checkpoint_path: str | None = None,
        yield_single_examples: bool = True,
    ) -> Iterator[Any]:
        """Yields predictions per example (or per batch) for every batch of ``input_fn``.

        ``input_fn`` may yield features alone or ``(features, labels)``.
        """
        if "predict" not in self._cache:
            self._cache["predict"] = self._jit(self._predict_apply)
        predict_fn = self._cache["predict"]
        prefetcher = self._prefetcher(self._input_iterator(input_fn, ModeKeys.PREDICT), ModeKeys.PREDICT,
                                      mesh=self._local_mesh)
        hooks = list(hooks or [])
        context = RunContext(self, ModeKeys.PREDICT)
        try:
            first = next(prefetcher, None)
            params, model_state, step = self._variables_for(ModeKeys.PREDICT, checkpoint_path,
                                                            first.features if first else None, None)
            for hook in hooks:
                hook.begin(context, step)
            for group in itertools.chain([first] if first else [], prefetcher):
                predictions = jax.device_get(predict_fn(params, model_state, group.features))
                predictions = self._select_keys(predictions, predict_keys)
                if yield_single_examples:
                    yield from _examples(predictions)
                else:
                    yield predictions
                if context.stop_requested:
                    break
            for hook in hooks:
                hook.end(context, step)
        finally:
            prefetcher.close()

    @staticmethod
    def _select_keys(predictions: Any, predict_keys: list[str] | None) -> Any:
        if predict_keys is None:
            return predictions
        if not isinstance(predictions, Mapping):
            raise EstimatorError("predict_keys needs model_fn predictions to be a dict.")
        missing = [k for k in predict_keys if k not in predictions]
        if missing:
            raise EstimatorError(f"predict_keys {missing} are not predictions; available: {sorted(predictions)}.")
        return {k: predictions[k] for k in predict_keys}

    # ------------------------------------------------------------------ export
    def export_saved_model(
        self, export_dir_base: str, serving_input: Any, checkpoint_path: str | None = None, as_text: bool = False
    ) -> str:
        """Writes a servable export under ``export_dir_base/<timestamp>/`` and returns its path.

        ``as_text`` (tf.estimator's argument) also writes the computation's StableHLO text as
        ``computation.mlir`` for reading; the served artifact is the same either way.
        """
        from estimator import export

        return export.export_saved_model(
            self, export_dir_base, serving_input, checkpoint_path=checkpoint_path, as_text=as_text
        )


def _device_ready(tree: Any, mode: str, what: str) -> Any:
    """``tree`` unchanged; an ``EstimatorError`` naming the mode and the key of any string/object array.

    Such arrays cannot be device arrays (JAX's own error names neither).
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    bad = [(jax.tree_util.keystr(path) or "(the whole batch)", np.asarray(leaf).dtype) for path, leaf in leaves
           if np.asarray(leaf).dtype.kind in "USOMm"]
    if bad:
        names = ", ".join(f"{name} ({dtype})" for name, dtype in bad)
        raise EstimatorError(
            f"{mode} input: {what}(s) {names} hold strings or objects, which cannot be sent to the devices. "
            "Turn them into numbers on the host: a categorical feature column (vocabulary list or hash bucket) "
            "in a canned estimator, a map in the input pipeline, or drop them from the features.")
    return tree


def _examples(predictions: Any) -> Iterator[Any]:
    if isinstance(predictions, Mapping):
        n = len(next(iter(predictions.values())))
        for i in range(n):
            yield {k: v[i] for k, v in predictions.items()}
    else:
        yield from np.asarray(predictions)


class _TrainLoop:
    """One call of ``Estimator.train``: input, state, steps, hooks, summaries, checkpoints."""

    def __init__(self, est: Estimator, input_fn: Callable, hooks: list[Hook], saved_step: int | None,
                 last_step: int | None):
        self.est = est
        self.config = est.config
        self.hooks = hooks
        self.saved_step = saved_step
        self.start_step = saved_step or 0
        self.started = False  # True once a step ran: a damaged checkpoint can no longer be skipped
        self.last_step = last_step
        self.store = est._checkpoints()
        self.input_fn = input_fn
        self.chief = jax.process_index() == 0
        self.writer = SummaryWriter(est.model_dir) if self.chief else None
        # NanLossHook(fail_on_nan_loss=False): a NaN loss stops training without raising.
        self.raise_on_nan = not any(isinstance(h, NanLossHook) and not h.fail_on_nan_loss for h in hooks)
        self.diverged_at: int | None = None
        self.signals = _StopSignals()
        self.interrupted_at: tuple[int, str | None] = (self.start_step, None)

    def run(self) -> Estimator:
        with self.signals:
            self._run()
        if self.signals.received is not None:
            step, path = self.interrupted_at
            raise TrainingInterruptedError(self.signals.received, step, path)
        return self.est

    def _run(self) -> None:
        iterator = self.est._input_iterator(self.input_fn, ModeKeys.TRAIN)
        saved_step = self.saved_step
        group_size = 1 if self.config.debug else self.config.steps_per_loop
        budget = None if self.last_step is None else self.last_step - self.start_step
        prefetcher = None
        try:
            restored_input = None
            if saved_step is not None:
                restored_input = self.store.restore_input(saved_step)
                if restored_input is not None and hasattr(iterator, "restore"):
                    iterator.restore(restored_input)
            prefetcher = self.est._prefetcher(iterator, ModeKeys.TRAIN, group_size, budget)
            first = next(prefetcher, None)
            if first is None:
                log.warning("train: input_fn produced no batches; nothing to do.")
                return
            state = self._initial_state(first, saved_step)
            self.started = True
            self._loop(state, first, prefetcher)
        finally:
            if prefetcher is not None:
                prefetcher.close()
            try:
                self.store.wait()
            finally:
                self._close_writer()

    def _close_writer(self) -> None:
        """Closes the event file; a failure (a full disk) is a warning, not an error hiding the first one."""
        if self.writer is None:
            return
        try:
            self.writer.close()
        except OSError as error:
            log.warning("Could not close the TensorBoard event file in %s: %s", self.est.model_dir, error)

    def _initial_state(self, first: Any, saved_step: int | None) -> Any:
        features, labels = _one_batch(first)
        if saved_step is None:
            log.info("Create new training state (seed %d).", self.config.random_seed)
            self._record_config()
            return self.est._initial_train_state(features, labels)
        abstract = self.est._abstract_train_state(features, labels)
        state, _ = self.store.restore(saved_step, abstract)
        log.info("Restored training state from %s", self.store.step_path(saved_step))
        return state

    def _record_config(self) -> None:
        if not self.chief:
            return
        payload = {"run_config": self.config.to_dict(), "params": self.est.params}
        with open(os.path.join(self.est.model_dir, "run_config.json"), "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=str)
        self.writer.text("run_config", payload)

    def _loop(self, state: Any, first: Any, prefetcher: Prefetcher) -> None:
        train_step, train_loop = self.est._train_functions()
        context = RunContext(self.est, ModeKeys.TRAIN)
        step = self.start_step
        for hook in self.hooks:
            hook.begin(context, step)
        acc = self.est._zero_accumulator()
        marks = {"summary": (step, time.time(), 0), "log": (step, time.time()), "ckpt": (step, time.time())}
        group, input_state, last_saved = first, None, self.start_step
        while group is not None:
            for hook in self.hooks:
                hook.before_run(context, step)
            fn = train_loop if group.stacked else train_step
            state, acc, loss = fn(state, acc, group.features, group.labels)
            step += group.size
            input_state = group.input_state
            marks["summary"] = (*marks["summary"][:2], marks["summary"][2] + group.examples)
            values = RunValues(step, loss, group.size)
            for hook in self.hooks:
                hook.after_run(context, values)
            acc = self._maybe_summarize(state, acc, step, marks)
            self._maybe_log(loss, step, marks)
            if self._checkpoint_due(step, group.size, marks):
                self._save(state, acc, step, input_state)
                last_saved = step
            if context.stop_requested or (self.last_step is not None and step >= self.last_step):
                break
            if self._signalled(step, group.size):
                log.warning("%s received: saving a checkpoint at step %d and stopping.",
                            signal.Signals(self.signals.received).name, step)
                break
            group = next(prefetcher, None)
        if step != last_saved:
            self._save(state, acc, step, input_state)
        self.interrupted_at = (step, self.store.step_path(step) if self.diverged_at is None else None)
        for hook in self.hooks:
            hook.end(context, step)
        log.info("Loss for final step: %s.", float(loss) if step > self.start_step else "n/a")

    def _signalled(self, step: int, size: int) -> bool:
        """Whether a stop signal arrived; with several processes, whether any process got one.

        Agreeing costs a sync, so several processes look when the checkpoint clock is looked at.
        """
        if jax.process_count() == 1:
            return self.signals.received is not None
        if not self._time_check(step - size, step):
            return False
        signums = distribute.gather_ints(self.signals.received or 0)
        received = next((s for s in signums if s), 0)
        if received and self.signals.received is None:
            self.signals.received = received
        return bool(received)

    @staticmethod
    def _crossed(prev: int, step: int, every: int | None) -> bool:
        return bool(every) and step // every != prev // every

    def _maybe_summarize(self, state: Any, acc: Any, step: int, marks: dict) -> Any:
        prev, t0, examples = marks["summary"]
        if not self._crossed(prev, step, self.config.save_summary_steps):
            return acc
        self._check_finite(acc)
        now = time.time()
        host = jax.device_get(acc)
        scalars = {"loss": host["loss_sum"] / max(1, host["count"])}
        if now > t0:
            scalars["global_step/sec"] = (step - prev) / (now - t0)
            scalars["examples/sec"] = examples / (now - t0)
        lr = learning_rate_of(state["opt_state"])
        if lr is not None:
            scalars["learning_rate"] = float(lr)
        if self.writer is not None:
            self.writer.scalars(scalars, step)
        if "global_step/sec" in scalars and self.chief:
            log.info("global_step/sec: %.4g", scalars["global_step/sec"])
        marks["summary"] = (step, now, 0)
        return self.est._zero_accumulator()

    def _maybe_log(self, loss: Any, step: int, marks: dict) -> None:
        prev, t0 = marks["log"]
        if not self._crossed(prev, step, self.config.log_step_count_steps):
            return
        now = time.time()
        if self.chief:
            log.info("loss = %.6g, step = %d (%.3f sec)", float(loss), step, now - t0)
        marks["log"] = (step, now)

    def _checkpoint_due(self, step: int, size: int, marks: dict) -> bool:
        prev, t0 = marks["ckpt"]
        every_secs = self.config.checkpoint_every_secs
        due = self._crossed(prev, step, self.config.save_checkpoints_steps)
        if not due and every_secs is not None and self._time_check(step - size, step):
            # Saving is collective: with several processes, process 0's clock decides for all.
            due = distribute.agreed(time.time() - t0 >= every_secs)
        if due:
            marks["ckpt"] = (step, time.time())
        return due

    def _time_check(self, before: int, step: int) -> bool:
        """Whether to look at the checkpoint clock after this call.

        One process: every call. Several: when a summary is written (a host-device
        sync anyway; every call if summaries are off), since agreeing costs a sync.
        """
        every = self.config.save_summary_steps
        return jax.process_count() == 1 or not every or self._crossed(before, step, every)

    def _check_finite(self, acc: Any) -> None:
        """Raises on a NaN/inf loss in ``acc``, or only records its step when a NanLossHook tolerates it."""
        nan_step = int(acc["nan_step"])
        if nan_step < 0 or self.diverged_at is not None:
            return
        self.diverged_at = nan_step
        if self.raise_on_nan:
            raise NanLossDuringTrainingError(
                f"NaN or infinite loss at step {nan_step}; training stopped and the diverged state was not saved. "
                "Lower the learning rate, check the inputs for NaN/inf, or clip gradients."
            )

    def _save(self, state: Any, acc: Any, step: int, input_state: Any) -> None:
        self._check_finite(acc)
        if self.diverged_at is not None:
            log.error("Not saving a checkpoint for step %d: the loss became NaN or infinite at step %d. "
                      "The latest checkpoint, step %s, is the last one before it.",
                      step, self.diverged_at, self.store.latest_step())
            return
        log.info("Saving checkpoints for %d into %s.", step, self.store.directory)
        self.store.save(step, state, input_state)
        if self.writer is not None:
            self.writer.flush()


class _StopSignals:
    """Within ``with``: SIGTERM and SIGINT set ``received`` instead of killing the process.

    The train loop saves a checkpoint at the next step boundary and stops; later
    signals are logged and ignored until the save is complete, so a signal never
    aborts a checkpoint write. Handlers are installed from the main thread only.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
            log.warning("%s received: training stops at the next step boundary after saving a checkpoint.",
                        signal.Signals(signum).name)
        else:
            log.warning("%s received again: still saving the checkpoint; kill -9 aborts.", signal.Signals(signum).name)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _one_batch(group: Any) -> tuple[Any, Any]:
    """The first batch of a group (unstacked), for initialisation shapes."""
    if not group.stacked:
        return group.features, group.labels
    features = jax.tree.map(lambda x: x[0], group.features)
    labels = None if group.labels is None else jax.tree.map(lambda x: x[0], group.labels)
    return features, labels


