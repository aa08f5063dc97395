"""Long-text classification: every windowable classification task (`Task.windowable`: the CLUE classification
tasks, and any task type that says how its texts are windowed), with texts longer than --max_seq_length read whole.

`<name>_long` (iflytek_long, csl_long, ...) reads the same files, labels and raw inputs as `<name>` (it delegates
all of that, the head, loss and metric to the wrapped task); it differs in two steps only:
- encode: the text the task's `window_texts` names is cut into overlapping windows whose starts are `--doc_stride`
  tokens apart; each window is one feature with the example's label (training uses every window). A text the task
  keeps whole (CSL's keywords) is in every window.
- decode: the windows' logits are pooled per example (`--pooling mean|max`) and decoded by the wrapped task's
  `postprocess` (softmax for seq_cls, whatever the task's head needs otherwise).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from ernie3.errors import UserError
from ernie3.fast_tokenizer import text_ids
from ernie3.tasks.base import Encoded, RecordLocation, Task

POOLINGS = ("mean", "max")


@dataclass
class LongTextOptions:
    """Flags of the long-text classification tasks only: how texts are cut into windows and their logits pooled."""

    doc_stride: int = field(
        default=64,
        metadata={"help": "Tokens between the starts of consecutive windows over a long text; below the window "
                          "length (max_seq_length minus the special tokens), so that windows overlap."},
    )  # fmt: skip
    pooling: str = field(
        default="mean",
        metadata={"help": "How the windows' logits become one prediction per text: mean (every window counts "
                          "alike) or max (the most confident window decides each label's score)."},
    )  # fmt: skip
    max_windows_per_text: int = field(
        default=16,
        metadata={"help": "At most this many windows per text (its first ones; the rest of the text is ignored, as "
                          "truncation ignores it): bounds the work one huge text can cause in serving."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("doc_stride", "max_windows_per_text"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")


def combined_options(base_class: Optional[type]) -> type:
    """The window options, plus the wrapped task's own options (e.g. a decoding threshold) when it has some."""
    if base_class is None:
        return LongTextOptions

    def __post_init__(self: Any) -> None:
        LongTextOptions.__post_init__(self)
        if hasattr(base_class, "__post_init__"):
            base_class.__post_init__(self)

    return dataclasses.make_dataclass(f"Long{base_class.__name__}", [], bases=(LongTextOptions, base_class),
                                      namespace={"__post_init__": __post_init__})  # fmt: skip


def long_task_type(task_type: str) -> str:
    """The task_type of the long-text variant of a `task_type` task (what GET /models reports for `<name>_long`)."""
    return f"long_{task_type}"


