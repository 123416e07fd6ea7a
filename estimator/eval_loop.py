"""One call of ``Estimator.evaluate``: input, variables, the jitted eval step, hooks, metrics, results.

``run_evaluation`` draws the first batch, restores (or initialises) the variables,
runs the jitted eval step over every batch while merging the metric states, combines
them over all processes (``_eval_results``) and records the results in ``eval_dir``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax

from estimator import _eval_results
from estimator.eval_history import write_eval_result
from estimator.hooks import Hook, RunContext, RunValues
from estimator.spec import ModeKeys
from estimator.summary import SummaryWriter

if TYPE_CHECKING:
    from estimator.estimator import Estimator

log = logging.getLogger("estimator")


def run_evaluation(est: Estimator, input_fn: Callable, steps: int | None, hooks: list[Hook],
                   checkpoint_path: str | None, name: str | None) -> dict[str, Any]:
    """``Estimator.evaluate`` after its argument checks: the metrics, ``loss`` and ``global_step``, recorded."""
    from estimator.estimator import EstimatorError  # estimator.estimator imports this module

    prefetcher = est._prefetcher(est._input_iterator(input_fn, ModeKeys.EVAL), ModeKeys.EVAL,
                                 max_batches=steps, mesh=est._local_mesh)
    context = RunContext(est, ModeKeys.EVAL)
    try:
        first = next(prefetcher, None)
        if first is None and jax.process_count() == 1:
            raise EstimatorError("evaluate: input_fn produced no batches.")
        params, model_state, step = est._variables_for(ModeKeys.EVAL, checkpoint_path,
                                                       *(first[:2] if first else (None, None)))
        # a process without batches never needs the metrics: it takes the others' outcome
        metrics = est._statics(ModeKeys.EVAL, first.features, first.labels).metrics if first else {}
        eval_step, merge = eval_functions(est, metrics)
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
    results = _eval_results.combine(metrics, merge, merged, loss_sum, batches, step)
    if results is None:
        raise EstimatorError(f"evaluate: input_fn produced no batches on any of the {jax.process_count()} processes.")
    log.info("Saving dict for global step %d: %s", step,
             ", ".join(f"{k} = {v:.6g}" for k, v in sorted(results.items())))
    write_eval_results(est, results, name)
    return results


def eval_functions(est: Estimator, metrics: Mapping[str, Any]) -> tuple[Callable, Callable]:
    """``(jitted eval step, jitted merge of metric states)``, built once per Estimator."""
    if "eval_step" not in est._cache:
        transformed = est._transformed(ModeKeys.EVAL)

        def eval_step(params, model_state, features, labels):
            spec, _ = transformed.apply(params, model_state, None, features, labels)
            states = {k: op.state for k, op in (spec.eval_metrics or {}).items()}
            return spec.loss, states

        def merge(a, b):
            return {k: metrics[k].merge(a[k], b[k]) for k in a}

        est._cache["eval_step"] = est._jit(eval_step)
        est._cache["eval_merge"] = est._jit(merge)
    return est._cache["eval_step"], est._cache["eval_merge"]


def write_eval_results(est: Estimator, results: dict[str, Any], name: str | None) -> None:
    """TensorBoard events and the results.jsonl line; a read-only model_dir only gets a warning."""
    if jax.process_index() != 0:
        return
    eval_dir = est.eval_dir(name)
    try:
        writer = SummaryWriter(eval_dir)
        writer.scalars({k: v for k, v in results.items() if k != "global_step"}, results["global_step"])
        writer.close()
        write_eval_result(eval_dir, results)
    except OSError as error:
        log.warning("Could not record the evaluation in %s (%s); the results are returned but not saved.",
                    eval_dir, error)
