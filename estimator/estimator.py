"""Estimator: train / evaluate / predict / export around a ``model_fn``.

The training itself lives in ``train_core`` (the ``TrainState`` pytree, its
initialisation and the jitted step, free of any Estimator) and ``train_loop``
(one ``train`` call: resume, steps, hooks, summaries, checkpoints), one ``evaluate``
call in ``eval_loop``, calling ``input_fn`` in ``input_plumbing``. Checkpoints hold
the state plus the input iterator's position, so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import _legacy_hooks, distribute, input_plumbing, nn, train_core
from estimator._prefetch import Prefetcher
from estimator._restore_cache import RestoreCache
from estimator.checkpoint import (
    CheckpointStore,
    check_checkpoint_location,
    has_checkpoint_dir,
    parse_checkpoint_path,
)
from estimator.eval_loop import run_evaluation
from estimator.hooks import Hook, RunContext
from estimator.input_plumbing import accepted_args
from estimator.model_dir_lock import ModelDirLock, chief_holds
from estimator.preprocessing import Preprocessing, check_preprocessing
from estimator.run_config import RunConfig
from estimator.spec import EstimatorSpec, EstimatorSpecError, ModeKeys
from estimator.train_loop import TrainingInterruptedError, run_training  # noqa: F401 (re-exported: the old import path)
from estimator.warm_start import apply_warm_start
from input_pipelines import fs

if TYPE_CHECKING:
    from estimator.export import Servable

log = logging.getLogger("estimator")

RESERVED_EVAL_KEYS = ("loss", "global_step")


class EstimatorError(ValueError):
    """The Estimator was called with arguments that cannot work."""


class ModelFnError(RuntimeError):
    """``model_fn`` raised while being traced; the message names the mode and the features."""


def _describe(tree: Any) -> str:
    if tree is None:
        return "None"
    if isinstance(tree, Mapping):
        return ", ".join(f"{k}: {getattr(v, 'dtype', type(v).__name__)}{list(np.shape(v))}" for k, v in tree.items())
    return f"{getattr(tree, 'dtype', type(tree).__name__)}{list(np.shape(tree))}"


class Estimator(_legacy_hooks.DeprecatedHooks):
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
      preprocessing: an ``estimator.preprocessing.Preprocessing``: host-side
        ``features`` / ``labels`` transforms of every batch, ``predictions`` of every
        batch ``predict`` yields, and ``to_json`` for exports; the identity if None.
    """

    def __init__(
        self,
        model_fn: Callable[..., EstimatorSpec] | None = None,
        model_dir: str | None = None,
        config: RunConfig | None = None,
        params: Mapping[str, Any] | None = None,
        warm_start_from: Any = None,
        preprocessing: Preprocessing | None = None,
    ):
        if model_fn is None:
            if type(self).model_fn is Estimator.model_fn:
                raise EstimatorError("Estimator needs a model_fn: pass model_fn=... or subclass and override model_fn.")
            model_fn = self.model_fn
        if not callable(model_fn):
            raise EstimatorError(f"model_fn must be callable, got {type(model_fn).__name__}.")
        config = config or RunConfig()
        distribute.initialize(config)  # multi-process start-up, before any device is touched
        if model_dir and config.model_dir and fs.absolute(model_dir) != fs.absolute(config.model_dir):
            raise EstimatorError(
                f"model_dir={model_dir!r} differs from RunConfig.model_dir={config.model_dir!r}; give one of them."
            )
        model_dir = model_dir or config.model_dir
        if not model_dir:
            model_dir = tempfile.mkdtemp(prefix="estimator_")
            log.warning("Using temporary folder as model directory: %s", model_dir)
        check_checkpoint_location(model_dir)  # s3:// fails here, not at the first save
        warm_source = getattr(warm_start_from, "ckpt_to_initialize_from", warm_start_from)
        if isinstance(warm_source, str | os.PathLike):
            check_checkpoint_location(os.fspath(warm_source))
        if fs.isfile(fs.absolute(model_dir)):
            raise EstimatorError(f"model_dir {model_dir!r} is a file, not a directory; give a directory path.")
        self._model_dir = fs.absolute(model_dir)  # a URL is kept as given (never abspath'ed)
        self._config = config.replace(model_dir=self._model_dir)
        self._params = dict(params or {})
        self._model_fn = model_fn
        self._model_fn_args = accepted_args(model_fn)
        self._warm_start_from = warm_start_from
        self._given_preprocessing = check_preprocessing(preprocessing)
        self._legacy = _legacy_hooks.overridden(type(self))
        self._preprocessing = (_legacy_hooks.LegacyPreprocessing(self, self._given_preprocessing, self._legacy)
                               if self._legacy else self._given_preprocessing)
        self._mesh = distribute.data_mesh()
        self._local_mesh = distribute.local_mesh()  # evaluate / predict: every process on its own share
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

    @property
    def preprocessing(self) -> Preprocessing:
        """The host-side ``Preprocessing`` of features, labels and predictions."""
        return self._preprocessing

    def eval_dir(self, name: str | None = None) -> str:
        """The event-file directory of evaluation ``name`` (``eval`` or ``eval_<name>``)."""
        return fs.join(self._model_dir, f"eval_{name}" if name else "eval")

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
        clash = [k for k in spec.eval_metrics or {} if k in RESERVED_EVAL_KEYS]
        if mode == ModeKeys.EVAL and clash:
            raise EstimatorSpecError(f"eval_metrics may not be named {clash}: the Estimator reports those itself.")
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

    def _statics(self, mode: str, features: Any, labels: Any) -> train_core.SpecStatics:
        """The optimizer and metric objects of ``mode``'s EstimatorSpec (one abstract trace per mode)."""
        key = ("statics", mode)
        if key not in self._cache:
            self._cache[key] = train_core.spec_statics(self._transformed(mode), mode, features, labels,
                                                       eager=self._config.debug)
        return self._cache[key]

    # ------------------------------------------------------------------ input
    def _input_iterator(self, input_fn: Callable, mode: str) -> Iterator:
        return input_plumbing.input_iterator(self, input_fn, mode)

    def _prefetcher(self, iterator: Iterator, mode: str, group_size: int = 1,
                    max_batches: int | None = None, mesh: Any = None) -> Prefetcher:
        return input_plumbing.prefetcher(self, iterator, mode, group_size, max_batches, mesh)

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

    def writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """Holds the model_dir's training lock (process 0 takes it; re-entrant): one trainer per model_dir.

        ``train`` takes it itself; hold it around several calls (``train_and_evaluate``,
        writing a config beside the checkpoints) so no other trainer slips in between.
        Raises ``ModelDirLockError`` naming the holder.
        """
        return chief_holds(self._lock)

    def latest_checkpoint(self) -> str | None:
        """Path of the newest complete checkpoint in model_dir, or None (damaged ones are skipped with a warning)."""
        if not has_checkpoint_dir(self._model_dir):
            return None
        store = self._reader(self._model_dir)
        step = store.usable_latest_step()
        return None if step is None else store.step_path(step)

    def _read_checkpoint(self, checkpoint_path: str | None, keep: bool = True) -> tuple[dict[str, Any], str] | None:
        """``(state arrays, path)`` of the given or latest checkpoint, None when model_dir has none.

        ``keep``: keep it for the next read (predict, export, variables); evaluate only reuses a kept one.
        """
        root, step = parse_checkpoint_path(checkpoint_path or self._model_dir)
        if checkpoint_path is None and not has_checkpoint_dir(root):
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
        return train_core.fresh_variables(self._transformed(mode), self._config.random_seed, features, labels,
                                          self._warm_start(), jit=not self._config.debug)

    def _warm_start(self) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        """``(params, model_state) -> warm-started`` when ``warm_start_from`` was given, else None."""
        return None if self._warm_start_from is None else functools.partial(apply_warm_start, self._warm_start_from)

    def _state_shardings(self, abstract_state: Any) -> Any:
        return distribute.state_shardings(self._mesh, abstract_state, self._config.param_sharding)

    # ------------------------------------------------------------------ the train step
    def _train_functions(self, features: Any, labels: Any) -> tuple[optax.GradientTransformation, Callable, Callable]:
        """``(optimizer, jitted one-batch step, jitted scan over a stacked group)``, built once per Estimator."""
        if "train" not in self._cache:
            transformed = self._transformed(ModeKeys.TRAIN)
            optimizer = train_core.with_accumulation(self._statics(ModeKeys.TRAIN, features, labels).optimizer,
                                                     self._config.gradient_accumulation_steps)
            self._cache["train"] = (
                optimizer,
                self._jit(train_core.make_train_step(transformed, optimizer), donate_argnums=(0, 1)),
                self._jit(train_core.make_train_loop(transformed, optimizer), donate_argnums=(0, 1)),
            )
        return self._cache["train"]

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
        return run_training(self, input_fn, list(hooks or []), steps, max_steps)

    # ------------------------------------------------------------------ evaluate
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
        return run_evaluation(self, input_fn, steps, list(hooks or []), checkpoint_path, name)

    # ------------------------------------------------------------------ predict
    def _predict_fn(self) -> Callable[[Any, Any, Any], Any]:
        """The pure PREDICT computation ``(params, model_state, features) -> predictions``."""
        return self._predict_apply if "_predict_apply" in self._legacy else self._model_predict_fn()

    def _model_predict_fn(self) -> Callable[[Any, Any, Any], Any]:
        transformed = self._transformed(ModeKeys.PREDICT)

        def predict_fn(params: Any, model_state: Any, features: Any) -> Any:
            spec, _ = transformed.apply(params, model_state, None, features, None)
            return spec.predictions

        return predict_fn

    def _checkpoint_variables(self, checkpoint_path: str | None) -> tuple[Any, Any, int]:
        """``(params, model_state, global_step)`` of the latest (or given) checkpoint."""
        if "_restore_params" in self._legacy:
            return self._restore_params(checkpoint_path)
        return self._read_variables(checkpoint_path)

    def _read_variables(self, checkpoint_path: str | None) -> tuple[Any, Any, int]:
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

        ``input_fn`` may yield features alone or ``(features, labels)``. Each batch of
        predictions passes through ``preprocessing.predictions`` on the host (e.g. a
        classifier's ``classes`` strings) before ``predict_keys`` selects from it.
        """
        if "predict" not in self._cache:
            self._cache["predict"] = self._jit(self._predict_fn())
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
                predictions = self._select_keys(self._preprocessing.predictions(predictions), predict_keys)
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
    def servable(self, checkpoint_path: str | None = None) -> Servable:
        """What an export holds: the PREDICT function and the latest (or given) checkpoint's arrays.

        Returns an ``estimator.export.Servable``: ``predict_fn(params, model_state,
        features)``, ``params``, ``model_state``, ``preprocessing`` (the JSON of
        ``preprocessing.to_json()``) and ``global_step``. Raises ``EstimatorError``
        when there is no checkpoint.
        """
        from estimator.export import Servable

        params, model_state, global_step = self._checkpoint_variables(checkpoint_path)
        return Servable(self._predict_fn(), params, model_state, self._preprocessing.to_json(), global_step)

    def export_saved_model(
        self, export_dir_base: str, serving_input: Any, checkpoint_path: str | None = None, as_text: bool = False
    ) -> str:
        """Writes a servable export under ``export_dir_base/<timestamp>/`` and returns its path.

        ``as_text`` (tf.estimator's argument) also writes the computation's StableHLO text as
        ``computation.mlir`` for reading; the served artifact is the same either way.
        """
        from estimator import export

        return export.export_saved_model(self.servable(checkpoint_path), export_dir_base, serving_input,
                                         as_text=as_text)


def _examples(predictions: Any) -> Iterator[Any]:
    if isinstance(predictions, Mapping):
        n = len(next(iter(predictions.values())))
        for i in range(n):
            yield {k: v[i] for k, v in predictions.items()}
    else:
        yield from np.asarray(predictions)
