"""Task distillation into a smaller ERNIE 3.0 student (compress --strategy distill, distill+ptq, ...).

The teacher is the fine-tuned model being compressed. The student is a pretrained model (a local directory or a hub
name such as ernie-3.0-nano-zh, with the teacher's vocabulary) or a shape (--student_size nano, or --student_layers
--student_hidden ...) initialised from the teacher the way PaddleNLP's ERNIE 3.0 Tiny / PP-MiniLM / TinyBERT recipes
do: every k-th teacher layer, its attention heads and FFN neurons in DynaBERT's importance order (the most important
kept), the first `hidden` dimensions of every hidden-sized axis (embeddings included).

Training goes through the project's Trainer (checkpoints, resume, best checkpoint by the dev metric) with the task's
own `distillation_loss` on the outputs, optionally plus hidden-state MSE (a learnt projection when the widths
differ) and the task's label loss. With --distill_baseline the same student is also fine-tuned on the labels alone,
so the report can show what distillation bought.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ernie3.errors import UserError
from ernie3.export import export_inference_model, write_task_info
from ernie3.layout import DISTILL_CHECKPOINTS_DIR, STUDENT_BASELINE_DIR, STUDENT_DIR
from ernie3.tasks import Task

#: ERNIE 3.0 light-weight sizes (layers, hidden, heads); the FFN is 4 × hidden (STACK.md)
STUDENT_SIZES = {"mini": (6, 384, 12), "micro": (4, 384, 12), "nano": (4, 312, 12)}
#: above this every softened distribution is uniform to float32 and the T² factor only risks overflow
MAX_TEMPERATURE = 100.0
#: training batches whose label-loss gradients rank the teacher's heads and neurons (DynaBERT's importance)
IMPORTANCE_BATCHES = 32
#: the sub-layer that maps student hidden states to the teacher's width while distilling (dropped before saving)
PROJECTION_NAME = "distill_projection"
#: what a distillation checkpoint dir records, so that a resumed run continues the same distillation
SETTINGS_FILE = "ernie3_distill.json"
#: a feature key of the distillation's train set: the row of the teacher-output cache that holds its outputs
TEACHER_ROW_KEY = "distill_teacher_row"
#: the cached teacher's logit at positions beyond a feature's own tokens (a batch pads to its longest feature):
#: no probability there, as the model's attention mask makes of padding
PADDING_LOGIT = -1e4
#: features per pass of the teacher-output cache (a progress step; sorted by length, so each pass pads little)
CACHE_CHUNK = 512
#: augmented copies per train example: beyond this the augmented set only repeats itself (and fills memory)
MAX_AUGMENT_COPIES = 100
AUGMENT_RATES = ("distill_augment_replace", "distill_augment_span", "distill_augment_mask")


@dataclass
class DistillationArguments:
    student_model: Optional[str] = field(
        default=None,
        metadata={"help": "Student for --strategy distill*: a model directory or hub name (ernie-3.0-nano-zh, "
                          "ernie-3.0-tiny-micro-v2-zh) with the teacher's vocabulary. Or give a shape instead."},
    )  # fmt: skip
    student_size: Optional[str] = field(
        default=None,
        metadata={"help": "Student shape by ERNIE 3.0 size: mini (6L-384H), micro (4L-384H), nano (4L-312H), "
                          "12 heads, FFN 4×hidden; initialised from the teacher. --student_* flags override parts."},
    )  # fmt: skip
    student_layers: Optional[int] = field(default=None, metadata={"help": "Student layers (default: the teacher's)."})
    student_hidden: Optional[int] = field(default=None, metadata={"help": "Student hidden size (default: teacher's)."})
    student_heads: Optional[int] = field(default=None, metadata={"help": "Student attention heads (default: teacher's)."})
    student_intermediate: Optional[int] = field(
        default=None, metadata={"help": "Student FFN size (default: the teacher's FFN/hidden ratio × student hidden)."}
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the output distillation."})
    distill_hidden_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the hidden-state MSE (embeddings and mapped layers; a learnt projection when "
                          "the widths differ); 0 = outputs only."},
    )  # fmt: skip
    distill_label_weight: float = field(
        default=0.0, metadata={"help": "Weight of the task's label loss on the train examples (0 = none)."}
    )
    distill_augment: int = field(
        default=0,
        metadata={"help": "Augmented copies of each train example that the teacher labels for the distillation "
                          "(ERNIE Slim's data distillation: same-POS word replacement, span sampling, [UNK] masking); "
                          "0 = the train examples alone. The labels-only baseline never sees them."},
    )  # fmt: skip
    distill_augment_replace: float = field(
        default=0.1, metadata={"help": "--distill_augment: chance that a word becomes another word of its POS."}
    )
    distill_augment_span: float = field(
        default=0.25, metadata={"help": "--distill_augment: chance that a text becomes a random span of its words."}
    )
    distill_augment_mask: float = field(
        default=0.1, metadata={"help": "--distill_augment: chance that a text token becomes [UNK]."}
    )
    distill_baseline: bool = field(
        default=False,
        metadata={"help": "Also fine-tune the same student on the labels alone and report it beside the distilled one."},
    )  # fmt: skip

    @property
    def shape_flags(self) -> dict[str, Optional[int]]:
        return {"student_layers": self.student_layers, "student_hidden": self.student_hidden,
                "student_heads": self.student_heads, "student_intermediate": self.student_intermediate}  # fmt: skip


@dataclass
class StudentShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int

    def describe(self) -> str:
        return f"{self.layers}L-{self.hidden}H-{self.heads}heads-{self.intermediate}FFN"


def teacher_shape(config: Any) -> StudentShape:
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    return StudentShape(get("num_hidden_layers"), get("hidden_size"), get("num_attention_heads"), get("intermediate_size"))


def check_distillation_settings(strategy: str, dargs: DistillationArguments) -> None:
    """Flags that contradict each other or can only fail, before any work."""
    distilling = "distill" in strategy.split("+")
    given = [name for name, value in (("student_model", dargs.student_model), ("student_size", dargs.student_size),
                                      *dargs.shape_flags.items()) if value is not None]  # fmt: skip
    if not distilling:
        if given or dargs.distill_baseline:
            flag = given[0] if given else "distill_baseline"
            raise UserError(f"--{flag} applies to --strategy distill (or distill+ptq, ...), not {strategy}")
        return
    if not given:
        raise UserError("--strategy distill needs a student: --student_model DIR_OR_NAME, --student_size "
                        f"{'|'.join(STUDENT_SIZES)}, or --student_layers/--student_hidden (+ --student_heads)")  # fmt: skip
    if dargs.student_model is not None and len(given) > 1:
        raise UserError(f"--student_model takes its shape from the model; drop --{given[1]}")
    if dargs.student_size is not None and dargs.student_size not in STUDENT_SIZES:
        raise UserError(f"--student_size: unknown size '{dargs.student_size}' (choose from: {', '.join(STUDENT_SIZES)})")
    for name, value in dargs.shape_flags.items():
        if value is not None and value < 1:
            raise UserError(f"--{name} must be a positive integer, got {value}")
    temperature = dargs.distill_temperature
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and 0 < temperature <= MAX_TEMPERATURE):
        raise UserError(f"--distill_temperature must be in (0, {MAX_TEMPERATURE:g}], got {temperature}")
    for name in ("distill_hidden_weight", "distill_label_weight"):
        value = getattr(dargs, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UserError(f"--{name} must be a finite number >= 0, got {value}")
    if not 0 <= dargs.distill_augment <= MAX_AUGMENT_COPIES:
        raise UserError(f"--distill_augment takes 0 to {MAX_AUGMENT_COPIES} copies per train example, "
                        f"got {dargs.distill_augment}")  # fmt: skip
    for name in AUGMENT_RATES:
        value = getattr(dargs, name)
        if not (isinstance(value, (int, float)) and 0 <= value <= 1):  # NaN fails too
            raise UserError(f"--{name} is a probability between 0 and 1, got {value}")
    if dargs.distill_augment and not any(getattr(dargs, name) for name in AUGMENT_RATES):
        raise UserError("--distill_augment: every augmentation rate is 0, so no copy could differ from its example "
                        f"(set one of {', '.join('--' + name for name in AUGMENT_RATES)})")  # fmt: skip


def check_augmentation(task: Task, dargs: DistillationArguments) -> None:
    """Whether the task can augment its examples when --distill_augment asks for it (before any work)."""
    if dargs.distill_augment and not task.augmentable:
        raise UserError(f"--distill_augment: task {task.name} ({task.task_type}) does not say how its examples are "
                        "augmented; distil it with --distill_augment 0")  # fmt: skip


def requested_shape(teacher: StudentShape, dargs: DistillationArguments) -> StudentShape:
    """The student shape the flags ask for, checked against the teacher (never wider or deeper)."""
    layers, hidden, heads = STUDENT_SIZES[dargs.student_size] if dargs.student_size else (None, None, None)
    intermediate = 4 * hidden if hidden else None
    layers = dargs.student_layers or layers or teacher.layers
    heads = dargs.student_heads or heads or teacher.heads
    hidden = dargs.student_hidden or hidden or teacher.hidden
    if dargs.student_intermediate:
        intermediate = dargs.student_intermediate
    elif dargs.student_hidden or not intermediate:
        intermediate = teacher.intermediate * hidden // teacher.hidden
    if hidden % heads:
        raise UserError(f"student hidden size {hidden} is not divisible by its {heads} attention heads "
                        f"({hidden / heads:g} per head); pick --student_heads that divides --student_hidden")  # fmt: skip
    shape = StudentShape(layers, hidden, heads, intermediate)
    check_not_larger(shape, teacher, f"the student ({shape.describe()})")
    return shape


def check_not_larger(student: StudentShape, teacher: StudentShape, what: str) -> None:
    larger = []
    for name, mine, theirs in (("layers", student.layers, teacher.layers), ("hidden size", student.hidden, teacher.hidden),
                               ("attention heads", student.heads, teacher.heads),
                               ("FFN size", student.intermediate, teacher.intermediate),
                               ("head size", student.hidden // student.heads, teacher.hidden // teacher.heads)):  # fmt: skip
        if mine > theirs:
            larger.append(f"{name} {mine} > {theirs}")
    if larger:
        raise UserError(f"{what} is larger than its teacher ({teacher.describe()}): {', '.join(larger)}; "
                        "a student must be at most as deep and wide as the fine-tuned model it learns from")  # fmt: skip


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer of each student layer: every k-th, the last student layer on the last teacher layer."""
    return [math.floor((i + 1) * teacher_layers / student_layers + 0.5) - 1 for i in range(student_layers)]


