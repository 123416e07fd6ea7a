"""The results of an evaluation, combined over all processes.

With several processes, each one evaluates its own share of the input on its own
devices (``distribute.local_mesh``), in step with no other: shares may differ in
length and in the size of their last batch, and no row is padded, repeated or
dropped, whatever the ``model_fn`` does with weights. At the end every process
hands in its merged metric states, its loss sum and its batch count
(``distribute.allgather_bytes``; a process with no batches hands in nothing);
the states are merged in process order, so the metrics are those of all rows
together, exactly as one process evaluating them all would compute them.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from estimator import distribute


class EvalCombineError(RuntimeError):
    """The processes of one evaluation disagree on its metrics (different model_fns or checkpoints)."""


def combine(metrics: Mapping[str, Any], merge: Callable[[Any, Any], Any], states: Any, loss_sum: Any,
            batches: int, step: int) -> dict[str, Any] | None:
    """``{metric: value, "loss": mean per-batch loss, "global_step": step}`` over all processes' batches.

    ``states`` are this process's metric states merged over its ``batches``
    batches (None when it had none), ``loss_sum`` the sum of their losses.
    ``loss`` is tf.estimator's: the mean of the per-batch losses, every batch
    of every process counting once. A collective with several processes: every
    process must call it. Returns None when no process had a batch.
    """
    if jax.process_count() == 1:
        return _results(metrics, states, float(loss_sum), batches, step) if batches else None
    leaves, treedef = jax.tree.flatten(states)
    payloads = [p for p in distribute.allgather_bytes(_encode(leaves, loss_sum, batches, step) if batches else b"")
                if p]
    outcome = b""
    if batches:  # a process without batches never traced the metrics: it takes the others' outcome
        try:
            outcome = json.dumps({"results": _merged_results(metrics, merge, payloads, treedef, leaves, step)})
        except EvalCombineError as error:  # raised below by every process, none left waiting
            outcome = json.dumps({"error": str(error)})
    shared = [json.loads(r) for r in distribute.allgather_bytes(outcome.encode("utf-8") if outcome else b"") if r]
    if not shared:
        return None
    if "error" in shared[0]:
        raise EvalCombineError(shared[0]["error"])
    return shared[0]["results"]


def _merged_results(metrics: Mapping[str, Any], merge: Callable[[Any, Any], Any], payloads: list[bytes],
                    treedef: Any, leaves: list[Any], step: int) -> dict[str, Any]:
    decoded = [_decode(p, treedef, leaves) for p in payloads]
    steps = sorted({d[3] for d in decoded})
    if steps != [step]:
        raise EvalCombineError(
            f"evaluate: the processes restored checkpoints of different steps {steps}; pass the same "
            "checkpoint_path to every process (a new checkpoint was written while they started).")
    merged = functools.reduce(merge, [d[0] for d in decoded])
    loss_sum = float(sum(np.float64(d[1]) for d in decoded))
    return _results(metrics, merged, loss_sum, sum(d[2] for d in decoded), step)


def _results(metrics: Mapping[str, Any], states: Any, loss_sum: float, batches: int, step: int) -> dict[str, Any]:
    results = {k: np.asarray(metrics[k].compute(s)).item() for k, s in (states or {}).items()}
    results["loss"] = loss_sum / batches
    results["global_step"] = step
    return results


def _encode(leaves: list[Any], loss_sum: Any, batches: int, step: int) -> bytes:
    buffer = io.BytesIO()
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    np.savez(buffer, loss_sum=np.float64(loss_sum), batches=np.int64(batches), step=np.int64(step), **arrays)
    return buffer.getvalue()


def _decode(payload: bytes, treedef: Any, like: list[Any]) -> tuple[Any, float, int, int]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as saved:
        leaves = [saved[f"leaf_{i}"] for i in range(sum(k.startswith("leaf_") for k in saved.files))]
        loss_sum, batches, step = float(saved["loss_sum"]), int(saved["batches"]), int(saved["step"])
    shapes = [(np.shape(x), np.asarray(x).dtype) for x in leaves]
    wanted = [(np.shape(x), np.asarray(x).dtype) for x in like]
    if shapes != wanted:
        raise EvalCombineError(
            f"evaluate: the processes' metric states differ ({shapes} vs this process's {wanted}); every "
            "process must evaluate the same model_fn, params and checkpoint.")
    return jax.tree.unflatten(treedef, leaves), loss_sum, batches, step
