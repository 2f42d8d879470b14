"""``GET /metrics``: request counts, latencies, batch sizes and queue depths."""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

WINDOW = 10_000  # the latencies kept per route (the most recent)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Metrics:
    """Thread-safe counters of the server's requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, int]] = Counter()
        self.latencies: dict[str, deque[float]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts[(route, status)] += 1
            self.latencies.setdefault(route, deque(maxlen=WINDOW)).append(seconds)

    def snapshot(
        self, batchers: Mapping[str, Any], depth: Callable[[Any], int] | None = None
    ) -> dict[str, Any]:
        """The JSON of ``/metrics``; ``batchers`` maps a name to a :class:`Batcher`."""
        with self._lock:
            requests: dict[str, dict[str, int]] = {}
            for (route, status), n in sorted(self.counts.items()):
                requests.setdefault(route, {})[str(status)] = n
            latency = {
                route: {
                    "count": len(values),
                    "p50_ms": _ms(percentile(list(values), 50)),
                    "p99_ms": _ms(percentile(list(values), 99)),
                }
                for route, values in sorted(self.latencies.items())
            }
        return {
            "requests": requests,
            "latency": latency,
            "batch_sizes": {
                name: {str(k): v for k, v in sorted(b.batch_sizes.items())}
                for name, b in batchers.items()
            },
            "queue_depth": {name: b.depth for name, b in batchers.items()},
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