# -- importance (DynaBERT's criterion) -------------------------------------------------------------------------------


def head_neuron_importance(model: Any, batches: Sequence[dict], task: Task) -> tuple[list[Any], list[Any]]:
    """Per teacher layer: |dL/d head mask| of each attention head and DynaBERT's FFN neuron importance.

    paddlenlp's `compute_neuron_head_importance` needs its OFA forward patches on paddle's classes to feed a head
    mask; the head-mask gradient equals Σ W∘∂L/∂W over the head's rows of the attention output projection (the mask
    multiplies the head's context, which that projection reads linearly), so it is read from plain gradients here.
    The neuron formula is paddlenlp's.
    """
    import numpy as np

    layers = model.base_model.encoder.layers
    heads = layers[0].self_attn.num_heads
    head_scores = [np.zeros(heads) for _ in layers]
    neuron_scores = [np.zeros(layer.linear1.weight.shape[1]) for layer in layers]
    loss_function = task.loss_function()
    was_training = model.training
    model.eval()  # no dropout: the ranking should not depend on the random mask
    for batch in batches:
        labels = tuple(batch[name] for name in task.label_names)
        inputs = {key: value for key, value in batch.items() if key not in task.label_names}
        outputs = model(**inputs)
        loss = loss_function(outputs, labels if len(labels) > 1 else labels[0])
        loss.backward()
        for index, layer in enumerate(layers):
            out = layer.self_attn.out_proj.weight
            taylor = (out.numpy() * out.grad.numpy()).reshape(heads, -1).sum(axis=1)
            head_scores[index] += np.abs(taylor)
            w1, b1, w2 = layer.linear1.weight, layer.linear1.bias, layer.linear2.weight
            neuron_scores[index] += np.abs((w1.numpy() * w1.grad.numpy()).sum(axis=0) + b1.numpy() * b1.grad.numpy())
            neuron_scores[index] += np.abs((w2.numpy() * w2.grad.numpy()).sum(axis=1))
        model.clear_gradients()
    if was_training:
        model.train()
    return head_scores, neuron_scores


