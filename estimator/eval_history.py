"""The evaluation history of a model_dir: ``results.jsonl`` and what was exported per evaluated step.

``eval_dir/results.jsonl`` holds one JSON line per evaluated ``global_step`` (the
newest result of a step replaces an older one, so a redone evaluation leaves no
duplicate); it is rewritten whole and atomically (locally a temporary file, fsync,
rename; on a bucket, which cannot append, one upload of the whole object), so a kill
never leaves half a line. ``eval_dir/progress.json`` is the journal of
``train_and_evaluate`` and the continuous evaluator: for every step due for
evaluation, whether it is the final one and which exporters finished on it. A
step whose evaluation or exports a kill interrupted is redone on the next start.

Only process 0 writes. Every process decides what to redo from ``recorded()``, read
once at the start of a run (before this run writes anything), so all processes of a
job make the same decisions.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jax

from input_pipelines import fs

log = logging.getLogger("estimator")

RESULTS_FILE = "results.jsonl"
JOURNAL_FILE = "progress.json"


def read_eval_history(eval_dir: str) -> list[dict[str, Any]]:
    """Evaluation results written by ``Estimator.evaluate`` in ``eval_dir``, by step (a damaged line is skipped)."""
    path = fs.join(eval_dir, RESULTS_FILE)
    try:
        text = fs.read_text(path)
    except FileNotFoundError:
        return []
    results = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            results.append(json.loads(line))
        except ValueError:
            log.warning("%s:%d is not a JSON line; skipped.", path, number)
    return results


def write_eval_result(eval_dir: str, result: dict[str, Any]) -> None:
    """Records ``result`` (with ``global_step``), replacing an earlier result of the same step."""
    step = result["global_step"]
    kept = [r for r in read_eval_history(eval_dir) if r.get("global_step") != step]
    lines = sorted([*kept, result], key=lambda r: r.get("global_step", 0))
    fs.write_atomically(fs.join(eval_dir, RESULTS_FILE), "".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))


class EvalJournal:
    """``eval_dir/progress.json``: the steps due for evaluation and the exporters done on each."""

    def __init__(self, eval_dir: str):
        self.eval_dir = eval_dir
        self.path = fs.join(eval_dir, JOURNAL_FILE)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(fs.read_text(self.path))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("%s is damaged; evaluations it recorded are not redone.", self.path)
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        if jax.process_index() != 0:
            return
        try:
            fs.write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as error:  # a read-only model_dir: evaluating still works, redoing does not
            log.warning("Could not record evaluation progress in %s (%s).", self.path, error)

    def due(self, step: int, final: bool) -> None:
        """Records that ``step`` is to be evaluated and exported (before doing it)."""
        data = self._read()
        entry = data.setdefault(str(step), {"exports": {}})
        entry["final"] = bool(final)
        self._write(data)

    def exported(self, step: int, exporter: str, path: str | None) -> None:
        """Records that ``exporter`` finished on ``step`` (``path`` None: it chose not to export)."""
        data = self._read()
        data.setdefault(str(step), {"exports": {}, "final": False})["exports"][exporter] = path
        self._write(data)

    def recorded(self) -> dict[int, dict[str, Any]]:
        """Per step: ``{"due": bool, "final": bool, "exports": {name: path or None}, "result": dict or None}``.

        ``due`` marks steps the journal holds (due for evaluation and exports); steps only in
        results.jsonl (evaluated by hand) have their ``result`` and no exports.
        """
        steps: dict[int, dict[str, Any]] = {}
        for step, entry in self._read().items():
            steps[int(step)] = {"due": True, "final": bool(entry.get("final")),
                                "exports": dict(entry.get("exports", {})), "result": None}
        for result in read_eval_history(self.eval_dir):
            step = result.get("global_step")
            if isinstance(step, int):
                steps.setdefault(step, {"due": False, "final": False, "exports": {}, "result": None})["result"] = result
        return steps


def pending(recorded: dict[int, dict[str, Any]], exporter_names: list[str]) -> list[int]:
    """Steps of ``recorded`` due whose evaluation or one of ``exporter_names`` did not finish, oldest first."""
    return sorted(step for step, entry in recorded.items()
                  if entry["due"] and (entry["result"] is None or set(exporter_names) - set(entry["exports"])))
