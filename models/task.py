"""The config of a runnable task (model + data + run + train/eval/export) and its model registry.

A task config is a YAML file with sections ``model``, ``data``, ``run``,
``train``, ``eval`` and ``export``; ``model.name`` picks a module in ``models/``
that supplies the schema of ``model`` and ``data`` and builds the Estimator,
the input functions and the serving input. Scripts in ``scripts/`` share it.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import typing
from typing import Any

from estimator import ModeKeys, RunConfig, RunConfigError
from estimator.checkpoint import UnsupportedCheckpointLocationError, check_checkpoint_location
from estimator.config import ConfigError, bounded, build, load_raw
from estimator.training import EvalSpec, continuous_evaluate
from input_pipelines import fs

MODELS = {"taxi_fare": "models.taxi_fare", "transformer_lm": "models.transformer_lm"}
EXPORTERS = ("best", "final", "latest")


# RunConfig fields a task's run: section leaves out: the model section sets the first two where a
# model supports them (transformer_lm), the launcher or environment the multi-process ones.
_RUN_FIELDS_SET_ELSEWHERE = ("compute_dtype", "gradient_accumulation_steps", "coordinator_address",
                             "num_processes", "process_id")


def _run_config(self) -> RunConfig:
    """The RunConfig these settings describe."""
    return RunConfig(**dataclasses.asdict(self))


def _run_section() -> type:
    """``run:``'s schema: RunConfig's own fields, types and defaults (one set of defaults).

    Only ``model_dir`` differs: a task always writes somewhere, ``runs/model`` unless set.
    RunConfig's checks validate the values (``_check_run`` names the key).
    """
    hints = typing.get_type_hints(RunConfig)
    fields = [(f.name, hints[f.name], dataclasses.field(default=f.default)) for f in dataclasses.fields(RunConfig)
              if f.name not in _RUN_FIELDS_SET_ELSEWHERE and f.name != "model_dir"]
    fields.insert(0, ("model_dir", str, dataclasses.field(default="runs/model")))
    doc = "``run:``: where the model lives and the RunConfig fields a config may set (see RunConfig)."
    section = dataclasses.make_dataclass("RunSection", fields, namespace={"__doc__": doc, "run_config": _run_config})
    section.__module__ = __name__
    return section


RunSection = _run_section()


@dataclasses.dataclass
class TrainSection:
    """``train:``: how long to train."""

    max_steps: int = bounded(1000, minimum=1)


@dataclasses.dataclass
class EvalSection:
    """``eval:``: how much and how often to evaluate while training."""

    steps: int | None = bounded(None, minimum=1)
    every_n_steps: int | None = bounded(None, minimum=1)
    throttle_secs: float = bounded(600.0, minimum=0)
    name: str | None = None


@dataclasses.dataclass
class ExportSection:
    """``export:``: which exporters run after evaluations."""

    enabled: bool = True
    exporters: list[str] = dataclasses.field(default_factory=lambda: ["best", "final"])
    exports_to_keep: int = bounded(3, minimum=1)


def model_module(name: str) -> Any:
    """The module registered for ``model.name``."""
    if name not in MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config key 'model.name' is {name!r}, which is not a known model.{hint} Known: {sorted(MODELS)}.")
    return importlib.import_module(MODELS[name])


@dataclasses.dataclass
class TaskConfig:
    """A validated task config; ``module`` is the model's module (not part of the YAML)."""

    model: Any
    data: Any
    run: RunSection
    train: TrainSection
    eval: EvalSection
    export: ExportSection
    module: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (saved into model_dir)."""
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "module"}


SECTIONS = ("model", "data", "run", "train", "eval", "export")


def load_task_config(path: str, overrides: list[str] | None = None, check_files: bool = True) -> TaskConfig:
    """Reads, overrides and validates a task config; checks its data files exist."""
    tree = load_raw(path, overrides)
    unknown = [k for k in tree if k not in SECTIONS]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], SECTIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config section {unknown[0]!r} in {path}.{hint} Valid sections: {list(SECTIONS)}.")
    model_tree = dict(tree.get("model") or {})
    module = model_module(model_tree.get("name", ""))
    config = TaskConfig(
        model=_section(module.ModelParams, model_tree, "model"),
        data=_section(module.DataParams, tree.get("data") or {}, "data"),
        run=_section(RunSection, tree.get("run") or {}, "run"),
        train=_section(TrainSection, tree.get("train") or {}, "train"),
        eval=_section(EvalSection, tree.get("eval") or {}, "eval"),
        export=_section(ExportSection, tree.get("export") or {}, "export"),
        module=module,
    )
    _check_run(config)
    if check_files:
        for key in ("train_files", "eval_files"):
            pattern = getattr(config.data, key, None)
            if pattern and not fs.glob(pattern):
                where = "" if fs.is_url(pattern) else f" (from {os.getcwd()})"
                raise ConfigError(
                    f"config key 'data.{key}' = {pattern!r} matches no file{where}; "
                    "generate data with scripts/make_taxi_data.py or fix the path."
                )
    return config


def _check_run(config: TaskConfig) -> None:
    """What the schema cannot say: RunConfig's own checks, the model_dir, the exporter names."""
    try:
        config.run.run_config()
    except RunConfigError as error:  # "RunConfig.x ..." is key "run.x" here
        field = re.match(r"RunConfig\.(\w+) (.*)", str(error), re.S)
        message = f"config key 'run.{field[1]}' {field[2]}" if field else f"config section 'run': {error}"
        raise ConfigError(message) from None
    try:
        check_checkpoint_location(config.run.model_dir)
    except UnsupportedCheckpointLocationError as error:
        raise ConfigError(f"config key 'run.model_dir': {error}") from None
    if fs.isfile(fs.absolute(config.run.model_dir)):
        raise ConfigError(f"config key 'run.model_dir' = {config.run.model_dir!r} is a file, not a directory.")
    unknown = [e for e in config.export.exporters if e not in EXPORTERS]
    if unknown:
        raise ConfigError(f"config key 'export.exporters' has unknown {unknown}; choose from {sorted(EXPORTERS)}.")


