"""Latency statistics, computed the same way by infer.py --perf, the benchmark and the serving load test."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

#: timing rounds behind every figure a decision rests on: one pass, or a median of two, cannot rank variants on
#: shared machines where the same variant swings 2× between consecutive rounds
DEFAULT_ROUNDS = 3

PERCENTILES = (50, 90, 99)

#: a pause before each variant's measurement: Paddle's OpenMP workers keep spinning for about 0.2 s after a run
#: (measured by scripts/engine_interference.py: ~0.8 CPU-s/s in the first 0.25 s, then none; OpenVINO's leave the
#: CPU at once), which would take a core from the next variant's first timed runs on a 2-core machine
SETTLE_SECONDS = 0.3


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
    """Repeated measurements of one figure: the median and the range (lowest–highest) over the rounds.

    The range, not the interquartile range, decides ties: the same export timed twice in one 5-round run gave IQRs
    that missed each other by 2% on this machine pool, while its rounds' ranges met; with the default 3 rounds an
    IQR is only the middle half of three numbers."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        data = np.asarray(values, dtype=np.float64)
        if data.size == 0:
            raise ValueError("no measurements")
        return cls(float(np.median(data)), float(data.min()), float(data.max()), int(data.size))

    @property
    def width(self) -> float:
        return self.high - self.low

    def overlaps(self, other: "Spread") -> bool:
        """Whether the two ranges meet: some round of each was as fast as some round of the other, so the
        difference of the medians is within the measurement noise."""
        return self.low <= other.high and other.low <= self.high

    def as_dict(self) -> dict:
        return {"median": round(self.median, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "rounds": self.rounds}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Spread":
        """The inverse of `as_dict` (a report's figure read back; a report of an earlier version holds an
        interquartile range, q1/q3, read as the range)."""
        low, high = (data["low"], data["high"]) if "low" in data else (data["q1"], data["q3"])
        return cls(float(data["median"]), float(low), float(high), int(data["rounds"]))

    def describe(self, digits: int = 1) -> str:
        return f"{self.median:.{digits}f} (range {self.low:.{digits}f}–{self.high:.{digits}f}, {self.rounds} rounds)"

    def cell(self, digits: int = 1) -> str:
        """A report table's cell: the median and the range over the rounds."""
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def interleaved_rounds(measures: Mapping[str, Callable[[], float]], rounds: int = DEFAULT_ROUNDS) -> dict[str, Spread]:
    """Each round measures every variant once, starting one variant later each round, so that a slow phase of a
    shared machine (another tenant, a frequency drop) spreads over all variants instead of ranking them."""
    figures = interleaved_figures({name: (lambda m=m: {"value": m()}) for name, m in measures.items()}, rounds)
    return {name: found["value"] for name, found in figures.items()}


def interleaved_figures(
    measures: Mapping[str, Callable[[], Mapping[str, float]]],
    rounds: int = DEFAULT_ROUNDS,
    on_measured: Optional[Callable[[int, str, Mapping[str, float]], None]] = None,
    settle_seconds: float = 0.0,
) -> dict[str, dict[str, Spread]]:
    """`interleaved_rounds` for measurements of several figures at once (e.g. throughput and batch-1 latency):
    {variant: {figure: Spread}}. `on_measured(round, variant, figures)` is called after each measurement
    (progress lines); `settle_seconds` pauses before every measurement but the first (see SETTLE_SECONDS)."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    names = list(measures)
    values: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names) if names else 0
        for position, name in enumerate(names[shift:] + names[:shift]):
            if settle_seconds > 0 and (round_index or position):
                time.sleep(settle_seconds)
            found = measures[name]()
            for figure, value in found.items():
                values[name].setdefault(figure, []).append(float(value))
            if on_measured is not None:
                on_measured(round_index, name, found)
    return {name: {figure: Spread.of(found) for figure, found in figures.items()} for name, figures in values.items()}


def format_duration(seconds: float) -> str:
    """An estimate as a person reads it: seconds under a minute (never "0 min"), minutes under two hours, else
    hours."""
    if seconds < 59.5:
        return f"{max(seconds, 1.0):.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
