"""One device call for many requests: merge their columns, prepare once, predict, split.

Each request's values were only layout-checked on arrival (``estimator.export.rest_columns``); their
types, ranges and feature-column values (vocabularies, identity ranges) are checked by
``Predictor.prepare``, once for the merged batch. If that rejects the batch, every
request is prepared alone, so only the bad ones get the error and the others are
predicted together as if nothing happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimator.export import Predictor, PredictorInputError

Observer = Callable[[int], None]


def _merge(names: list[str], columns: list[dict[str, Any]]) -> dict[str, list]:
    merged: dict[str, list] = {n: [] for n in names}
    for col in columns:
        for n in names:
            merged[n].extend(col[n])
    return merged


def batch_predictor(predictor: Predictor, on_batch: Observer | None = None) -> Callable[[list], list]:
    """Returns ``run(items) -> results`` for a Batcher; items are ``(columns, size)`` pairs."""
    names = list(predictor.inputs)

    def run(items: list[tuple[dict[str, Any], int]]) -> list:
        try:
            merged = items[0][0] if len(items) == 1 else _merge(names, [c for c, _ in items])
            features = predictor.prepare(merged)
            results: list[Any] = [None] * len(items)
        except PredictorInputError as e:
            if len(items) == 1:
                return [e]
            results = [_try_prepare(predictor, c) for c, _ in items]
            good = [r for r in results if not isinstance(r, Exception)]
            if not good:
                return results
            features = {k: np.concatenate([g[k] for g in good]) for k in good[0]}
        todo = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        if on_batch is not None:
            on_batch(sum(items[i][1] for i in todo))
        outputs = predictor.run(features)
        start = 0
        for i in todo:
            n = items[i][1]
            results[i] = {k: v[start : start + n] for k, v in outputs.items()}
            start += n
        return results

    return run


def _try_prepare(predictor: Predictor, columns: dict) -> dict[str, np.ndarray] | Exception:
    try:
        return predictor.prepare(columns)
    except PredictorInputError as e:
        return e
