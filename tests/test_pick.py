"""Decisions with error bars (issue 19): repeated interleaved measurements and one pick rule where a difference
within the noise is a tie, broken by the metric, then by size."""
import itertools

import pytest

from ernie3.pick import pick_candidate, tie_note, within_drop
from ernie3.timing import Spread, interleaved_rounds


def test_spread_is_median_and_interquartile_range():
    spread = Spread.of([10.0, 30.0, 20.0, 40.0, 50.0])
    assert (spread.median, spread.q1, spread.q3, spread.rounds) == (30.0, 20.0, 40.0, 5)
    assert spread.iqr == 20.0 and "30.0 (IQR 20.0–40.0, 5 rounds)" == spread.describe()
    assert spread.overlaps(Spread.of([30.0, 50.0, 60.0])) and not spread.overlaps(Spread.of([42.0, 50.0, 60.0]))
    with pytest.raises(ValueError):
        Spread.of([])


def test_rounds_interleave_variants_and_rotate_their_order():
    calls = []
    counter = itertools.count()

    def measure(name):
        def run():
            calls.append(name)
            return next(counter)
        return run

    spreads = interleaved_rounds({name: measure(name) for name in "abc"}, rounds=3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(spread.rounds == 3 for spread in spreads.values())
    with pytest.raises(ValueError):
        interleaved_rounds({"a": lambda: 1.0}, rounds=0)


def row(name, metric, size, speeds):
    return {"name": name, "metric": metric, "size_mb": size, "speed": Spread.of(speeds)}


def test_within_noise_is_a_tie_broken_by_metric_then_size():
    float_row = row("float", 0.80, 100.0, [100, 102, 98])
    noisy_faster = row("int8-a", 0.79, 40.0, [100, 124, 140])  # overlaps the fastest below
    fastest = row("int8-b", 0.795, 30.0, [125, 120, 128])
    too_inaccurate = row("int8-c", 0.70, 10.0, [300, 310, 305])
    rows = [float_row, noisy_faster, fastest, too_inaccurate]
    picked, tied = pick_candidate(rows, 0.02, lambda r: r["speed"], objective_higher_is_better=True)
    assert picked["name"] == "int8-b" and tied == ["int8-a"]  # better metric wins the tie
    assert "tied on throughput with int8-a" in tie_note(picked, tied, "throughput")
    same_metric = [float_row, row("a", 0.79, 40.0, [100, 124, 140]), row("b", 0.79, 30.0, [125, 120, 128])]
    picked, _ = pick_candidate(same_metric, 0.02, lambda r: r["speed"], True)
    assert picked["name"] == "b"  # same metric: the smaller model
    picked, tied = pick_candidate(rows, 0.02, lambda r: r["size_mb"], objective_higher_is_better=False)
    assert picked["name"] == "int8-b" and tied == []  # exact figures (size) tie only when equal


def test_metric_direction_is_honoured():
    rows = [{"name": "float", "metric": 1.0}, {"name": "worse", "metric": 1.05}, {"name": "better", "metric": 0.9}]
    assert [r["name"] for r in within_drop(rows, 0.01, higher_is_better=False)] == ["float", "better"]
    assert [r["name"] for r in within_drop(rows, 0.01)] == ["float", "worse"]