def initialise_from_teacher(teacher: Any, shape: StudentShape, importance: tuple[list[Any], list[Any]]) -> Any:
    """A student of `shape` (same architecture and head as the teacher) holding a slice of the teacher's weights,
    heads and neurons chosen by `importance` (`head_neuron_importance`)."""
    import numpy as np
    import paddle

    whole = teacher_shape(teacher.config)
    head_scores, neuron_scores = importance
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers, config.hidden_size = shape.layers, shape.hidden
    config.num_attention_heads, config.intermediate_size = shape.heads, shape.intermediate
    student = type(teacher)(config)
    mapping = layer_map(shape.layers, whole.layers)
    teacher_head, student_head = whole.hidden // whole.heads, shape.hidden // shape.heads
    hidden_index = np.arange(shape.hidden)
    teacher_state = teacher.state_dict()
    values = {}
    for name, parameter in student.state_dict().items():
        found = re.search(r"encoder\.layers\.(\d+)\.", name)
        source_name = name
        roles: dict[str, Any] = {}
        if found:
            source = mapping[int(found.group(1))]
            source_name = name.replace(found.group(0), f"encoder.layers.{source}.", 1)
            # most important heads first, each cut to the student's head size (its first dimensions)
            kept_heads = np.argsort(-head_scores[source], kind="stable")[: shape.heads]
            roles["attention"] = np.concatenate([h * teacher_head + np.arange(student_head) for h in kept_heads])
            roles["ffn"] = np.argsort(-neuron_scores[source], kind="stable")[: shape.intermediate]
        axes = parameter_axes(name)
        weights = teacher_state[source_name].numpy()
        index = []
        for axis, (student_size, teacher_size) in enumerate(zip(parameter.shape, weights.shape)):
            role = axes[axis] if axes else None
            if role in roles:
                index.append(roles[role])
            elif student_size == teacher_size:
                index.append(np.arange(teacher_size))
            elif teacher_size == whole.hidden:
                index.append(hidden_index)
            else:
                raise RuntimeError(f"cannot map teacher {source_name} {weights.shape} onto student {name} {parameter.shape}")
        values[name] = paddle.to_tensor(weights[np.ix_(*index)], dtype=parameter.dtype)
    student.set_state_dict(values)
    return student