def _section(schema: type, values: Any, name: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}.")
    return build(schema, values, name)


def build_estimator(config: TaskConfig) -> Any:
    """The Estimator the config describes."""
    return config.module.build_estimator(config.model, config.data, config.run.run_config())


def input_fn(config: TaskConfig, mode: str) -> Any:
    """The input_fn of ``mode`` (train reads ``data.train_files``, eval/predict ``data.eval_files``)."""
    return config.module.input_fn(config.data, mode, seed=config.run.random_seed)


def serving_input(config: TaskConfig) -> Any:
    """What a serving client sends for this model (raw columns only)."""
    return config.module.serving_input(config.data)


def exporters(config: TaskConfig) -> list[Any]:
    """Exporters named in ``export.exporters`` (latest, best, final)."""
    from estimator.exporter import BestExporter, FinalExporter, LatestExporter

    if not config.export.enabled:
        return []
    spec = serving_input(config)
    keep = config.export.exports_to_keep
    makers = {
        "latest": lambda: LatestExporter("latest", spec, exports_to_keep=keep),
        "best": lambda: BestExporter("best", spec, exports_to_keep=keep, eval_name=config.eval.name),
        "final": lambda: FinalExporter("final", spec),
    }
    return [makers[name]() for name in config.export.exporters]


