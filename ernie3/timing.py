"""Latency statistics, computed the same way by infer.py --perf, the benchmark and the serving load test."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: timing rounds behind every figure a decision rests on: one pass, or a median of two, cannot rank variants on
#: shared machines where the same variant swings 2× between consecutive rounds
DEFAULT_ROUNDS = 3

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


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: median and interquartile range over the rounds."""

    median: float
    q1: float
    q3: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        data = np.asarray(values, dtype=np.float64)
        if data.size == 0:
            raise ValueError("no measurements")
        q1, median, q3 = np.percentile(data, [25, 50, 75])
        return cls(float(median), float(q1), float(q3), int(data.size))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def overlaps(self, other: "Spread") -> bool:
        """Whether the two interquartile ranges meet: the difference is within the measurement noise."""
        return self.q1 <= other.q3 and other.q1 <= self.q3

    def as_dict(self) -> dict:
        return {"median": round(self.median, 4), "q1": round(self.q1, 4), "q3": round(self.q3, 4), "rounds": self.rounds}

    def describe(self, digits: int = 1) -> str:
        return f"{self.median:.{digits}f} (IQR {self.q1:.{digits}f}–{self.q3:.{digits}f}, {self.rounds} rounds)"


def interleaved_rounds(measures: Mapping[str, Callable[[], float]], rounds: int = DEFAULT_ROUNDS) -> dict[str, Spread]:
    """Each round measures every variant once, starting one variant later each round, so that a slow phase of a
    shared machine (another tenant, a frequency drop) spreads over all variants instead of ranking them."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    names = list(measures)
    values: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            values[name].append(float(measures[name]()))
    return {name: Spread.of(found) for name, found in values.items()}