def parameter_axes(name: str) -> Optional[tuple[str, ...]]:
    """What each axis of an encoder-layer parameter indexes (paddle's Linear weights are [in, out])."""
    table = {
        r"self_attn\.[qkv]_proj\.weight$": ("hidden", "attention"), r"self_attn\.[qkv]_proj\.bias$": ("attention",),
        r"self_attn\.out_proj\.weight$": ("attention", "hidden"), r"linear1\.weight$": ("hidden", "ffn"),
        r"linear1\.bias$": ("ffn",), r"linear2\.weight$": ("ffn", "hidden"),
    }  # fmt: skip
    for pattern, axes in table.items():
        if re.search(pattern, name):
            return axes
    return None


# -- a pretrained student --------------------------------------------------------------------------------------------


def check_student_vocabulary(name: str, teacher_tokenizer: Any) -> None:
    """A student must tokenize like its teacher: distillation feeds both the same token ids."""
    from ernie3.modeling import load_tokenizer

    tokenizer = load_tokenizer(name, flag="--student_model")
    if tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        mine, theirs = len(tokenizer.get_vocab()), len(teacher_tokenizer.get_vocab())
        raise UserError(f"--student_model: {name} has another vocabulary than the teacher ({mine} vs {theirs} tokens, "
                        "or the same tokens with other ids); distillation feeds both the same token ids: pick a "
                        "student built on the teacher's vocabulary (ERNIE 3.0 models share one)")  # fmt: skip


def load_pretrained_student(name: str, task: Task, teacher: Any, teacher_tokenizer: Any) -> Any:
    """A student from a model directory or hub name: same vocabulary as the teacher, not larger than it."""
    from ernie3.modeling import load_model

    check_student_vocabulary(name, teacher_tokenizer)
    student = load_model(name, task.model_class(), flag="--student_model", ignore_mismatched_sizes=True,
                         **task.model_kwargs())  # fmt: skip
    check_not_larger(teacher_shape(student.config), teacher_shape(teacher.config), f"--student_model {name}")
    return student


# -- training --------------------------------------------------------------------------------------------------------


def logits_of(outputs: Any) -> tuple:
    """The task outputs of a model's ModelOutput (logits, or start and end logits), without loss and hidden states."""
    return tuple(value for key, value in outputs.items() if key not in ("loss", "hidden_states", "attentions"))


