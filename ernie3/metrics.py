"""Task metrics: entity-level chunk F1 for tagging, and the official CMRC2018 EM/F1 for reading comprehension."""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping, Sequence


def per_class_markdown(title: str, rows: Sequence[Mapping[str, object]]) -> str:
    """A per-class precision/recall/F1 table (Task.class_report rows) as Markdown."""
    named = any("name" in row for row in rows)
    header = "| class |" + (" name |" if named else "") + " precision | recall | F1 | support |"
    lines = [f"# {title}", "", header, "|---|" + ("---|" if named else "") + "---|---|---|---|"]
    for row in rows:
        name = f" {row.get('name', '')} |" if named else ""
        lines.append(f"| {row['class']} |{name} {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
                     f"{row['support']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Chunk (entity) precision / recall / F1, as paddlenlp's ChunkEvaluator and seqeval compute them
# ---------------------------------------------------------------------------------------------------------------


def tag_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of each entity in a BIO tag sequence, `end` exclusive.

    seqeval's rules, as ChunkEvaluator uses them: an I- tag that does not continue an entity of its type starts a
    new one, and B- always starts a new one, so adjacent entities of the same type stay separate.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


def chunk_scores(gold_tags: Iterable[Sequence[str]], predicted_tags: Iterable[Sequence[str]]) -> dict:
    """Micro-averaged entity precision, recall and F1 over sentences (ChunkEvaluator.accumulate's formulas)."""
    from paddlenlp.metrics.chunk import extract_tp_actual_correct

    gold = [list(tags) for tags in gold_tags]
    predicted = [list(tags) for tags in predicted_tags]
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tag sequences differ in number or length")
    predicted_count, correct_count, gold_count = (
        int(counts.sum()) for counts in extract_tp_actual_correct(gold, predicted, False)
    )
    precision = correct_count / predicted_count if predicted_count else 0.0
    recall = correct_count / gold_count if gold_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if correct_count else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# ---------------------------------------------------------------------------------------------------------------
# CMRC2018: the official evaluation script (cmrc2018_evaluate.py, ymcui/cmrc2018), in Python 3
# ---------------------------------------------------------------------------------------------------------------

# The script's punctuation list, kept verbatim: "……" is two characters, so a lone "…" is never removed.
CMRC_PUNCTUATION = (
    "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
    "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
    "「", "」", "（", "）", "－", "～", "『", "』",
)  # fmt: skip
_CHINESE_CHAR = re.compile("[\u4e00-\u9fa5]")


def english_word_tokens(text: str) -> list[str]:
    """Words of a run of non-Chinese text, split by nltk.word_tokenize as the official script does.

    `preserve_line=True` skips Punkt's sentence split, which needs a data download; CMRC answers are short spans, so
    the only runs that could differ are English runs holding several sentences.
    """
    from nltk import word_tokenize

    return word_tokenize(text, preserve_line=True)


def mixed_segmentation(text: str, remove_punctuation_marks: bool = False) -> list[str]:
    """Each Chinese character is a segment; runs of other characters are split into words."""
    segments: list[str] = []
    pending = ""
    for char in str(text).lower().strip():
        if remove_punctuation_marks and char in CMRC_PUNCTUATION:
            continue
        if _CHINESE_CHAR.search(char) or char in CMRC_PUNCTUATION:
            if pending:
                segments.extend(english_word_tokens(pending))
                pending = ""
            segments.append(char)
        else:
            pending += char
    if pending:
        segments.extend(english_word_tokens(pending))
    return segments


def remove_punctuation(text: str) -> str:
    return "".join(char for char in str(text).lower().strip() if char not in CMRC_PUNCTUATION)


def longest_common_substring_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest run of segments the two sequences share (the script's find_lcs)."""
    longest = 0
    previous = [0] * (len(second) + 1)
    for item in first:
        current = [0] * (len(second) + 1)
        for j, other in enumerate(second):
            if item == other:
                current[j + 1] = previous[j] + 1
                longest = max(longest, current[j + 1])
        previous = current
    return longest


def cmrc_f1(answers: Sequence[str], prediction: str) -> float:
    """Best F1 (0..1) of the prediction against any reference answer, over mixed segments without punctuation."""
    prediction_segments = mixed_segmentation(prediction, remove_punctuation_marks=True)
    scores = []
    for answer in answers:
        answer_segments = mixed_segmentation(answer, remove_punctuation_marks=True)
        common = longest_common_substring_length(answer_segments, prediction_segments)
        if common == 0:
            scores.append(0.0)
            continue
        precision = common / len(prediction_segments)
        recall = common / len(answer_segments)
        scores.append(2 * precision * recall / (precision + recall))
    return max(scores, default=0.0)


def cmrc_em(answers: Sequence[str], prediction: str) -> int:
    """1 if the prediction equals any reference answer once punctuation is removed, else 0."""
    cleaned = remove_punctuation(prediction)
    return int(any(remove_punctuation(answer) == cleaned for answer in answers))


def cmrc_scores(references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict:
    """EM and F1 in percent over all questions; a question without a prediction scores 0 (as in the script)."""
    f1 = em = 0.0
    missing = 0
    for question_id, answers in references.items():
        if question_id not in predictions:
            missing += 1
            continue
        f1 += cmrc_f1(answers, predictions[question_id])
        em += cmrc_em(answers, predictions[question_id])
    total = len(references)
    return {
        "f1": 100.0 * f1 / total if total else 0.0,
        "em": 100.0 * em / total if total else 0.0,
        "total": total,
        "skipped": missing,
    }


def paired_difference(score: Callable[[list, list], Mapping[str, float]], metric: str, examples: Sequence,
                      results_a: Sequence, results_b: Sequence, resamples: int = 1000, seed: int = 0) -> dict:
    """The metric of two models on the same examples, their difference (a − b) and its 95% paired bootstrap
    interval (scipy.stats.bootstrap over the examples, percentile method): whether a difference exceeds what
    the choice of examples alone would make of it. `score(examples, results)` is the task's score."""
    import numpy as np
    from scipy.stats import bootstrap

    examples, results_a, results_b = list(examples), list(results_a), list(results_b)

    def metric_of(results: list, indices: np.ndarray) -> float:
        return float(score([examples[i] for i in indices], [results[i] for i in indices])[metric])

    def difference(indices: np.ndarray) -> float:
        indices = np.asarray(indices, dtype=np.int64)
        return metric_of(results_a, indices) - metric_of(results_b, indices)

    everything = np.arange(len(examples))
    observed = difference(everything)
    interval = bootstrap((everything,), difference, vectorized=False, n_resamples=resamples, method="percentile",
                         confidence_level=0.95, random_state=np.random.default_rng(seed)).confidence_interval  # fmt: skip
    return {"a": metric_of(results_a, everything), "b": metric_of(results_b, everything), "difference": observed,
            "ci95": [float(interval.low), float(interval.high)], "resamples": resamples,
            "beyond_noise": bool(interval.low > 0 or interval.high < 0)}  # fmt: skip
