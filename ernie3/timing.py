"""Latency statistics, computed the same way by infer.py --perf, the benchmark and the serving load test."""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_percentiles(seconds: Sequence[float], percentiles: Sequence[int] = PERCENTILES, prefix: str = "latency_") -> dict[str, float]:
    """{"latency_p50_ms": ..., ...} of per-call wall times given in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {f"{prefix}p{q}_ms": float(np.percentile(values, q)) for q in percentiles}


def measure_predictor(predictor: Any, examples: list, first_pass_seconds: float) -> dict:
    """Timed passes after the first (warm-up) one: the model alone per batch, then end to end."""
    encoded = predictor.task.encode(examples, predictor.tokenizer, predictor.max_seq_length)
    latencies = []
    for batch in predictor.batches(encoded.features):
        tick = time.perf_counter()
        predictor.backend.run(batch)
        latencies.append(time.perf_counter() - tick)
    model_seconds = sum(latencies)
    started = time.perf_counter()
    predictor.predict(examples)  # tokenization + model + post-processing
    end_to_end = time.perf_counter() - started
    return {
        "throughput": len(examples) / end_to_end,
        "model_throughput": len(encoded.features) / model_seconds,
        **latency_percentiles(latencies),
        "warmup_seconds": first_pass_seconds,
    }
