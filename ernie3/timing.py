"""Latency statistics, computed the same way by infer.py --perf, the benchmark and the serving load test."""
from __future__ import annotations

from typing import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_percentiles(seconds: Sequence[float], percentiles: Sequence[int] = PERCENTILES, prefix: str = "latency_") -> dict[str, float]:
    """{"latency_p50_ms": ..., ...} of per-call wall times given in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {f"{prefix}p{q}_ms": float(np.percentile(values, q)) for q in percentiles}