def distillation_trainer_class() -> type:
    import paddle

    from ernie3.train import project_trainer_class

    class DistillationTrainer(project_trainer_class()):
        """The project's Trainer, whose training loss is the teacher → student distillation loss."""

        def __init__(self, *args: Any, teacher: Any, settings: DistillationArguments, mapping: list[int],
                     teacher_cache: Optional["TeacherOutputs"] = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.teacher, self.settings, self.mapping = teacher, settings, mapping
            self.teacher_cache = teacher_cache
            self.teacher.eval()
            for parameter in self.teacher.parameters():
                parameter.stop_gradient = True
            self.label_loss = self.task.loss_function()

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False) -> Any:
            if not model.training:  # evaluation: the student's own label loss, outputs as the metrics read them
                return super().compute_loss(model, inputs, return_outputs)
            from ernie3.augment import AUGMENTED_KEY, gold_rows

            task, settings = self.task, self.settings
            features = {key: value for key, value in inputs.items()
                        if key not in (*task.label_names, AUGMENTED_KEY, TEACHER_ROW_KEY)}  # fmt: skip
            hidden = settings.distill_hidden_weight > 0
            student_out = model(**features, output_hidden_states=hidden, return_dict=True)
            student_logits = logits_of(student_out)
            if self.teacher_cache is not None:
                teacher_out = None
                teacher_logits = self.teacher_cache.batch(inputs[TEACHER_ROW_KEY], student_logits)
            else:
                with paddle.no_grad():
                    teacher_out = self.teacher(**features, output_hidden_states=hidden, return_dict=True)
                teacher_logits = logits_of(teacher_out)
            loss = task.distillation_loss(student_logits, teacher_logits, inputs, settings.distill_temperature)
            if hidden:
                loss = loss + settings.distill_hidden_weight * self.hidden_loss(model, student_out, teacher_out)
            if settings.distill_label_weight > 0:
                labels = tuple(inputs[name] for name in task.label_names)
                outputs = student_logits
                rows = gold_rows(inputs)  # augmented rows have no gold labels
                if rows is not None:
                    outputs = tuple(paddle.gather(output, rows) for output in outputs)
                    labels = tuple(paddle.gather(label, rows) for label in labels)
                if rows is None or rows.shape[0] > 0:
                    single = len(outputs) == 1
                    hard = self.label_loss(outputs[0] if single else outputs, labels[0] if single else labels)
                    loss = loss + settings.distill_label_weight * hard
            return (loss, student_logits) if return_outputs else loss

        def hidden_loss(self, model: Any, student_out: Any, teacher_out: Any) -> Any:
            """MSE of the embeddings and of each student layer against its mapped teacher layer (TinyBERT)."""
            import paddle.nn.functional as F

            pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(self.mapping)]
            projection = getattr(model, PROJECTION_NAME, None)
            total = 0.0
            for s, t in pairs:
                mine = student_out.hidden_states[s]
                total = total + F.mse_loss(projection(mine) if projection is not None else mine,
                                           teacher_out.hidden_states[t])  # fmt: skip
            return total / len(pairs)

    return DistillationTrainer


@dataclass
class DistillationResult:
    student: Any
    student_dir: str
    baseline_dir: Optional[str]
    shape: StudentShape
    source: str
    settings: dict


def training_batches(dataset: Any, collator: Any, batch_size: int, limit: int) -> list[dict]:
    import paddle

    loader = paddle.io.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) >= limit:
            break
    return batches


def checkpoint_dir_for(work_dir: str, settings: dict, overwrite: bool) -> str:
    """The checkpoint directory of one distillation: resumed when it holds the same settings, else started over
    (with --overwrite_output_dir) or refused."""
    from ernie3.files import write_json_atomic

    record = os.path.join(work_dir, SETTINGS_FILE)
    if os.path.isdir(work_dir) and os.listdir(work_dir):
        try:
            with open(record, encoding="utf-8") as handle:
                previous = json.load(handle)
        except (OSError, ValueError):
            previous = None
        if previous != settings:
            if not overwrite:
                raise UserError(f"{work_dir} holds checkpoints of an interrupted distillation with other settings; "
                                "pass --overwrite_output_dir to start over")  # fmt: skip
            shutil.rmtree(work_dir)
        elif overwrite:
            shutil.rmtree(work_dir)  # --overwrite_output_dir starts over, as in fine-tuning
    os.makedirs(work_dir, exist_ok=True)
    write_json_atomic(record, settings)
    return work_dir


def train_student(
    trainer_class: type, student: Any, training_args: Any, work_dir: str, data: Any, task: Task,
    max_seq_length: int, train_dataset: Any = None, **trainer_kwargs: Any,
) -> tuple[Any, Optional[str]]:
    """Train `student` on `train_dataset` (default: the train split) with checkpoints in `work_dir` (resumed from
    its last complete one); returns the best model and the checkpoint it resumed from."""
    from paddlenlp.utils.log import logger

    from ernie3.train import checkpoint_total_loss, check_finite_loss, last_complete_checkpoint

    args = copy.deepcopy(training_args)
    args.output_dir = work_dir
    args.label_names = list(task.label_names)
    args.metric_for_best_model = task.metric_name
    args.greater_is_better = True
    trainer = trainer_class(
        model=student, args=args, data_collator=task.data_collator(data.tokenizer),
        train_dataset=train_dataset if train_dataset is not None else data.datasets["train"],
        eval_dataset=data.datasets["dev"], tokenizer=data.tokenizer,
        compute_metrics=task.metrics_function(data.examples["dev"], data.encoded["dev"]), task=task,
        max_seq_length=max_seq_length, **trainer_kwargs,
    )  # fmt: skip
    checkpoint = training_args.resume_from_checkpoint or last_complete_checkpoint(work_dir)
    if checkpoint:
        logger.info(f"Resuming the distillation from {checkpoint}")
    trainer.loss_before_resume = checkpoint_total_loss(checkpoint) or 0.0
    result = trainer.train(resume_from_checkpoint=checkpoint)
    check_finite_loss(result.metrics["train_loss"], trainer.state.global_step)
    trainer.log_metrics("train", result.metrics)
    return trainer.model, checkpoint


