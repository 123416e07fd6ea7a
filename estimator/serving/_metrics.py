"""Request counts, latency and batch-size histograms in Prometheus' text format.

Hand-written (a few counters) rather than prometheus_client: one fewer dependency for
the serving extra, and nothing here needs its registry or multiprocess support.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PREFIX = "jax_estimator_serving"
APIS = ("predict", "classify", "regress", "metadata", "status", "other")  # the only api label values


class _Histogram:
    def __init__(self, buckets: tuple):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def render(self, name: str, labels: str) -> list[str]:
        lines, total = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            total += count
            lines.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {total}')
        lines += [f"{name}_sum{{{labels}}} {self.sum}", f"{name}_count{{{labels}}} {total}"]
        return lines


class Metrics:
    """Thread-safe counters for one model server; ``render()`` gives the /metrics page."""

    def __init__(self, model_name: str):
        self.model_name = model_name
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = defaultdict(int)
        self._latency: dict[str, _Histogram] = {}
        self._batches = _Histogram(BATCH_BUCKETS)
        self.version = 0

    def observe_request(self, api: str, status: int, seconds: float) -> None:
        """Counts one request to ``api`` answered with ``status`` after ``seconds``.

        Label values are bounded: an ``api`` outside :data:`APIS` counts as ``other`` and a
        status outside 100..599 as 0, so no client can grow the page with made-up paths.
        """
        api = api if api in APIS else "other"
        status = status if 100 <= status <= 599 else 0
        with self._lock:
            self._requests[(api, status)] += 1
            hist = self._latency.get(api)
            if hist is None:
                hist = self._latency[api] = _Histogram(LATENCY_BUCKETS)
            hist.observe(seconds)

    def observe_batch(self, rows: int) -> None:
        """Counts one device call over ``rows`` examples."""
        with self._lock:
            self._batches.observe(rows)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        m = f'model="{self.model_name}"'
        lines = [f"# TYPE {PREFIX}_requests_total counter"]
        with self._lock:
            for (api, status), n in sorted(self._requests.items()):
                lines.append(f'{PREFIX}_requests_total{{{m},api="{api}",status="{status}"}} {n}')
            lines.append(f"# TYPE {PREFIX}_request_latency_seconds histogram")
            for api, hist in sorted(self._latency.items()):
                lines += hist.render(f"{PREFIX}_request_latency_seconds", f'{m},api="{api}"')
            lines.append(f"# TYPE {PREFIX}_batch_size histogram")
            lines += self._batches.render(f"{PREFIX}_batch_size", m)
            lines += [f"# TYPE {PREFIX}_model_version gauge", f"{PREFIX}_model_version{{{m}}} {self.version}"]
        return "\n".join(lines) + "\n"
