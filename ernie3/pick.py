"""The one rule that picks a candidate (compress's best/, the pipeline's deploy pick): among the candidates within
the metric drop of the reference, the best by the objective's median; candidates whose spread overlaps the best's
are a tie (a difference within the measurement noise decides nothing), broken by the metric, then by size."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from ernie3.timing import Spread

#: a candidate's figure for the objective: a Spread of repeated measurements, or an exact number (size on disk)
Objective = Callable[[dict], "Spread | float"]


def as_spread(value: "Spread | float") -> Spread:
    return value if isinstance(value, Spread) else Spread(float(value), float(value), float(value), 1)


def within_drop(results: Sequence[dict], max_metric_drop: float, higher_is_better: bool = True) -> list[dict]:
    """Candidates whose metric is within `max_metric_drop` (relative) of the reference (the first result)."""
    reference = results[0]["metric"]
    if higher_is_better:
        floor = reference * (1 - max_metric_drop) if reference >= 0 else reference * (1 + max_metric_drop)
        return [r for r in results if r["metric"] >= floor - 1e-12]
    ceiling = reference * (1 + max_metric_drop) if reference >= 0 else reference * (1 - max_metric_drop)
    return [r for r in results if r["metric"] <= ceiling + 1e-12]


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


def tie_note(picked: dict, tied_with: Sequence[str], what: str) -> Optional[str]:
    """One sentence for the report when the pick was a tie on `what` (e.g. "throughput")."""
    if not tied_with:
        return None
    return (f"{picked['name']} tied on {what} with {', '.join(tied_with)} (their interquartile ranges overlap); "
            "the tie went to the better metric, then the smaller model")  # fmt: skip