def save_student(student: Any, tokenizer: Any, task: Task, directory: str, max_seq_length: int) -> str:
    """The student as a model directory that is also a float candidate: static export + weights + tokenizer."""
    if PROJECTION_NAME in student._sub_layers:
        del student._sub_layers[PROJECTION_NAME]  # a training aid, not part of the student
    export_inference_model(student, tokenizer, task, directory, max_seq_length)
    student.save_pretrained(directory, safe_serialization=True)
    write_task_info(directory, task, max_seq_length, verify_tokenizer=True)
    return directory


def resolve_student_shape(teacher_config: dict, dargs: DistillationArguments) -> Optional[StudentShape]:
    """The shape of a shape student (checked now, before any work); None for a pretrained student, whose local
    directory is checked now too (a hub name is checked when it loads)."""
    if dargs.student_model is not None:
        from ernie3.modeling import MODEL_CONFIG_FILES, check_model_source

        local = check_model_source(dargs.student_model, "--student_model")
        if local is not None:
            path = next(os.path.join(local, name) for name in MODEL_CONFIG_FILES if os.path.isfile(os.path.join(local, name)))
            try:
                with open(path, encoding="utf-8") as handle:
                    shape = teacher_shape(json.load(handle))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise UserError(f"--student_model: {path} is not a readable ERNIE config ({exc})") from None
            check_not_larger(shape, teacher_shape(teacher_config), f"--student_model {dargs.student_model}")
        return None
    return requested_shape(teacher_shape(teacher_config), dargs)


def distillation_features(task: Task, data: Any, dargs: DistillationArguments, max_seq_length: int,
                          seed: int) -> tuple[list[dict], int]:
    """The distillation's train features: the train split's, and with --distill_augment its augmented copies
    (made the same way on every run with the same seed, so a resumed run continues on the same data); (features,
    augmented feature count)."""
    if not dargs.distill_augment:
        return list(data.encoded["train"].features), 0
    from paddlenlp.utils.log import logger

    from ernie3.augment import AugmentationSettings, augmented_features, training_features
    from ernie3.fast_tokenizer import tokenizer_for_task

    settings = AugmentationSettings(dargs.distill_augment, dargs.distill_augment_mask, dargs.distill_augment_replace,
                                    dargs.distill_augment_span, seed)  # fmt: skip
    encoder, _, _ = tokenizer_for_task(data.tokenizer, "auto", task, max_seq_length)
    examples = data.examples["train"]
    augmented = augmented_features(task, examples, lambda batch: task.encode(batch, encoder, max_seq_length),
                                   data.tokenizer, settings)  # fmt: skip
    logger.info(f"Distillation data: {len(data.encoded['train'].features)} train features + {len(augmented)} "
                f"augmented ones ({dargs.distill_augment} copies asked per example) that the teacher labels")  # fmt: skip
    return training_features(data.encoded["train"].features, augmented), len(augmented)


class TeacherOutputs:
    """The teacher's outputs on every feature of the distillation's train set, computed once through its static
    export on Paddle Inference (oneDNN FP32, equal to the dygraph teacher in eval mode to ~1e-6, and several times
    faster than a dygraph forward at every step), and handed to the loss batch by batch."""

    def __init__(self, task: Task, export_dir: str, features: Sequence[dict], num_threads: int, batch_size: int):
        import numpy as np
        from tqdm import tqdm

        from ernie3.predict import Predictor

        predictor = Predictor(export_dir, backend="paddle", precision="fp32", num_threads=num_threads,
                              batch_size=batch_size)  # fmt: skip
        self.per_token = task.outputs_per_token
        self.rows: list[tuple] = [()] * len(features)
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        with tqdm(total=len(features), desc="Teacher outputs on the distillation data", unit="feature",
                  leave=False) as bar:  # fmt: skip
            for start in range(0, len(order), CACHE_CHUNK):
                chunk = order[start : start + CACHE_CHUNK]
                outputs = predictor.outputs([features[i] for i in chunk])
                for position, index in enumerate(chunk):
                    length = len(features[index]["input_ids"])
                    self.rows[index] = tuple(np.asarray(out[position][:length] if self.per_token else out[position],
                                                        dtype=np.float32) for out in outputs)  # fmt: skip
                bar.update(len(chunk))

    def batch(self, rows: Any, like: Sequence[Any]) -> tuple:
        """The cached outputs of a batch's rows, shaped as the student's outputs `like` (per-token outputs padded
        to the batch's length with PADDING_LOGIT)."""
        import numpy as np
        import paddle

        indices = [int(i) for i in np.asarray(rows).reshape(-1)]
        batch = []
        for k, student in enumerate(like):
            values = [self.rows[i][k] for i in indices]
            if self.per_token:
                length = student.shape[1]
                values = [np.pad(v, [(0, length - v.shape[0])] + [(0, 0)] * (v.ndim - 1), constant_values=PADDING_LOGIT)
                          for v in values]  # fmt: skip
            batch.append(paddle.to_tensor(np.stack(values), dtype=student.dtype))
        return tuple(batch)


