"""What every task definition provides, whatever its type."""
from __future__ import annotations

import abc
import copy
import dataclasses
import math
import os
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ernie3.errors import UserError
from ernie3.files import read_json_lines, write_json_lines_atomic

#: the label (and padded output) value the loss and metrics skip: paddlenlp's and the Trainer's padding convention
IGNORE_INDEX = -100

#: where a record sits in its file: a line number, or a description such as a SQuAD question's id and position
RecordLocation = Union[int, str]


class RecordError(ValueError):
    """A record that does not fit the task's format; the message names the field."""


def kind_of(value: Any) -> str:
    """What a raw input is, in JSON's words: messages say what was given, not only what was expected."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        if len(value) == 2:
            kinds = [kind_of(item) for item in value]
            return "a pair" if kinds == ["a string"] * 2 else f"a pair of {kinds[0]} and {kinds[1]}"
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


#: characters that show nothing: format characters (zero-width space and joiners, BOM, direction marks, soft hyphen)
#: and controls, besides the fillers Unicode classes as letters or symbols
INVISIBLE_CATEGORIES = ("Cf", "Cc")
INVISIBLE_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """Nothing a model could read: only white space and invisible characters."""
    return all(c.isspace() or unicodedata.category(c) in INVISIBLE_CATEGORIES or c in INVISIBLE_FILLERS for c in text)


def check_text(text: str, what: str) -> str:
    """A text the tokenizer can take: not blank (an invisible-only text is as empty as a whitespace-only one), and
    valid Unicode (JSON can carry lone surrogates such as \\ud800)."""
    if is_blank(text):
        raise RecordError(f"{what} is empty")
    for position, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise RecordError(f"{what} holds a lone UTF-16 surrogate (\\u{ord(char):04x}) at character {position}, "
                              "which is not valid Unicode text")  # fmt: skip
    return text


def map_texts(raw_input: Any, change: Callable[[str], str]) -> Any:
    """A raw input (a text, a pair, a {question, context} object) with `change` applied to each of its strings, in
    the same shape: how warm-up and load tests make inputs of any task type."""
    if isinstance(raw_input, str):
        return change(raw_input)
    if isinstance(raw_input, (list, tuple)):
        return [map_texts(item, change) for item in raw_input]
    if isinstance(raw_input, dict):
        return {key: map_texts(item, change) for key, item in raw_input.items()}
    return raw_input


def text_field(record: Mapping[str, Any], key: str) -> str:
    """A required, non-empty string field of a raw record."""
    if key not in record:
        raise RecordError(f"missing field '{key}'")
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}")
    return check_text(value, f"field '{key}'")


@dataclass
class Encoded:
    """Model features of a list of examples, and what maps each feature back to its example.

    One example gives one feature, except in tasks that cut long inputs into windows (QA).
    """

    #: per feature: model inputs and, for labelled examples, training targets; exactly what the collator gets
    features: list[dict]
    #: per feature: index of the example it came from, in example order
    example_indices: list[int]
    #: per feature: what decoding needs besides the model outputs (token → character alignment); may be empty
    alignments: list[dict]


def output_list(predictions: Any) -> list[np.ndarray]:
    """The Trainer's or a predictor's outputs as a list, one array per model output (rows = features)."""
    if isinstance(predictions, (tuple, list)):
        return [np.asarray(p) for p in predictions]
    return [np.asarray(predictions)]


def soft_kl(student_logits: Any, teacher_logits: Any, temperature: float, mask: Any = None) -> Any:
    """KL(teacher ‖ student) of the softmax over the last axis at `temperature`, × temperature², averaged over the
    rows (all leading axes) where `mask` (the leading axes' shape) is true."""
    import paddle
    import paddle.nn.functional as F

    log_student = F.log_softmax(student_logits / temperature, axis=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, axis=-1)
    per_row = (log_teacher.exp() * (log_teacher - log_student)).sum(axis=-1) * temperature**2
    if mask is None:
        return per_row.mean()
    weight = mask.astype(per_row.dtype)
    return (per_row * weight).sum() / paddle.clip(weight.sum(), min=1.0)


class Task(abc.ABC):
    """A task: how raw records become examples and features, its labels, its metric, its outputs.

    The same methods serve training (Trainer) and deployment (Predictor):
    examples → `encode` → features → model → outputs → `decode` → per-example results → `score` / files.

    The contract every task type keeps (the commands rely on it, none of them checks it):
    - `score` works on any non-empty list of examples, a single one included: accuracy-controlled NNCF
      quantization scores every dev example on its own to rank layers.
    - `metric_name` is a key of `score`'s (and `compute_metrics`') result; `higher_is_better` says its direction,
      which the best-checkpoint pick (the Trainer's `greater_is_better`) and compression's and the pipeline's
      candidate picks (the maximum metric drop) honour; NNCF's accuracy control assumes higher-is-better, so
      compress builds no accuracy-controlled candidate for the other direction.
    - `online_dataset` None: the task has no online copy; commands then ask for --train_file/--dev_file.
    - options (`options_class`) are recorded with exported models; those in `decoding_options` change only how
      outputs are decoded, so deployment (infer.py and the deploy predictors' --task_option, serving's per-model
      `task_options`) may set them without re-exporting.
    - a task type whose records and examples the shared tests and the demo can run ships samples (`sample_dir`:
      train/dev, and test where it has one) and says the flags a tiny model trains on them with (`sample_flags`).

    A task type is one module with a module-level `TASKS` tuple: in this package (found by itself), or anywhere
    else when named in the ERNIE3_TASK_MODULES environment variable (module names or .py files, separated by
    os.pathsep), as the test suite adds its test-only task types.
    """

    task_type: ClassVar[str]
    #: batch keys that hold the gold answers (what the loss and metric compare against)
    label_names: ClassVar[tuple[str, ...]] = ("labels",)
    #: class-name ending of a model fine-tuned for this task type, as in config.json "architectures"
    architecture_suffix: ClassVar[str]
    #: key of `compute_metrics`' result that picks the best checkpoint (in the direction `higher_is_better` says)
    metric_name: ClassVar[str]
    #: dataclass of the task type's own options (e.g. QA's window stride), each one a command-line flag of the
    #: training, compress and pipeline commands; their values are the task's `options`, recorded with its models
    options_class: ClassVar[Optional[type]] = None
    #: the options that change only how outputs are decoded (not the features): deployment may set them
    decoding_options: ClassVar[frozenset[str]] = frozenset()
    #: whether a larger `metric_name` is better (it picks best checkpoints and compressed candidates)
    higher_is_better: ClassVar[bool] = True
    #: training flags a tiny model needs on the shipped samples (e.g. QA's short windows), for the shared tests
    sample_flags: ClassVar[tuple[str, ...]] = ()
    #: whether `<name>_long` can read this task's texts in windows: then `window_texts` says how an example's text
    #: is cut, an example's `label` is every window's training target, and `postprocess` turns one row of (pooled)
    #: logits per example into its result
    windowable: ClassVar[bool] = False
    #: whether `augment_example` makes new inputs for distillation (compress --distill_augment)
    augmentable: ClassVar[bool] = False
    #: whether the model's outputs have a value per input token (tags, span starts and ends) rather than per input
    outputs_per_token: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        labels: tuple[str, ...],
        online_dataset: Optional[tuple[str, Optional[str]]],
        online_splits: Optional[Mapping[str, Optional[str]]] = None,
    ):
        self.name = name
        self.labels = labels
        # positional arguments of paddlenlp.datasets.load_dataset; None: no online copy (local files only)
        self.online_dataset = online_dataset
        # our split name → the online dataset's split name (None: it has no such split)
        self.online_splits = dict(online_splits or {})
        #: this task's option values (an `options_class` instance), None for tasks without options
        self.option_values: Any = self.options_class() if self.options_class is not None else None

    def reads_models_of(self, task_name: str) -> bool:
        """Whether a model fine-tuned for `task_name` can be evaluated, compressed or trained further as this task
        (same inputs, labels and head); by default only its own."""
        return task_name == self.name

    def online_split(self, split: str) -> Optional[str]:
        return self.online_splits.get(split, split)

    def sample_dir(self) -> str:
        """Where this task's shipped samples are (train/dev/test files in the task's format), if it has any."""
        from ernie3.data import SAMPLES_DIR

        return os.path.join(SAMPLES_DIR, self.name)

    def config_sections(self) -> tuple[str, ...]:
        """config.yml sections that hold this task's defaults, later ones winning (after `common`)."""
        return (self.task_type, self.name)

    # -- raw input (deploy, infer.py's prediction mode, serving, clients) ---------------------------------------

    @property
    def input_flags(self) -> dict[str, str]:
        """Command-line flags that give raw inputs, one value per input (repeatable): {flag: help}. The deploy
        predictors and the serving clients offer every task's flags and let the task read its own."""
        return {"text": "an input text (repeatable)"}

    def inputs_from_flags(self, values: Mapping[str, Sequence[str]]) -> list[Any]:
        """Raw inputs, in the serving API's shape, from the repeatable `input_flags` ({flag: values})."""
        given = [flag for flag in self.input_flags if values.get(flag)]
        foreign = [flag for flag, items in values.items() if items and flag not in self.input_flags]
        if foreign:
            raise RecordError(f"--{foreign[0]} does not apply to {self.name} (its inputs: "
                              f"{', '.join('--' + flag for flag in self.input_flags)})")  # fmt: skip
        if not given:
            return []
        counts = {flag: len(values.get(flag) or []) for flag in self.input_flags}
        if len(set(counts.values())) != 1:
            shown = ", ".join(f"{count} --{flag}" for flag, count in counts.items())
            raise RecordError(f"{self.name} takes one value of each input flag per input, got {shown}")
        columns = [list(values[flag]) for flag in self.input_flags]
        return [row[0] if len(row) == 1 else list(row) for row in zip(*columns)]

    def input_from_line(self, line: str) -> Any:
        """A raw input from one line of a plain input file (deploy --input_file): the line is the text."""
        return line

    def sample_inputs(self) -> list[Any]:
        """A few raw inputs in the serving API's shape: the load test's default traffic and the service's warm-up."""
        return []

    def metric_summary(self, metrics: Mapping[str, float], prefix: str = "") -> str:
        """The task's metrics in one line, e.g. "accuracy 0.8123"; `prefix` as the Trainer adds it ("eval_")."""
        return f"{self.metric_name} {metrics[prefix + self.metric_name]:.4f}"

    @property
    def options(self) -> dict:
        """Task settings that change features or decoding (e.g. QA window stride); recorded with exported models."""
        return dataclasses.asdict(self.option_values) if self.option_values is not None else {}

    def with_options(self, **options: Any) -> "Task":
        """This task with other option values (checked by the options class); tasks without options accept none."""
        if self.option_values is None:
            if options:
                raise ValueError(f"task {self.name} takes no options (got {', '.join(options)})")
            return self
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"unknown {self.task_type} options: {', '.join(sorted(unknown))}")
        changed = copy.copy(self)
        changed.option_values = dataclasses.replace(self.option_values, **options)
        return changed

    def with_decoding_options(self, values: Mapping[str, Any]) -> "Task":
        """This task with decoding options set at deployment ({name: value}; strings from the command line are
        converted to the option's type); options that shape features, unknown names and bad values are one-line
        errors."""
        if not values:
            return self
        current = self.options
        changed: dict[str, Any] = {}
        for name, value in values.items():
            if name not in self.decoding_options:
                if name in current:
                    raise UserError(f"task option '{name}' of {self.name} shapes the model's features, not only its "
                                    "decoding: it is fixed when the model is exported (export again to change it)")  # fmt: skip
                known = ", ".join(sorted(self.decoding_options)) or "none"
                raise UserError(f"unknown task option '{name}' for {self.name} (its decoding options: {known})")
            changed[name] = option_value(name, value, current[name])
        try:
            return self.with_options(**changed)
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad task option for {self.name}: {exc}") from None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self, label: Any, field: str = "label") -> int:
        """Index of a label in the task definition's label list; unknown labels are an error."""
        text = str(label)
        try:
            return self.labels.index(text)
        except ValueError:
            shown = ", ".join(self.labels) if len(self.labels) <= 20 else f"{len(self.labels)} labels"
            raise RecordError(f"unknown label '{text}' in field '{field}' (task {self.name}: {shown})") from None

    def read_records(self, path: str, flag: str) -> Iterator[tuple[RecordLocation, Any]]:
        """(location, raw record) pairs of a local file; JSON lines unless the task's format differs."""
        return read_json_lines(path, flag)

    @abc.abstractmethod
    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        """Validate one raw record and turn it into an example; None drops the record (e.g. unlabeled NLI rows)."""

    @abc.abstractmethod
    def example_from_text(self, text: Any) -> dict:
        """An example from raw predictor input (a string, a pair, a question and context, ...)."""

    def convert_example(self, example: Mapping[str, Any], tokenizer: Any, max_seq_length: int) -> dict:
        """The model features of one example, for tasks where each example gives exactly one feature."""
        raise NotImplementedError(f"{type(self).__name__} encodes whole lists of examples; use encode()")

    def encode(self, examples: Sequence[Mapping[str, Any]], tokenizer: Any, max_seq_length: int) -> Encoded:
        """Model features of `examples`; by default one feature per example through `convert_example`."""
        features = [self.convert_example(example, tokenizer, max_seq_length) for example in examples]
        return Encoded(features, list(range(len(features))), [{} for _ in features])

    def data_collator(self, tokenizer: Any) -> Any:
        """Pads a list of features into a batch for the Trainer."""
        from paddlenlp.data import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    @abc.abstractmethod
    def decode(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded, outputs: Sequence[np.ndarray]) -> list[dict]:
        """Per-example results from the model outputs; `outputs[k][i]` is output k of feature i (maybe padded)."""

    @abc.abstractmethod
    def score(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> dict:
        """The task's metrics for decoded results against the examples' gold labels; defined for any non-empty
        list, one example included (accuracy-controlled NNCF scores each dev example on its own)."""

    def metrics_function(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded) -> Callable[[Any], dict]:
        """The Trainer's `compute_metrics` for one dev set: decode every feature's outputs, then score the examples.

        The Trainer evaluates features in dataset order, so row i of its predictions is feature i.
        """

        def compute_metrics(eval_prediction: Any) -> dict:
            outputs = output_list(eval_prediction.predictions)
            if len(outputs[0]) != len(encoded.features):
                raise RuntimeError(f"got outputs for {len(outputs[0])} features, expected {len(encoded.features)}")
            return self.score(examples, self.decode(examples, encoded, outputs))

        return compute_metrics

    def prediction_record(self, position: int, example: Mapping[str, Any], result: Mapping[str, Any]) -> dict:
        """One line of the --do_predict output file."""
        return {"id": example.get("id") if example.get("id") is not None else position, **result}

    def write_predictions(self, path: str, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> None:
        """The --do_predict output: JSON lines, one per example, unless the task's submission format differs."""
        records = (self.prediction_record(position, e, r) for position, (e, r) in enumerate(zip(examples, results)))
        write_json_lines_atomic(path, records)

    def model_class(self) -> Any:
        """The paddlenlp Auto class whose `from_pretrained` builds this task's model."""
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        """Extra `from_pretrained` arguments: the size and label names of a fresh output head."""
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: index for index, label in enumerate(self.labels)},
        }

    def input_spec(self) -> list:
        """Inputs of the exported static model: batch × sequence token ids and segment ids."""
        from paddle.static import InputSpec

        return [
            InputSpec(shape=[None, None], dtype="int64", name="input_ids"),
            InputSpec(shape=[None, None], dtype="int64", name="token_type_ids"),
        ]

    def loss_function(self) -> Any:
        """Loss on the model's outputs, as paddlenlp's compression (head importance, distillation) needs it."""
        import paddle

        return paddle.nn.CrossEntropyLoss()

    def class_report(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> Optional[list[dict]]:
        """Per-class precision, recall, F1 and support of decoded results against gold labels, one row per class
        ({"class", "precision", "recall", "f1", "support"}, optionally "name"); None for tasks without classes."""
        return None

    def distillation_loss(self, student_outputs: Sequence[Any], teacher_outputs: Sequence[Any], batch: Mapping[str, Any],
                          temperature: float) -> Any:
        """Loss that makes the student's outputs match the teacher's (compress --strategy distill).

        `student_outputs` / `teacher_outputs`: the model outputs as tensors, in the model's order (classification
        logits; QA start and end logits); `batch`: the training batch (inputs and labels). The default suits a head
        read through a softmax over the last axis: KL(teacher ‖ student) of the temperature-softened
        distributions, × temperature² (Hinton et al.), averaged over the outputs. A task whose head is read
        otherwise overrides it, e.g. a sigmoid multi-label head:
        `F.binary_cross_entropy_with_logits(student / T, F.sigmoid(teacher / T)) * T * T`.
        """
        losses = [soft_kl(s, t, temperature) for s, t in zip(student_outputs, teacher_outputs)]
        return sum(losses) / len(losses)

    def augment_example(self, example: Mapping[str, Any], augment: Callable[[str, bool], str]) -> dict:
        """For `augmentable` tasks: a new example from a train example, each of its texts passed through
        `augment(text, spannable)` (spannable: whether the text may be cut to a span of its words). Its gold labels
        are placeholders of the right shape (the label loss skips augmented rows); what the task's
        `distillation_loss` reads from the batch besides the outputs (e.g. which tokens carry a tag) must be right."""
        raise NotImplementedError(f"{self.name} does not say how its examples are augmented")

    def window_texts(self, example: Mapping[str, Any]) -> tuple[Optional[str], str]:
        """For `windowable` tasks: (a text every window keeps whole, or None; the text cut into windows)."""
        raise NotImplementedError(f"{self.name} does not say how its texts are windowed")

    def postprocess(self, logits: np.ndarray) -> list[dict]:
        """For `windowable` tasks: one result per row of logits (one row per example)."""
        raise NotImplementedError(f"{self.name} does not decode pooled logits")

    @abc.abstractmethod
    def answer(self, output: dict) -> Any:
        """The answer in one result (a label, an entity list, an answer text) without its scores: what agreement
        between two models (float vs INT8, Paddle vs ONNX) compares."""

    def describe(self) -> dict:
        """What an exported model records about its task, so later stages can check they got the right one."""
        info = {"task_name": self.name, "task_type": self.task_type, "labels": list(self.labels)}
        if self.options:
            info["options"] = dict(self.options)
        return info


def option_value(name: str, value: Any, current: Any) -> Any:
    """A decoding option's value in the type of its current value: given as a string (command line) or as typed
    YAML; the options class then checks its range."""
    kind = type(current)
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return text.lower() in ("true", "1", "yes")
            converted = kind(text)
        except ValueError:
            raise UserError(f"task option '{name}' takes {kind.__name__} values, got {value!r}") from None
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        converted = float(value)
    elif type(value) is kind:
        converted = value
    else:
        raise UserError(f"task option '{name}' takes {kind.__name__} values, got {value!r}")
    if isinstance(converted, float) and not math.isfinite(converted):
        raise UserError(f"task option '{name}' must be a finite number, got {value!r}")
    return converted
