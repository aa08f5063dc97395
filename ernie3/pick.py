"""The one rule that picks a candidate (compress's best/, the pipeline's deploy pick): among the candidates within
the metric drop of the reference, the best by the objective's median; candidates whose spread overlaps the best's
are a tie (a difference within the measurement noise decides nothing), broken by the metric, then by size."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from ernie3.errors import UserError
from ernie3.lightweight import OBJECTIVES, peak_rss_of
from ernie3.timing import Spread

#: a candidate's figure for the objective: a Spread of repeated measurements, or an exact number (size on disk)
Objective = Callable[[dict], "Spread | float"]


def as_spread(value: "Spread | float") -> Spread:
    return value if isinstance(value, Spread) else Spread(float(value), float(value), float(value), 1)


def is_within_drop(metric: float, reference: float, max_metric_drop: float, higher_is_better: bool = True) -> bool:
    """Whether `metric` is at most `max_metric_drop` (relative) worse than `reference`, in the metric's direction
    (a lower-is-better metric, e.g. a loss or an error rate, may rise by that much)."""
    if higher_is_better:
        floor = reference * (1 - max_metric_drop) if reference >= 0 else reference * (1 + max_metric_drop)
        return metric >= floor - 1e-12
    ceiling = reference * (1 + max_metric_drop) if reference >= 0 else reference * (1 - max_metric_drop)
    return metric <= ceiling + 1e-12


def within_drop(results: Sequence[dict], max_metric_drop: float, higher_is_better: bool = True) -> list[dict]:
    """Candidates whose metric is within `max_metric_drop` (relative) of the reference (the first result)."""
    reference = results[0]["metric"]
    return [r for r in results if is_within_drop(r["metric"], reference, max_metric_drop, higher_is_better)]


def pick_candidate(
    results: Sequence[dict],
    max_metric_drop: float,
    objective: Objective,
    objective_higher_is_better: bool,
    metric_higher_is_better: bool = True,
) -> tuple[dict, list[str]]:
    """(the pick, the names of the candidates it tied with: within noise of the best by the objective)."""
    eligible = within_drop(results, max_metric_drop, metric_higher_is_better)
    spreads = [as_spread(objective(r)) for r in eligible]
    sign = 1.0 if objective_higher_is_better else -1.0
    best_index = max(range(len(eligible)), key=lambda i: sign * spreads[i].median)
    tied = [i for i in range(len(eligible)) if spreads[i].overlaps(spreads[best_index])]
    metric_sign = 1.0 if metric_higher_is_better else -1.0
    picked = max(tied, key=lambda i: (metric_sign * eligible[i]["metric"], -eligible[i].get("size_mb", 0.0),
                                       sign * spreads[i].median))  # fmt: skip
    return eligible[picked], [eligible[i]["name"] for i in tied if i != picked]


#: how a report names each objective's figure
OBJECTIVE_FIGURES = {"throughput": "throughput", "latency": "batch-1 latency", "size": "size on disk",
                     "memory": "predictor peak RSS"}  # fmt: skip


def figure(result: dict, key: str) -> "Spread | float":
    """A result's measured figure: its spread over the timing rounds (`<key>_spread`) where it has one, else the
    single number under `key`."""
    spread = result.get(f"{key}_spread")
    return Spread.from_dict(spread) if spread else float(result[key])


def objective(optimize_for: str, throughput_key: str = "throughput", latency_key: str = "latency_ms") -> tuple[Objective, bool]:
    """(a candidate's figure for --optimize_for, whether higher is better). Compress's results name their figures
    throughput / latency_ms; the pipeline's benchmark rows pass their own keys."""
    if optimize_for not in OBJECTIVES:
        raise UserError(f"--optimize_for: '{optimize_for}' is not one of {', '.join(OBJECTIVES)}")
    return {
        "throughput": (lambda r: figure(r, throughput_key), True),
        "latency": (lambda r: figure(r, latency_key), False),
        "size": (lambda r: float(r["size_mb"]), False),
        "memory": (lambda r: float(peak_rss_of(r)), False),
    }[optimize_for]


def pick_best(
    results: Sequence[dict],
    max_metric_drop: float,
    optimize_for: str = "throughput",
    metric_higher_is_better: bool = True,
    throughput_key: str = "throughput",
    latency_key: str = "latency_ms",
) -> tuple[dict, list[str]]:
    """The one pick rule of compress's best/ and the pipeline's deploy pick: (the pick, the names it tied with).
    The reference (first result) is the pick when no candidate is within the drop (a NaN metric)."""
    key, higher = objective(optimize_for, throughput_key, latency_key)
    if not within_drop(results, max_metric_drop, metric_higher_is_better):
        return results[0], []
    return pick_candidate(results, max_metric_drop, key, higher, metric_higher_is_better)


def tie_note(picked: dict, tied_with: Sequence[str], what: str) -> Optional[str]:
    """One sentence for the report when the pick was a tie on `what` (e.g. "throughput")."""
    if not tied_with:
        return None
    return (f"{picked['name']} tied on {what} with {', '.join(tied_with)} (their ranges over the timing rounds overlap); "
            "the tie went to the better metric, then the smaller model")  # fmt: skip