def distillation_train_set(task: Task, data: Any, dargs: DistillationArguments, max_seq_length: int, seed: int,
                           teacher_export: Optional[str], num_threads: int,
                           batch_size: int) -> tuple[Any, int, Optional[TeacherOutputs]]:
    """(the distillation's train dataset, its augmented feature count, the teacher's cached outputs on it). The
    outputs are cached when only they are distilled (hidden states need the dygraph teacher at every step) and
    the teacher's export is given."""
    from paddlenlp.datasets import MapDataset

    features, augmented = distillation_features(task, data, dargs, max_seq_length, seed)
    cache = None
    if teacher_export is not None and dargs.distill_hidden_weight == 0:
        cache = TeacherOutputs(task, teacher_export, features, num_threads, batch_size)
        features = [{**feature, TEACHER_ROW_KEY: row} for row, feature in enumerate(features)]
    if not augmented and cache is None:
        return data.datasets["train"], 0, None
    return MapDataset(features), augmented, cache


def distill(
    task: Task, teacher: Any, teacher_dir: str, data: Any, training_args: Any, dargs: DistillationArguments,
    output_dir: str, work_root: str, max_seq_length: int, teacher_export: Optional[str] = None, num_threads: int = 1,
) -> DistillationResult:
    """Build the student, distil the teacher into it (and the label-only baseline if asked), save both under
    `output_dir` (student/, student_baseline/); checkpoints live in `work_root`/distill_checkpoints until the compress
    output is published, so that a killed run resumes. `teacher_export`: the teacher's static export, whose outputs
    on the train set are computed once (with `num_threads`) instead of a dygraph forward at every step."""
    from paddlenlp.utils.log import logger

    from ernie3.args import check_max_seq_length
    from ernie3.train import project_trainer_class

    tokenizer = data.tokenizer
    whole = teacher_shape(teacher.config)
    if dargs.student_model is not None:
        def make_student() -> Any:
            return load_pretrained_student(dargs.student_model, task, teacher, tokenizer)

        source = dargs.student_model
    else:
        shape = requested_shape(whole, dargs)
        batches = training_batches(data.datasets["train"], task.data_collator(tokenizer),
                                   training_args.per_device_train_batch_size, IMPORTANCE_BATCHES)  # fmt: skip
        importance = head_neuron_importance(teacher, batches, task)

        def make_student() -> Any:
            return initialise_from_teacher(teacher, shape, importance)

        source = f"teacher slice ({shape.describe()}, layers {layer_map(shape.layers, whole.layers)})"
    student = make_student()
    shape = teacher_shape(student.config)
    check_max_seq_length(max_seq_length, tokenizer, getattr(student.config, "max_position_embeddings", None))
    mapping = layer_map(shape.layers, whole.layers)
    logger.info(f"Distilling {whole.describe()} into {shape.describe()} ({source}); student layer → teacher layer "
                f"{dict(enumerate(mapping))}")  # fmt: skip
    settings = {"teacher": os.path.abspath(teacher_dir), "student": source,
                **{k: v for k, v in dataclasses.asdict(dargs).items() if k != "distill_baseline"}}  # fmt: skip
    work_root = os.path.join(work_root, DISTILL_CHECKPOINTS_DIR)
    overwrite = training_args.overwrite_output_dir
    if dargs.distill_hidden_weight > 0 and shape.hidden != whole.hidden:
        import paddle

        student.add_sublayer(PROJECTION_NAME, paddle.nn.Linear(shape.hidden, whole.hidden))
    work = checkpoint_dir_for(os.path.join(work_root, "student"), settings, overwrite)
    train_set, augmented, cache = distillation_train_set(task, data, dargs, max_seq_length, training_args.seed,
                                                         teacher_export, num_threads,
                                                         training_args.per_device_eval_batch_size)  # fmt: skip
    student, resumed = train_student(distillation_trainer_class(), student, training_args, work, data, task,
                                     max_seq_length, train_set, teacher=teacher, settings=dargs, mapping=mapping,
                                     teacher_cache=cache)  # fmt: skip
    cached = cache is not None
    del cache
    student_dir = save_student(student, tokenizer, task, os.path.join(output_dir, STUDENT_DIR), max_seq_length)
    baseline_dir = None
    if dargs.distill_baseline:
        logger.info(f"Baseline: the same student {shape.describe()} fine-tuned on the labels alone")
        # the baseline trains on the labels alone: what only shapes the distillation does not restart it
        own = {k: v for k, v in settings.items() if k not in ("distill_augment", *AUGMENT_RATES)}
        work = checkpoint_dir_for(os.path.join(work_root, "baseline"), {**own, "baseline": True}, overwrite)
        baseline, _ = train_student(project_trainer_class(), make_student(), training_args, work, data, task,
                                    max_seq_length)  # fmt: skip
        baseline_dir = save_student(baseline, tokenizer, task, os.path.join(output_dir, STUDENT_BASELINE_DIR),
                                    max_seq_length)  # fmt: skip
    summary = {"student": source, "shape": dataclasses.asdict(shape), "teacher_shape": dataclasses.asdict(whole),
               "layer_map": mapping, "temperature": dargs.distill_temperature,
               "hidden_weight": dargs.distill_hidden_weight, "label_weight": dargs.distill_label_weight,
               "augmented_features": augmented, "train_features": len(data.datasets["train"]),
               "teacher_outputs": "cached from its static export" if cached else "dygraph forward at every step",
               "resumed_from": os.path.basename(resumed) if resumed else None}  # fmt: skip
    if augmented:
        summary["augmentation"] = {name: getattr(dargs, name) for name in ("distill_augment", *AUGMENT_RATES)}
    return DistillationResult(student, student_dir, baseline_dir, shape, source, summary)


