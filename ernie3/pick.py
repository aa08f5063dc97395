"""The one rule that picks a candidate (compress's best/, the pipeline's deploy pick): among the candidates within
the metric drop of the reference, the best by the objective's median; candidates whose spread overlaps the best's
are a tie (a difference within the measurement noise decides nothing). A speed tie goes to the better metric, then
the smaller model. Footprints (size on disk, predictor peak RSS) are single numbers that tie within
FOOTPRINT_TIE_SHARE of each other; such a tie goes to the smaller other footprint (a size tie to the lower peak RSS,
a memory tie to the smaller model), then the better metric."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from ernie3.errors import UserError
from ernie3.lightweight import OBJECTIVES, peak_rss_of
from ernie3.timing import Spread

#: a candidate's figure for the objective: a Spread of repeated measurements, or an exact number (size on disk)
Objective = Callable[[dict], "Spread | float"]


#: footprints within this share of each other are a tie: 6.31 vs 6.39 MB on disk is no difference a deployment
#: feels, while the two predictors' peak RSS differed 3× (843 vs 290 MB, Paddle vs OpenVINO nano on real TNEWS)
FOOTPRINT_TIE_SHARE = 0.05


def as_spread(value: "Spread | float") -> Spread:
    return value if isinstance(value, Spread) else Spread(float(value), float(value), float(value), 1)


def footprint(value: float) -> Spread:
    """A footprint as a spread ±FOOTPRINT_TIE_SHARE/2 around it: two footprints tie within that share."""
    half = FOOTPRINT_TIE_SHARE / 2 * float(value)
    return Spread(float(value), float(value) - half, float(value) + half, 1)


def known_peak_rss(result: dict) -> float:
    """The measured peak RSS, else the memory plan's estimate, else infinity (a row with neither ranks last)."""
    for key in ("peak_rss_mb", "expected_peak_rss_mb"):
        if result.get(key) is not None:
            return float(result[key])
    return float("inf")


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
    tie_break: Optional[Callable[[dict], tuple]] = None,
) -> tuple[dict, list[str]]:
    """(the pick, the names of the candidates it tied with: within noise of the best by the objective). A tie goes
    to the largest `tie_break` key (default: the better metric, then the smaller model), then the objective."""
    eligible = within_drop(results, max_metric_drop, metric_higher_is_better)
    spreads = [as_spread(objective(r)) for r in eligible]
    sign = 1.0 if objective_higher_is_better else -1.0
    best_index = max(range(len(eligible)), key=lambda i: sign * spreads[i].median)
    tied = [i for i in range(len(eligible)) if spreads[i].overlaps(spreads[best_index])]
    metric_sign = 1.0 if metric_higher_is_better else -1.0
    if tie_break is None:
        tie_break = lambda r: (metric_sign * r["metric"], -r.get("size_mb", 0.0))  # noqa: E731
    picked = max(tied, key=lambda i: (*tie_break(eligible[i]), sign * spreads[i].median))
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
        "size": (lambda r: footprint(r["size_mb"]), False),
        "memory": (lambda r: footprint(peak_rss_of(r)), False),
    }[optimize_for]


def tie_break_for(optimize_for: str, metric_higher_is_better: bool = True) -> Callable[[dict], tuple]:
    """How a tie on `optimize_for` is broken (larger key wins): a footprint tie by the other footprint, then the
    metric; a speed tie by the metric, then the size."""
    metric_sign = 1.0 if metric_higher_is_better else -1.0
    if optimize_for == "size":
        return lambda r: (-known_peak_rss(r), metric_sign * r["metric"])
    if optimize_for == "memory":
        return lambda r: (-float(r["size_mb"]), metric_sign * r["metric"])
    return lambda r: (metric_sign * r["metric"], -r.get("size_mb", 0.0))


#: how a tie note says what broke the tie
TIE_BREAKS = {"size": "the lower predictor peak RSS, then the better metric",
              "memory": "the smaller model, then the better metric"}  # fmt: skip


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
    return pick_candidate(results, max_metric_drop, key, higher, metric_higher_is_better,
                          tie_break_for(optimize_for, metric_higher_is_better))  # fmt: skip


def tie_note(picked: dict, tied_with: Sequence[str], what: str, optimize_for: str = "throughput") -> Optional[str]:
    """One sentence for the report when the pick was a tie on `what` (e.g. "throughput")."""
    if not tied_with:
        return None
    if optimize_for in TIE_BREAKS:
        return (f"{picked['name']} tied on {what} with {', '.join(tied_with)} (within {FOOTPRINT_TIE_SHARE:.0%} of "
                f"each other); the tie went to {TIE_BREAKS[optimize_for]}")  # fmt: skip
    return (f"{picked['name']} tied on {what} with {', '.join(tied_with)} (their ranges over the timing rounds overlap); "
            "the tie went to the better metric, then the smaller model")  # fmt: skip
