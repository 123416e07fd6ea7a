"""Exporters for ``EvalSpec(exporters=...)``: when to export during training (tf.estimator's API).

The caller (``train_and_evaluate``) calls, after each evaluation,
``exporter.export(estimator, model_dir/export/<exporter.name>, checkpoint_path, eval_result,
is_the_final_export)``; each returns the new export's path or None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from estimator._export_dir import garbage_collect
from estimator.eval_history import read_eval_history
from estimator.export import Exportable, export_saved_model
from estimator.keys import MetricKeys
from input_pipelines import fs

BEST_EVAL_FILE = "best_eval.json"


class ExporterError(ValueError):
    """An exporter was misconfigured or given an eval result it cannot compare."""


class Exporter:
    """Base class: ``export(...) -> path | None``; subclasses decide when to export."""

    def __init__(self, name: str, serving_input: Any, exports_to_keep: int | None = 5, as_text: bool = False):
        if not name or "/" in name:
            raise ExporterError(f"Exporter name {name!r} must be a non-empty directory name (no '/').")
        if exports_to_keep is not None and exports_to_keep < 1:
            raise ExporterError(f"exports_to_keep must be None or >= 1, got {exports_to_keep}.")
        self._name = name
        self._serving_input = serving_input
        self._exports_to_keep = exports_to_keep
        self._as_text = as_text

    @property
    def name(self) -> str:
        """Directory name under ``model_dir/export/``."""
        return self._name

    def _export(self, estimator: Exportable, export_path: str, checkpoint_path: str | None) -> str:
        path = export_saved_model(estimator, export_path, self._serving_input, checkpoint_path, as_text=self._as_text)
        garbage_collect(export_path, self._exports_to_keep)
        return path

    def export(
        self,
        estimator: Exportable,
        export_path: str,
        checkpoint_path: str | None,
        eval_result: Mapping[str, Any] | None,
        is_the_final_export: bool,
    ) -> str | None:
        """Exports (or not) after an evaluation; returns the export path or None."""
        raise NotImplementedError


class LatestExporter(Exporter):
    """Exports after every evaluation, keeping the newest ``exports_to_keep``."""

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        return self._export(estimator, export_path, checkpoint_path)


class FinalExporter(Exporter):
    """Exports once, after the final evaluation."""

    def __init__(self, name: str, serving_input: Any, as_text: bool = False):
        super().__init__(name, serving_input, exports_to_keep=None, as_text=as_text)

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        return self._export(estimator, export_path, checkpoint_path) if is_the_final_export else None


def _metric_smaller(metric_key: str) -> Callable[[Mapping, Mapping], bool]:
    def compare(best: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
        for which, result in (("best", best), ("current", current)):
            if metric_key not in result:
                raise ExporterError(
                    f"BestExporter compares eval metric {metric_key!r}, missing from the {which} eval "
                    f"result (keys: {sorted(result)}); pass metric_key= or compare_fn=."
                )
        return float(current[metric_key]) < float(best[metric_key])

    return compare


class BestExporter(Exporter):
    """Exports when the eval result beats the best so far; the best survives restarts.

    Args:
      compare_fn: ``fn(best_eval_result, current_eval_result) -> bool`` (True: current is
        better); default: ``metric_key`` smaller is better.
      metric_key: eval metric compared by the default compare_fn.
      eval_name: the evaluation whose history (``results.jsonl`` of ``estimator.eval_dir(eval_name)``)
        gives the best so far when ``best_eval.json`` is missing (a kill between an export
        and its record, or a deleted export dir): so a worse model is never exported as best.
    The best eval result is kept as JSON in ``<export_path>/best_eval.json``.
    """

    def __init__(
        self,
        name: str = "best_exporter",
        serving_input: Any = None,
        compare_fn: Callable[[Mapping, Mapping], bool] | None = None,
        metric_key: str = MetricKeys.AVERAGE_LOSS,
        exports_to_keep: int | None = 5,
        as_text: bool = False,
        eval_name: str | None = None,
    ):
        if serving_input is None:
            raise ExporterError("BestExporter needs a serving_input (feature spec or function).")
        super().__init__(name, serving_input, exports_to_keep, as_text)
        self._compare = compare_fn or _metric_smaller(metric_key)
        self._eval_name = eval_name

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        if eval_result is None:
            raise ExporterError("BestExporter.export needs the eval_result of the evaluation.")
        current = _jsonable(eval_result)
        best_file = fs.join(export_path, BEST_EVAL_FILE)
        best = self._best_so_far(estimator, best_file, current)
        if best is not None and not self._compare(best, current):
            return None
        path = self._export(estimator, export_path, checkpoint_path)
        fs.write_atomically(best_file, json.dumps({"eval_result": current, "export": fs.basename(path)}, indent=1))
        return path

    def _best_so_far(self, estimator: Exportable, best_file: str, current: Mapping[str, Any]) -> Any:
        try:
            return json.loads(fs.read_text(best_file))["eval_result"]
        except (ValueError, KeyError, TypeError, OSError):
            pass  # missing or damaged: the history below decides
        eval_dir = getattr(estimator, "eval_dir", None)
        if eval_dir is None:
            return None
        return _best_of_history(read_eval_history(eval_dir(self._eval_name)), self._compare,
                                current.get("global_step"))


def _best_of_history(history: list[Mapping[str, Any]], compare: Callable[[Mapping, Mapping], bool],
                     before_step: Any) -> Mapping[str, Any] | None:
    """The best result among those of steps before ``before_step``, by ``compare``."""
    best = None
    for result in history:
        if before_step is not None and result.get("global_step", -1) >= before_step:
            continue
        if best is None or compare(best, result):
            best = result
    return best


def _jsonable(eval_result: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars (numpy / jax arrays too) as floats or ints; other values dropped."""
    out = {}
    for k, v in eval_result.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = int(x) if isinstance(v, int) else (x if math.isfinite(x) else str(x))
    return out