def distillation_report(results: Sequence[dict], baseline: Optional[dict], summary: dict, metric_name: str) -> dict:
    """Teacher, distilled student and (if trained) the label-only baseline, side by side."""
    from ernie3.layout import FLOAT_DIR

    by_name = {r["name"]: r for r in results}
    rows = {"teacher": by_name[FLOAT_DIR], "student": by_name[STUDENT_DIR]}
    if baseline is not None:
        rows["baseline"] = baseline
    return {
        **summary,
        "models": {
            role: {"candidate": r["name"], "metric": r["metric"], "agreement_with_teacher": r["agreement_with_float"],
                   "size_mb": r["size_mb"], "throughput": r["throughput"]}  # fmt: skip
            for role, r in rows.items()
        },
        "metric_name": metric_name,
    }


def distillation_markdown(report: dict) -> str:
    shape, teacher = report["shape"], report["teacher_shape"]
    describe = lambda s: f"{s['layers']}L-{s['hidden']}H-{s['heads']}heads"  # noqa: E731
    lines = ["", "## Distillation", "",
             f"Teacher {describe(teacher)} → student {describe(shape)} ({report['student']}); temperature "
             f"{report['temperature']:g}, hidden-state weight {report['hidden_weight']:g}, label weight "
             f"{report['label_weight']:g}{augmentation_note(report)}.", "",
             f"| model | {report['metric_name']} | agreement with teacher | size (MB) | throughput (seq/s) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for role, row in report["models"].items():
        name = {"teacher": "teacher (float)", "student": "distilled student",
                "baseline": "same student, labels only"}[role]  # fmt: skip
        lines.append(f"| {name} | {row['metric']:.4f} | {row['agreement_with_teacher']:.2%} | {row['size_mb']:.2f} | "
                     f"{row['throughput']:.1f} |")  # fmt: skip
    comparison = report.get("student_vs_baseline")
    if comparison:
        low, high = comparison["ci95"]
        verdict = ("beyond the noise of these dev examples" if comparison["beyond_noise"] else
                   "within the noise of these dev examples: no difference shown")  # fmt: skip
        lines += ["", f"Distilled − labels-only {report['metric_name']}: {comparison['difference']:+.4f} (95% paired "
                      f"bootstrap interval {low:+.4f} to {high:+.4f} over {comparison['resamples']} resamples of the dev "
                      f"examples): {verdict}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def augmentation_note(report: dict) -> str:
    settings = report.get("augmentation")
    if not settings:
        return ""
    return (f"; data: {report['train_features']} train features + {report['augmented_features']} augmented ones "
            f"(--distill_augment {settings['distill_augment']}: word replacement {settings['distill_augment_replace']:g}, "
            f"span {settings['distill_augment_span']:g}, [UNK] {settings['distill_augment_mask']:g}), labelled by the "
            "teacher; the labels-only baseline trains on the train features alone")
