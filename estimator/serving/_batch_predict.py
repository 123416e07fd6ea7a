"""One device call for many requests: merge their columns, convert once, predict, split.

Each request's values were only layout-checked on arrival (``gather_columns``); dtypes
and shapes are checked here for the merged batch in one numpy conversion per feature.
If that fails, each request is converted alone so only the bad ones get the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimator._predictor import Predictor, PredictorInputError, convert_columns

Observer = Callable[[int], None]


def _merge(names: list[str], columns: list[dict[str, Any]]) -> dict[str, list]:
    merged: dict[str, list] = {n: [] for n in names}
    for col in columns:
        for n in names:
            merged[n].extend(col[n])
    return merged


def batch_predictor(predictor: Predictor, on_batch: Observer | None = None) -> Callable[[list], list]:
    """Returns ``run(items) -> results`` for a Batcher; items are ``(columns, size)`` pairs."""
    inputs = predictor.inputs
    names = list(inputs)

    def run(items: list[tuple[dict[str, Any], int]]) -> list:
        try:
            merged = items[0][0] if len(items) == 1 else _merge(names, [c for c, _ in items])
            arrays = convert_columns(inputs, merged)
            results: list[Any] = [None] * len(items)
        except PredictorInputError as e:
            if len(items) == 1:
                return [e]
            results = [_try_convert(inputs, c) for c, _ in items]
            good = [r for r in results if not isinstance(r, Exception)]
            if not good:
                return results
            arrays = {n: np.concatenate([g[n] for g in good]) for n in names}
        todo = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        if on_batch is not None:
            on_batch(sum(items[i][1] for i in todo))
        outputs = predictor.predict_columns(arrays)
        start = 0
        for i in todo:
            n = items[i][1]
            results[i] = {k: v[start : start + n] for k, v in outputs.items()}
            start += n
        return results

    return run


def _try_convert(inputs: dict, columns: dict) -> dict[str, np.ndarray] | Exception:
    try:
        return convert_columns(inputs, columns)
    except PredictorInputError as e:
        return e