def evaluate_continuously(config: TaskConfig, poll_secs: float, timeout_secs: float | None) -> int:
    """The continuous evaluator of ``config`` (scripts/evaluate.py --continuous, the TF_CONFIG evaluator task).

    Evaluates each new checkpoint until ``train.max_steps`` is evaluated, runs the
    exporters after each evaluation, prints the last metrics and exports as JSON;
    returns the exit code (1 when nothing was evaluated).
    """
    est = build_estimator(config)
    spec = EvalSpec(input_fn(config, ModeKeys.EVAL), steps=config.eval.steps, name=config.eval.name,
                    exporters=exporters(config), start_delay_secs=0, throttle_secs=0)
    metrics, exports = continuous_evaluate(est, spec, config.train.max_steps, poll_secs=poll_secs,
                                           timeout_secs=timeout_secs)
    print(json.dumps({"metrics": metrics, "exports": exports}, indent=2, default=float))
    return 0 if metrics is not None else 1


def argument_parser(description: str) -> Any:
    """An argparse parser with the ``--config`` and ``--set`` options every task script takes."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML task config, e.g. configs/taxi_fare.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. train.max_steps=2000 model.hidden_units=[64,32]")
    return parser


def setup_logging(level: int = 20) -> None:
    """INFO lines of the estimator on stderr; absl's (orbax's) only from WARNING, one line each.

    Importing JAX/orbax leaves the root logger at WARNING with a bare stderr handler,
    which swallows the estimator's INFO lines and makes ``logging.basicConfig`` a
    no-op: the level is lowered and that handler gets our format (handlers of
    others, e.g. pytest's, are left alone).
    """
    import logging
    import sys

    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__):
            handler.setFormatter(formatter)
    root.setLevel(level)
    logging.getLogger("absl").setLevel(logging.WARNING)
    for name in ("absl", "asyncio"):
        library = logging.getLogger(name)
        if not any(isinstance(f, _OneLine) for f in library.filters):
            library.addFilter(_OneLine())
    sys.unraisablehook = _one_line_unraisable


def _one_line_unraisable(unraisable: Any) -> None:
    """Library callbacks failing after an error (orbax's, on a full disk): one line each, no traceback."""
    import sys

    print(f"warning: ignored {type(unraisable.exc_value).__name__}: {unraisable.exc_value}", file=sys.stderr)


class _OneLine:
    """Keeps absl's (orbax's) records to their first line: no library traceback before our own error message."""

    def filter(self, record: Any) -> bool:
        """Drops the record's traceback and all but its first line."""
        record.msg = str(record.getMessage()).splitlines()[0][:500] if record.getMessage() else ""
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


def run_script(main: Any, argv: list[str] | None = None) -> int:
    """Runs a script's ``main(argv)`` and turns the errors a user can fix into a message and an exit code.

    Config errors exit 2; a stop signal exits 128 + the signal (143 SIGTERM, 130 Ctrl-C) after the
    checkpoint was saved; a second trainer, a full disk, damaged checkpoints, a changed model or
    optimizer and input the devices cannot take exit 1. Each prints ``error: ...`` on stderr without a traceback.
    """
    import errno
    import logging
    import sys

    from estimator import CheckpointMismatchError, EstimatorError
    from estimator.checkpoint import (
        CheckpointCorruptError,
        CheckpointNotFoundError,
        CheckpointWriteError,
    )
    from estimator.estimator import TrainingInterruptedError
    from estimator.model_dir_lock import ModelDirLockError

    try:
        return main(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterruptedError as error:
        logging.getLogger("estimator").warning("%s", error)
        return error.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training (evaluating, exporting): redone on the next run
        print("error: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except (ModelDirLockError, CheckpointWriteError, CheckpointCorruptError, CheckpointMismatchError,
            CheckpointNotFoundError, EstimatorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES, errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: cannot write {error.filename or ''}: {error.strerror}. Point the output elsewhere "
              "(e.g. --export_dir) or free the space.", file=sys.stderr)
        return 1


def config_from_args(args: Any) -> TaskConfig:
    """Loads the config named by parsed ``--config`` / ``--set``; exits with a message on a bad config."""
    import sys

    setup_logging()
    try:
        return load_task_config(args.config, args.set)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
