"""Extractive question answering: CMRC2018 (SQuAD-style span extraction)."""
from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.fast_tokenizer import text_ids
from ernie3.files import json_error_text, write_json_atomic
from ernie3.metrics import cmrc_scores
from ernie3.tasks.base import Encoded, RecordError, RecordLocation, Task, kind_of, text_field

#: CMRC2018's answer_start for a reference answer that is not a span of the context (193 answers of the dev set):
#: it still counts for EM/F1 but cannot be a training target
NO_SPAN = -1
#: answer_starts this many characters off are repaired (with a warning): the official files have a few (3 dev and
#: 5 trial questions, 1-2 characters off). Anything further off, or a text not in the context, is an error.
ANSWER_START_TOLERANCE = 5


@dataclass
class QAOptions:
    """Flags of run_qa.py only: how long contexts are cut into windows and how answers are decoded."""

    doc_stride: int = field(
        default=128, metadata={"help": "Tokens between the starts of consecutive windows over a long context."}
    )
    max_query_length: int = field(default=64, metadata={"help": "Questions are truncated to this many tokens."})
    n_best_size: int = field(
        default=20, metadata={"help": "Start and end candidates considered per window when decoding an answer."}
    )
    max_answer_length: int = field(default=50, metadata={"help": "Longest answer, in tokens, decoding may return."})

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value!r}")