class LongTextTask(Task):
    """A windowable classification task whose long texts are read window by window, the windows' logits pooled."""

    task_type = "long_seq_cls"
    metric_name = "accuracy"
    architecture_suffix = "ForSequenceClassification"
    options_class = LongTextOptions

    def __init__(self, base: Task, name: Optional[str] = None):
        if not base.windowable:
            raise ValueError(f"{base.name} does not say how its texts are windowed (Task.windowable)")
        # set before Task.__init__, which builds the option values from options_class
        self.options_class = combined_options(base.options_class)
        super().__init__(name or f"{base.name}_long", base.labels, base.online_dataset, base.online_splits)
        if base.option_values is not None:  # the wrapped task's option values, not only its class defaults
            self.option_values = dataclasses.replace(self.option_values, **base.options)
        #: the task whose file formats, labels, raw inputs, head, metric and outputs this one shares
        self.base = base
        self.task_type = long_task_type(base.task_type)
        self.metric_name, self.higher_is_better = base.metric_name, base.higher_is_better
        self.architecture_suffix, self.label_names = base.architecture_suffix, base.label_names
        self.decoding_options = frozenset({"pooling"}) | base.decoding_options

    # -- options --------------------------------------------------------------------------------------------------

    def config_sections(self) -> tuple[str, ...]:
        """The wrapped task's recipe (learning rate, epochs, max_seq_length), then the window settings."""
        return (self.base.task_type, self.base.name, self.task_type, self.name)

    # -- everything but windows and pooling is the wrapped task's -------------------------------------------------

    def reads_models_of(self, task_name: str) -> bool:
        """A model fine-tuned on truncated texts (`<name>`) has the same labels and head: it can be read in windows."""
        return task_name in (self.name, self.base.name)

    @property
    def pair(self) -> bool:
        """For seq_cls tasks: whether every input is two texts (CSL, AFQMC, NLI) or one (IFLYTEK, TNEWS, WSC)."""
        return bool(getattr(self.base, "pair", False))

    def decoder(self) -> Task:
        """The wrapped task with this task's values of its options (e.g. a decoding threshold set at deployment)."""
        if self.base.option_values is None:
            return self.base
        return self.base.with_options(**{name: self.options[name] for name in self.base.options})

    def model_kwargs(self) -> dict:
        return self.base.model_kwargs()

    def loss_function(self) -> Any:
        return self.base.loss_function()

    def data_collator(self, tokenizer: Any) -> Any:
        return self.base.data_collator(tokenizer)

    def metric_summary(self, metrics: Mapping[str, float], prefix: str = "") -> str:
        return self.base.metric_summary(metrics, prefix)

    @property
    def input_flags(self) -> dict[str, str]:
        return self.base.input_flags

    def inputs_from_flags(self, values: Mapping[str, Sequence[str]]) -> list[Any]:
        return self.base.inputs_from_flags(values)

    def input_from_line(self, line: str) -> Any:
        return self.base.input_from_line(line)

    def sample_inputs(self) -> list[Any]:
        return self.base.sample_inputs()

    def read_records(self, path: str, flag: str) -> Iterator[tuple[RecordLocation, Any]]:
        return self.base.read_records(path, flag)

    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        return self.base.parse_record(record, with_label)

    def example_from_text(self, text: Any) -> dict:
        return self.base.example_from_text(text)

    def model_class(self) -> Any:
        return self.base.model_class()

    def score(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> dict:
        return self.base.score(examples, results)

    def postprocess(self, logits: np.ndarray) -> list[dict]:
        return self.decoder().postprocess(logits)

    def prediction_record(self, position: int, example: Mapping[str, Any], result: Mapping[str, Any]) -> dict:
        return self.base.prediction_record(position, example, result)

    def answer(self, output: dict) -> Any:
        return self.base.answer(output)

    # -- windows --------------------------------------------------------------------------------------------------

    def encode(self, examples: Sequence[Mapping[str, Any]], tokenizer: Any, max_seq_length: int) -> Encoded:
        """[CLS] window [SEP] features ([CLS] kept text [SEP] window [SEP] where the task keeps a text whole, as
        CSL its keywords); a text that fits gives exactly the feature its task gives, a longer one a window every
        `doc_stride` tokens."""
        encoded = Encoded([], [], [])
        stride, max_windows = self.option_values.doc_stride, self.option_values.max_windows_per_text
        for example_index, example in enumerate(examples):
            kept, windowed_text = self.base.window_texts(example)
            specials = tokenizer.num_special_tokens_to_add(pair=kept is not None)
            room = max_seq_length - specials  # tokens of text a feature holds
            if stride >= room:
                raise UserError(
                    f"--doc_stride {stride} must be smaller than the {room} text tokens of a window "
                    f"(--max_seq_length {max_seq_length} minus {specials} special tokens), so that consecutive windows overlap"
                )
            # the kept text stays whole, but never takes more than half of a window
            first = token_ids(tokenizer, kept)[: room // 2] if kept is not None else None
            windowed = token_ids(tokenizer, windowed_text)
            window_length = room - (len(first) if first is not None else 0)
            for start, length in text_windows(len(windowed), window_length, stride, max_windows):
                piece = windowed[start : start + length]
                ids = (first, piece) if first is not None else (piece,)
                feature = {
                    "input_ids": tokenizer.build_inputs_with_special_tokens(*ids),
                    "token_type_ids": tokenizer.create_token_type_ids_from_sequences(*ids),
                }
                if example.get("label") is not None:
                    feature["labels"] = example["label"]
                encoded.features.append(feature)
                encoded.example_indices.append(example_index)
                encoded.alignments.append({"window_start": start, "window_tokens": length})
        return encoded

    # -- pooling --------------------------------------------------------------------------------------------------

    def decode(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded, outputs: Sequence[np.ndarray]) -> list[dict]:
        """One prediction per text from its windows' pooled logits: label, probability (softmax of the pooled
        logits), label description where the task has them, and how many windows the text was read in."""
        pooled, counts = pool_logits(outputs[0], encoded.example_indices, len(examples), self.option_values.pooling)
        return [{**result, "windows": count} for result, count in zip(self.postprocess(pooled), counts)]


def token_ids(tokenizer: Any, text: str) -> list[int]:
    return text_ids(tokenizer, text)


def text_windows(num_tokens: int, window_length: int, stride: int, max_windows: int) -> list[tuple[int, int]]:
    """(first token, length) of at most `max_windows` windows of up to `window_length` tokens, `stride` tokens
    apart (at most a window apart, so that no token is skipped) until one reaches the text's end; a text that fits
    (or is empty) is one window. Beyond `max_windows`, the rest of the text is not read."""
    stride = min(stride, window_length)
    windows = [(0, min(window_length, num_tokens))]
    while windows[-1][0] + windows[-1][1] < num_tokens and len(windows) < max_windows:
        start = windows[-1][0] + stride
        windows.append((start, min(window_length, num_tokens - start)))
    return windows


def pool_logits(
    logits: np.ndarray, example_indices: Sequence[int], num_examples: int, pooling: str
) -> tuple[np.ndarray, list[int]]:
    """Per example, the mean or element-wise max of its features' logits, and how many features it had."""
    logits = np.asarray(logits, dtype=np.float64)
    indices = np.asarray(example_indices, dtype=np.int64)
    counts = np.bincount(indices, minlength=num_examples)
    if len(counts) != num_examples or not counts.all():
        raise RuntimeError(f"features map to {len(counts)} examples, not to each of {num_examples}")
    if pooling == "mean":
        pooled = np.zeros((num_examples, logits.shape[-1]))
        np.add.at(pooled, indices, logits)
        pooled /= counts[:, None]
    else:
        pooled = np.full((num_examples, logits.shape[-1]), -np.inf)
        np.maximum.at(pooled, indices, logits)
    return pooled, counts.tolist()


def derived_tasks(tasks: Mapping[str, Task]) -> tuple[Task, ...]:
    """`<name>_long` for every windowable task the registry holds (those of ERNIE3_TASK_MODULES included)."""
    return tuple(LongTextTask(task) for task in tasks.values() if task.windowable)