class QATask(Task):
    task_type = "qa"
    metric_name = "f1"
    architecture_suffix = "ForQuestionAnswering"
    label_names = ("start_positions", "end_positions")
    options_class = QAOptions
    decoding_options = frozenset({"n_best_size", "max_answer_length"})
    # short windows, so that the sample contexts are cut into several as real CMRC2018 contexts are
    sample_flags = ("--max_seq_length", "64", "--doc_stride", "24", "--max_query_length", "24")
    augmentable = True
    outputs_per_token = True

    def __init__(
        self,
        name: str,
        online_dataset: tuple[str, Optional[str]],
        online_splits: Optional[Mapping[str, Optional[str]]] = None,
    ):
        super().__init__(name, (), online_dataset, online_splits)

    def model_class(self) -> Any:
        from paddlenlp.transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def model_kwargs(self) -> dict:
        return {}  # the span head has a fixed size: a start and an end logit per token

    def loss_function(self) -> Any:
        """Mean cross-entropy of the start and end positions, on (start, end) logits and labels."""
        import paddle

        class SpanLoss(paddle.nn.Layer):
            def forward(self, logits, labels):
                (start_logits, end_logits), (start_positions, end_positions) = logits, labels
                cross_entropy = paddle.nn.functional.cross_entropy
                return (cross_entropy(start_logits, start_positions) + cross_entropy(end_logits, end_positions)) / 2

        return SpanLoss()

    # -- reading --------------------------------------------------------------------------------------------------

    def read_records(self, path: str, flag: str) -> Iterator[tuple[RecordLocation, Any]]:
        """One record per question of a SQuAD-style file; its location names the question id and JSON position."""
        document = load_json_document(path, flag)
        articles = document.get("data") if isinstance(document, dict) else None
        if not isinstance(articles, list):
            raise UserError(f"{path}: expected a SQuAD-style JSON object with a 'data' list")
        seen: dict[str, str] = {}
        for i, article in enumerate(articles):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                raise UserError(f"{path}: data[{i}]: expected an object with a 'paragraphs' list")
            for j, paragraph in enumerate(paragraphs):
                where = f"data[{i}].paragraphs[{j}]"
                questions = paragraph.get("qas") if isinstance(paragraph, dict) else None
                if not isinstance(questions, list):
                    raise UserError(f"{path}: {where}: expected an object with 'context' and a 'qas' list")
                for k, qa in enumerate(questions):
                    position = f"{where}.qas[{k}]"
                    if not isinstance(qa, dict):
                        raise UserError(f"{path}: {position}: expected a question object")
                    question_id = qa.get("id")
                    location = f"question {question_id!r} ({position})" if question_id is not None else position
                    if isinstance(question_id, str) and question_id in seen:
                        raise UserError(f"{path}: {location}: duplicate question id, first used at {seen[question_id]}")
                    seen[str(question_id)] = position
                    record = {key: qa.get(key) for key in ("id", "question", "answers") if key in qa}
                    if "context" in paragraph:
                        record["context"] = paragraph["context"]
                    yield location, record

    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        question_id = record.get("id")
        if question_id is None:
            raise RecordError("missing field 'id'")
        if not isinstance(question_id, (str, int)) or isinstance(question_id, bool) or not str(question_id).strip():
            raise RecordError("field 'id' must be a non-empty string")
        question = text_field(record, "question")
        context = text_field(record, "context")
        answers: list[str] = []
        starts: list[int] = []
        if with_label:
            answers, starts = read_answers(record, context, str(question_id))
        return {"id": str(question_id), "question": question, "context": context, "answers": answers,
                "answer_starts": starts}  # fmt: skip

    def augment_example(self, example: Mapping[str, Any], augment: Callable[[str, bool], str]) -> dict:
        """The question and the context around the first answer augmented (never cut to a span: the answer stays
        whole and in its place in the new context); the answer's start is where it lands."""
        context, answers, starts = example["context"], example.get("answers") or [], example.get("answer_starts") or []
        span = next(((text, start) for text, start in zip(answers, starts) if start != NO_SPAN), None)
        question = augment(example["question"], False)
        if span is None:
            return {**example, "question": question, "context": augment(context, False)}
        text, start = span
        before, after = context[:start], context[start + len(text):]
        before = augment(before, False) if before.strip() else before
        after = augment(after, False) if after.strip() else after
        return {**example, "question": question, "context": before + text + after, "answers": [text],
                "answer_starts": [len(before)]}  # fmt: skip

    def example_from_text(self, text: Any) -> dict:
        """An example from raw input: {"question": ..., "context": ...} or a (question, context) pair."""
        if isinstance(text, Mapping):
            missing = [key for key in ("question", "context") if key not in text]
            if missing:
                raise RecordError(f"missing field '{missing[0]}'")
            question, context = text["question"], text["context"]
        elif isinstance(text, (list, tuple)) and len(text) == 2:
            question, context = text
        else:
            raise RecordError(f"expected {{'question': ..., 'context': ...}} or a (question, context) pair, not {kind_of(text)}")
        example = self.parse_record({"id": "-", "question": question, "context": context}, with_label=False)
        return {**example, "id": None}

    @property
    def input_flags(self) -> dict[str, str]:
        return {"question": "a question (repeatable)", "context": "the text that answers it (one per --question)"}

    def inputs_from_flags(self, values: Mapping[str, Sequence[str]]) -> list[Any]:
        return [{"question": question, "context": context} for question, context in super().inputs_from_flags(values)]

    def input_from_line(self, line: str) -> Any:
        """A line of an input file: a JSON object with question and context."""
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"expected a JSON object with question and context ({exc.msg})") from None

    def sample_inputs(self) -> list[Any]:
        return [dict(sample) for sample in SAMPLE_INPUTS]

    def metric_summary(self, metrics: Mapping[str, float], prefix: str = "") -> str:
        return f"EM {metrics[prefix + 'em']:.2f}, F1 {metrics[prefix + 'f1']:.2f}"

    # -- features -------------------------------------------------------------------------------------------------

    def encode(self, examples: Sequence[Mapping[str, Any]], tokenizer: Any, max_seq_length: int) -> Encoded:
        """[CLS] question [SEP] context window [SEP] features; long contexts give several overlapping windows.

        Windows start `doc_stride` tokens apart. Labelled examples get start/end positions of their first answer
        that is a span of the context, or [CLS] (0, 0) in windows that do not hold the whole answer.
        """
        options = self.option_values
        special_tokens = tokenizer.num_special_tokens_to_add(pair=True)
        if max_seq_length - special_tokens - options.max_query_length < 1:
            raise UserError(
                f"--max_seq_length {max_seq_length} leaves no room for the context after --max_query_length "
                f"{options.max_query_length} question tokens and {special_tokens} special tokens"
            )
        tokenized_contexts: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}  # questions share paragraphs
        encoded = Encoded([], [], [])
        for example_index, example in enumerate(examples):
            context = example["context"]
            if context not in tokenized_contexts:
                tokenized_contexts[context] = tokenize_with_offsets(tokenizer, context)
            context_ids, offsets = tokenized_contexts[context]
            question_ids = text_ids(tokenizer, example["question"])
            question_ids = question_ids[: options.max_query_length]
            window_length = max_seq_length - special_tokens - len(question_ids)
            windows = context_windows(len(context_ids), window_length, options.doc_stride)
            answer = answer_token_span(example, offsets) if example.get("answers") else None
            context_start = len(question_ids) + 2  # after [CLS] question [SEP]
            for (start, length), max_context in zip(windows, max_context_flags(windows)):
                window_ids = context_ids[start : start + length]
                feature = {
                    "input_ids": tokenizer.build_inputs_with_special_tokens(question_ids, window_ids),
                    "token_type_ids": tokenizer.create_token_type_ids_from_sequences(question_ids, window_ids),
                }
                if example.get("answers"):
                    inside = answer is not None and start <= answer[0] and answer[1] < start + length
                    shift = context_start - start
                    feature["start_positions"] = answer[0] + shift if inside else 0
                    feature["end_positions"] = answer[1] + shift if inside else 0
                encoded.features.append(feature)
                encoded.example_indices.append(example_index)
                encoded.alignments.append(
                    {"context_start": context_start, "offsets": offsets[start : start + length],
                     "max_context": max_context}  # fmt: skip
                )
        return encoded

    # -- outputs --------------------------------------------------------------------------------------------------

    def decode(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded, outputs: Sequence[np.ndarray]) -> list[dict]:
        """The best answer of each question over all its windows: n-best start × end candidates, scored by the sum
        of their logits, kept only where the window gives the start token its most context (as BERT's run_squad).

        Returns per question: answer text, its character span [start, end) in the context, and its probability
        among the n best candidates.
        """
        start_logits, end_logits = outputs[0], outputs[1]
        features_of: dict[int, list[int]] = defaultdict(list)
        for feature_index, example_index in enumerate(encoded.example_indices):
            features_of[example_index].append(feature_index)
        n_best, max_answer_length = self.option_values.n_best_size, self.option_values.max_answer_length
        results = []
        for example_index, example in enumerate(examples):
            candidates: list[tuple[float, int, int]] = []
            for feature_index in features_of[example_index]:
                alignment = encoded.alignments[feature_index]
                first, offsets, max_context = alignment["context_start"], alignment["offsets"], alignment["max_context"]
                starts = np.asarray(start_logits[feature_index][first : first + len(offsets)], dtype=np.float64)
                ends = np.asarray(end_logits[feature_index][first : first + len(offsets)], dtype=np.float64)
                for s in np.argsort(-starts, kind="stable")[:n_best]:
                    if not max_context[s]:
                        continue
                    for e in np.argsort(-ends, kind="stable")[:n_best]:
                        if s <= e < s + max_answer_length:
                            candidates.append((starts[s] + ends[e], offsets[s][0], offsets[e][1]))
            results.append(best_answer(example, sorted(candidates, key=lambda c: -c[0])[:n_best]))
        return results

    def score(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> dict:
        """EM and F1 (percent) exactly as the official CMRC2018 evaluation script computes them."""
        references = {example["id"]: example["answers"] for example in examples}
        predictions = {example["id"]: result["answer"] for example, result in zip(examples, results)}
        scores = cmrc_scores(references, predictions)
        return {"f1": scores["f1"], "em": scores["em"]}

    def answer(self, output: dict) -> Any:
        return output["start"], output["end"]

    def write_predictions(self, path: str, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> None:
        """The CMRC/SQuAD submission: one JSON object mapping each question id to its answer text."""
        answers = {
            (example["id"] if example.get("id") is not None else str(position)): result["answer"]
            for position, (example, result) in enumerate(zip(examples, results))
        }
        write_json_atomic(path, answers)


def load_json_document(path: str, flag: str) -> Any:
    if not os.path.isfile(path):
        raise UserError(f"{flag}: file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as handle:  # a BOM is accepted, as for every other format
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: {json_error_text(exc)}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_answers(record: Mapping[str, Any], context: str, question_id: str) -> tuple[list[str], list[int]]:
    """Answer texts and starts, from SQuAD's [{text, answer_start}] or paddlenlp's answers + answer_starts lists."""
    raw = record.get("answers")
    if raw is None:
        raise RecordError("missing field 'answers'")
    if not isinstance(raw, list) or not raw:
        raise RecordError("field 'answers' must be a non-empty list")
    if all(isinstance(answer, Mapping) for answer in raw):
        pairs = [(answer.get("text"), answer.get("answer_start")) for answer in raw]
    elif all(isinstance(answer, str) for answer in raw):
        starts = record.get("answer_starts")
        if not isinstance(starts, list) or len(starts) != len(raw):
            raise RecordError("field 'answer_starts' must list one start per answer")
        pairs = list(zip(raw, starts))
    else:
        raise RecordError("field 'answers' must hold objects with 'text' and 'answer_start'")
    texts, starts = [], []
    for number, (text, start) in enumerate(pairs, start=1):
        if not isinstance(text, str) or not text.strip():
            raise RecordError(f"answer {number}: 'text' must be a non-empty string")
        if not isinstance(start, int) or isinstance(start, bool) or start < NO_SPAN:
            raise RecordError(f"answer {number}: 'answer_start' must be a character offset (or -1), got {start!r}")
        if start != NO_SPAN:
            start = locate_answer(context, text, start, number, question_id)
        texts.append(text)
        starts.append(start)
    return texts, starts


def locate_answer(context: str, text: str, start: int, number: int, question_id: str) -> int:
    """The answer's start: answer_start itself, or the nearest occurrence of the text a few characters away."""
    for shift in sorted(range(-ANSWER_START_TOLERANCE, ANSWER_START_TOLERANCE + 1), key=abs):
        position = start + shift
        if position >= 0 and context[position : position + len(text)] == text:
            if shift:
                from paddlenlp.utils.log import logger

                logger.warning(
                    f"question {question_id!r}: answer {number} {text!r} is at {position}, not at its "
                    f"answer_start={start}; using {position}"
                )
            return position
    found = context.find(text)
    where = f"it occurs at {found}" if found >= 0 else "it does not occur in the context"
    raise RecordError(f"answer {number} {text!r} is not at answer_start={start} ({where})")


def tokenize_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of a text and each token's [start, end) character span in it."""
    ids = text_ids(tokenizer, text)
    offsets = tokenizer.get_offset_mapping(text)
    if len(offsets) != len(ids):
        raise RuntimeError(f"the tokenizer gave {len(ids)} tokens but {len(offsets)} offsets for {text[:40]!r}")
    return ids, [(int(s), int(e)) for s, e in offsets]


def context_windows(num_tokens: int, window_length: int, stride: int) -> list[tuple[int, int]]:
    """(first token, length) of windows of at most `window_length` tokens starting `stride` tokens apart."""
    windows = []
    start = 0
    while True:
        length = min(window_length, num_tokens - start)
        windows.append((start, length))
        if start + length >= num_tokens:
            return windows
        start += min(stride, window_length)


def max_context_flags(windows: Sequence[tuple[int, int]]) -> list[list[bool]]:
    """Per window and token: is this the window where the token has the most context on both sides?

    BERT's _check_is_max_context: score = min(tokens left, tokens right) + 0.01 × window length; first best wins.
    """
    best: dict[int, tuple[float, int]] = {}
    for index, (start, length) in enumerate(windows):
        for token in range(start, start + length):
            score = min(token - start, start + length - 1 - token) + 0.01 * length
            if token not in best or score > best[token][0]:
                best[token] = (score, index)
    return [[best[t][1] == index for t in range(start, start + length)] for index, (start, length) in enumerate(windows)]


def answer_token_span(example: Mapping[str, Any], offsets: Sequence[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """First and last context token of the example's first answer that is a span; None if there is none."""
    for text, start in zip(example["answers"], example["answer_starts"]):
        if start == NO_SPAN:
            continue
        end = start + len(text)
        covering = [index for index, (s, e) in enumerate(offsets) if s < end and e > start]
        if covering:
            return covering[0], covering[-1]
    return None


def best_answer(example: Mapping[str, Any], candidates: Sequence[tuple[float, int, int]]) -> dict:
    """The top candidate as text and character span, with its probability among the candidates."""
    if not candidates:
        return {"id": example.get("id"), "answer": "", "start": 0, "end": 0, "score": 0.0}
    scores = np.array([score for score, _, _ in candidates])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    context = example["context"]
    _, start, end = candidates[0]
    # offsets of [UNK] tokens can run over the whitespace that follows them
    text = context[start:end]
    start += len(text) - len(text.lstrip())
    end -= len(text) - len(text.rstrip())
    return {"id": example.get("id"), "answer": context[start:end], "start": start, "end": end,
            "score": float(probabilities[0])}  # fmt: skip


# paddlenlp's cmrc2018 has train, dev and trial splits, and no test split.
# Raw inputs the load test sends by default: made-up CMRC-like questions.
SAMPLE_INPUTS = (
    {"question": "张三在哪里工作？", "context": "张三毕业于复旦大学，现在在北京大学工作，主要研究自然语言处理。"},
    {"question": "长江流经哪些省份？", "context": "长江发源于青藏高原，流经青海、西藏、四川、云南、重庆、湖北、"
                                             "湖南、江西、安徽、江苏和上海，最后注入东海。"},
)  # fmt: skip

TASKS = (QATask("cmrc2018", ("cmrc2018", None), online_splits={"test": None}),)
