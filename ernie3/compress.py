"""One compress path for all task types: paddlenlp's Trainer.compress() (DynaBERT width pruning, then
post-training quantization over algorithms × calibration batch sizes), then candidates on other engines/precisions
(Paddle oneDNN BF16, OpenVINO BF16 and NNCF INT8, ONNX Runtime dynamic INT8), every candidate evaluated through the
Predictor (the metric in one pass, speed over interleaved timing rounds: median and range), a report, and the fastest
candidate under a maximum metric drop (ernie3.pick: a tie within the timing noise goes to the better metric, then
the smaller model) copied to OUTPUT/best/ with a candidate.json that tells every later stage which backend and
precision run it."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Optional, Sequence

from ernie3 import compat
from ernie3.args import parse_arguments
from ernie3.distill import DistillationArguments, check_distillation_settings, resolve_student_shape
from ernie3.errors import UserError
from ernie3.export import export_inference_model, write_task_info
from ernie3.layout import (
    BEST_DIR,
    CANDIDATE_FILE,
    COMPRESS_LAYOUT,
    DISTILL_CHECKPOINTS_DIR,
    FLOAT_DIR,
    ONNX_FILE,
    OPENVINO_IR_FILE,
    REPORT_JSON,
    REPORT_MD,
    RUN_LOG_FILE,
    STATIC_MODEL_PREFIX,
    STUDENT_BASELINE_DIR,
    STUDENT_DIR,
    TASK_INFO_FILE,
    VOCAB_DIR,
    Candidate,
    compress_candidates,
    derived_candidate_path,
)
from ernie3.lightweight import (
    LightweightArguments,
    batch1_latency_ms,
    check_strategy,
    collect_qat_outputs,
    measure_peak_rss,
    qat_candidates,
)
from ernie3.pick import OBJECTIVE_FIGURES, pick_best, tie_note
from ernie3.predict import load_model_tokenizer
from ernie3.quant_embeddings import build_embedding_candidates
from ernie3.timing import DEFAULT_ROUNDS, SETTLE_SECONDS, Spread, interleaved_figures
from ernie3.vocab import save_tokenizer, trim_for_compression, vocabulary_report_lines
from ernie3.files import (
    atomic_directory,
    check_output_location,
    foreign_entries,
    paths_overlap,
    publish_staged_output,
    staging_directory_for,
    write_json_atomic,
    write_run_record,
    write_errors_as_user_errors,
    write_text_atomic,
)
from ernie3.modeling import check_model_source, load_model
from ernie3.tasks import Task
from ernie3.tasks.base import IGNORE_INDEX
from ernie3.train import check_fine_tuned_model, command_for, load_run_data, model_settings

STRATEGIES = ("dynabert+ptq", "ptq", "dynabert", "qat", "dynabert+qat", "distill", "distill+ptq", "distill+qat",
              "distill+dynabert", "distill+dynabert+ptq")  # fmt: skip
PTQ_ALGOS = ("hist", "mse", "KL", "avg", "abs_max")
ENGINES = ("paddle", "openvino", "onnxruntime")
#: cheap and fast on CPU: Paddle (FP32/INT8 from PTQ, + BF16) and OpenVINO (BF16, NNCF INT8); ONNX Runtime's dynamic
#: INT8 is slower than both INT8 paths here (STACK.md), so it is built only when asked for
DEFAULT_ENGINES = ("paddle", "openvino")


@dataclass
class CandidateEvaluationArguments:
    max_metric_drop: float = field(
        default=0.01,
        metadata={"help": "Largest relative drop of the dev metric (vs. the float model) a candidate may have to be "
                          "picked as best; 0.01 = 1%%."},
    )  # fmt: skip
    num_threads: int = field(default=2, metadata={"help": "CPU threads for Paddle Inference when evaluating."})
    engines: list[str] = field(
        default_factory=lambda: list(DEFAULT_ENGINES),
        metadata={"help": "Inference engines whose candidates to build beside Paddle's FP32/PTQ ones: paddle (oneDNN "
                          "BF16 where the CPU has it), openvino (BF16, NNCF INT8), onnxruntime (dynamic INT8)."},
    )  # fmt: skip
    nncf_accuracy_control: bool = field(
        default=True,
        metadata={"help": "Also build an OpenVINO INT8 candidate with NNCF's accuracy control, which keeps the dev "
                          "metric within --max_metric_drop."},
    )  # fmt: skip
    nncf_subset_size: int = field(default=300, metadata={"help": "Calibration examples for NNCF INT8."})
    timing_rounds: int = field(
        default=DEFAULT_ROUNDS,
        metadata={"help": "Interleaved timing rounds behind each candidate's throughput and batch-1 latency (median "
                          "and range, lowest–highest); candidates whose ranges overlap are a tie for the best pick."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_engines(self.engines)
        if self.nncf_subset_size < 1:
            raise UserError("--nncf_subset_size must be at least 1")
        if self.timing_rounds < 1:
            raise UserError(f"--timing_rounds must be at least 1, got {self.timing_rounds}")


#: the compress commands' flag dataclasses beside model, data and Trainer flags (the pipeline parses them too)
EXTRA_ARGUMENTS = (CandidateEvaluationArguments, DistillationArguments, LightweightArguments)


def parse_width(text: str) -> Fraction:
    try:
        width = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--width_mult_list: '{text}' is not a number or fraction such as 3/4") from None
    if not 0 < width <= 1:
        raise UserError(f"--width_mult_list: {text} must be in (0, 1]")
    return width


def check_compression_settings(args: Any, model_config: dict, eval_args: Any = None) -> None:
    """Reject settings that would fail late, before any long work starts."""
    if eval_args is not None:
        drop = eval_args.max_metric_drop
        if not isinstance(drop, (int, float)) or not math.isfinite(drop) or not 0 <= drop <= 1:
            raise UserError(f"--max_metric_drop must be a relative drop between 0 and 1 (0.01 = 1%), got {drop}")
        if eval_args.num_threads < 1:
            raise UserError(f"--num_threads must be at least 1, got {eval_args.num_threads}")
    if args.strategy not in STRATEGIES:
        raise UserError(f"--strategy: '{args.strategy}' is not supported (choose one of: {', '.join(STRATEGIES)})")
    if "ptq" in args.strategy:
        for algo in args.algo_list or ():
            if algo not in PTQ_ALGOS:
                raise UserError(f"--algo_list: unknown algorithm '{algo}' (choose from: {', '.join(PTQ_ALGOS)})")
        for name in ("algo_list", "batch_size_list", "batch_num_list"):
            if not getattr(args, name):
                raise UserError(f"--{name} is empty")
        if len(set(args.algo_list)) != len(args.algo_list):
            raise UserError(f"--algo_list: an algorithm is listed twice ({' '.join(args.algo_list)})")
        if any(size <= 0 for size in args.batch_size_list) or any(n <= 0 for n in args.batch_num_list):
            raise UserError("--batch_size_list and --batch_num_list take positive numbers")
    if "dynabert" in args.strategy:
        if not args.width_mult_list:
            raise UserError("--width_mult_list is empty")
        heads, hidden = model_config["num_attention_heads"], model_config["intermediate_size"]
        widths = [parse_width(str(text)) for text in args.width_mult_list]
        if len(set(widths)) != len(widths):
            raise UserError(f"--width_mult_list: a width is listed twice ({' '.join(map(str, args.width_mult_list))})")
        for text, width in zip(args.width_mult_list, widths):
            if (heads * width).denominator != 1 or (hidden * width).denominator != 1:
                raise UserError(
                    f"--width_mult_list: width {text} does not keep whole attention heads "
                    f"({heads} heads × {text} = {float(heads * width):g}); pick a width w with {heads}·w whole"
                )


def pruned_model_config(model_config: dict, strategy: str, distill_args: DistillationArguments) -> dict:
    """The config of the model DynaBERT will prune: the student's shape after distillation (a pretrained student's
    is known only once loaded), else the model's own. Checks the distillation flags on the way."""
    check_distillation_settings(strategy, distill_args)
    shape = resolve_student_shape(model_config, distill_args) if "distill" in strategy else None
    if shape is None:
        return model_config
    return {**model_config, "num_attention_heads": shape.heads, "intermediate_size": shape.intermediate}


def read_model_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UserError(f"--model_name_or_path: cannot read {path} ({exc})") from None
    missing = [key for key in ("num_attention_heads", "intermediate_size") if key not in config]
    if missing:
        raise UserError(f"--model_name_or_path: {path} lacks '{missing[0]}': not an ERNIE model config")
    return config




def expected_candidates(compression: Any, linked: bool = True) -> int:
    """How many candidates compression will build and evaluate (as `_run` builds them), from its parsed
    arguments (ernie3.args.RunArguments); with `linked=False`, only those with files of their own (BF16 candidates
    are hard links to their float model's files)."""
    from ernie3.backends import cpu_has_native_bf16

    args, evaluation = compression.training, compression.extra[CandidateEvaluationArguments]
    light = compression.extra[LightweightArguments]
    widths = len(args.width_mult_list or []) if "dynabert" in args.strategy else 0
    # PTQ and QAT quantize the pruned models after DynaBERT, else the (vocabulary-trimmed) float model
    ptq_sources = (widths or 1) if "ptq" in args.strategy else 0
    ptq = len(args.algo_list) * len(args.batch_size_list) * len(args.batch_num_list) if ptq_sources else 0
    qat = (widths or 1) if "qat" in args.strategy else 0
    bf16 = cpu_has_native_bf16()
    openvino = "openvino" in evaluation.engines
    per_float = ("paddle" in evaluation.engines and bf16) + openvino
    unpruned_only = openvino * (bf16 + evaluation.nncf_accuracy_control)
    # with QAT, paddlenlp exports no pruned float model; the distilled student is a float candidate too
    floats = 1 + (0 if qat else widths) + light.prune_vocab + ("distill" in args.strategy)
    int8 = ptq_sources * ptq + qat + openvino * (floats + evaluation.nncf_accuracy_control)
    if not linked:
        per_float -= "paddle" in evaluation.engines and bf16
        unpruned_only -= openvino * bf16
    return (floats * (1 + per_float) + ptq_sources * ptq + qat + unpruned_only + ("onnxruntime" in evaluation.engines)
            + int8 * light.int8_embeddings)  # fmt: skip

#: besides its candidates, what a compress run writes, in model copies: per DynaBERT width (paddlenlp's checkpoint
#: of the width, with a margin), and best/ (a copy of the pick, which may hold a width's checkpoint beside it)
COPIES_PER_WIDTH = 2
BEST_COPIES = 2


def model_weights_mb(model_dir: str) -> float:
    """The size of a model directory's weight files (MB)."""
    total = 0
    for entry in os.scandir(model_dir):
        if entry.is_file() and entry.name.endswith((".pdparams", ".safetensors", ".pdiparams", ".bin")):
            total += entry.stat().st_size
    return total / 2**20


def disk_need_mb(arguments: Any, model_mb: float) -> float:
    """A compress run's output size: one model copy per candidate with files of its own, per DynaBERT width's
    checkpoint, per distilled student, and best/ (INT8 files are counted as full copies: an upper estimate)."""
    args = arguments.training
    widths = len(args.width_mult_list or []) if "dynabert" in args.strategy else 0
    copies = (expected_candidates(arguments, linked=False) + COPIES_PER_WIDTH * widths + ("distill" in args.strategy)
              + BEST_COPIES)  # fmt: skip
    return model_mb * copies


def check_disk_space(need_mb: float, output_dir: str) -> tuple[float, Optional[str]]:
    """(free MB on the output's file system, a warning when it is below the estimate); a UserError when it is
    clearly too little (less than half the estimate: the estimate errs high)."""
    probe = os.path.abspath(output_dir)
    while not os.path.isdir(probe):  # the nearest existing parent: the output dir may not exist yet
        probe = os.path.dirname(probe)
    free_mb = shutil.disk_usage(probe).free / 2**20
    if free_mb < need_mb / 2:
        raise UserError(f"--output_dir: {output_dir} needs about {need_mb:.0f} MB, but its file system has only "
                        f"{free_mb:.0f} MB free; free some space or choose another --output_dir")  # fmt: skip
    if free_mb < need_mb:
        return free_mb, f"only {free_mb:.0f} MB free there: the run may fill the disk"
    return free_mb, None


def compress_kind(task_type: str) -> str:
    """What a compress output dir's run record says wrote it (see ernie3.files.RUN_RECORD)."""
    return f"compress_{task_type}"


def prepare_compress_output(
    task: Task, output_dir: str, model_dir: str, data_files: Sequence[Optional[str]], overwrite: bool
) -> None:
    """Check the output dir before any work; with --overwrite_output_dir it may hold only a previous compress
    output of the same task type (its run record and layout), which is deleted later, just before compressing."""
    check_output_location(output_dir, "--output_dir")
    if paths_overlap(output_dir, model_dir):
        raise UserError(
            f"--output_dir: {output_dir} overlaps the input model directory {model_dir} (--model_name_or_path); "
            "choose an output directory outside it"
        )
    # the run's log is kept across runs: a dir that holds nothing else is empty
    entries = set(os.listdir(output_dir)) - {RUN_LOG_FILE} if os.path.isdir(output_dir) else set()
    if not entries:
        return
    if not overwrite and entries == {DISTILL_CHECKPOINTS_DIR}:
        return  # an interrupted distillation, which this run resumes
    if not overwrite:
        raise UserError(f"--output_dir: {output_dir} is not empty; pass --overwrite_output_dir to replace it")
    kind = compress_kind(task.task_type)
    foreign = foreign_entries(output_dir, kind, COMPRESS_LAYOUT)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(
            f"--overwrite_output_dir: {output_dir} holds {shown}, which no previous {command_for(task, 'compress')} run "
            "wrote; refusing to delete it (choose a new or empty --output_dir)"
        )
    for path in data_files:
        if path and paths_overlap(path, output_dir):
            raise UserError(f"--overwrite_output_dir: input file {path} lies inside {output_dir}; move it first")


def make_dynamic_evaluator(task: Task, examples: list[dict], encoded: Any):
    """Evaluation of a dynamic-graph (or OFA super-) model on the dev loader, with the task's own metric."""
    import numpy as np
    import paddle
    from paddleslim.nas.ofa import OFA
    from paddlenlp.trainer import EvalPrediction
    from paddlenlp.trainer.utils.helper import nested_concat, nested_numpify

    compute_metrics = task.metrics_function(examples, encoded)

    @paddle.no_grad()
    def evaluate(trainer: Any, model: Any, data_loader: Any) -> float:
        model.eval()
        predictions, labels = None, None
        for batch in data_loader:
            outputs = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
            if isinstance(model, OFA):  # OFA returns (student outputs, teacher outputs)
                outputs = outputs[0]
            outputs = nested_numpify(tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,))
            batch_labels = nested_numpify(tuple(batch[name] for name in task.label_names if name in batch))
            # the Trainer's own padding value for outputs of different sequence lengths
            predictions = outputs if predictions is None else nested_concat(predictions, outputs, padding_index=IGNORE_INDEX)
            labels = batch_labels if labels is None else nested_concat(labels, batch_labels, padding_index=IGNORE_INDEX)
        model.train()
        unpack = lambda values: values[0] if len(values) == 1 else values  # noqa: E731
        metrics = compute_metrics(EvalPrediction(predictions=unpack(predictions), label_ids=unpack(labels)))
        value = float(metrics[task.metric_name])
        if not np.isfinite(value):
            return 0.0
        # paddlenlp's DynaBERT keeps a width's checkpoint when this value beats its best so far, which starts at
        # 0.0: a lower-is-better metric is turned into a positive value that falls as the metric rises
        return value if task.higher_is_better else float(np.exp(-np.clip(value, -700.0, 700.0)))

    return evaluate


def check_engines(engines: Sequence[str]) -> None:
    unknown = [engine for engine in engines if engine not in ENGINES]
    if unknown:
        raise UserError(f"--engines: unknown engine '{unknown[0]}' (choose from: {', '.join(ENGINES)})")


def link_float_candidate(source: Candidate, target: str, backend: str, precision: str) -> str:
    """A candidate directory running `source`'s float files on another backend/precision: hard links (no extra
    disk) + candidate.json, so it loads on its own like every other candidate."""
    from ernie3.openvino_quant import write_candidate_record

    with atomic_directory(target) as staging:
        for entry in os.listdir(source.path):
            path = os.path.join(source.path, entry)
            if os.path.isfile(path) and entry != CANDIDATE_FILE:
                try:
                    os.link(path, os.path.join(staging, entry))
                except OSError:  # another file system: copy
                    shutil.copy2(path, staging)
        write_candidate_record(staging, backend, precision, source.model_file)
    return target


def build_engine_candidates(
    float_candidates: Sequence[Candidate],
    engines: Sequence[str],
    task: Task,
    tokenizer: Any,
    examples: list[dict],
    max_seq_length: int,
    eval_args: Any,
    batch_size: int,
) -> list[Candidate]:
    """Candidates on the other engines/precisions, derived from the float ones (the unpruned `float` and each
    pruned width): Paddle BF16, OpenVINO BF16 + NNCF INT8 (+ accuracy-controlled), ONNX Runtime dynamic INT8."""
    from paddlenlp.utils.log import logger

    from ernie3.backends import cpu_has_native_bf16
    from ernie3.openvino_quant import NNCFQuantization, quantize_with_nncf, write_candidate_record

    built: list[Candidate] = []
    bf16 = cpu_has_native_bf16()
    if not bf16:
        logger.info("This CPU has no native BF16 (avx512_bf16/amx_bf16): no BF16 candidates")
    for source in float_candidates:
        is_float = source.name == FLOAT_DIR

        def derived(variant: str) -> tuple[str, str]:
            return derived_candidate_path(source, variant)

        if "paddle" in engines and bf16:
            name, path = derived("paddle-bf16")
            built.append(Candidate(name, link_float_candidate(source, path, "paddle", "bf16"), source.model_file,
                                   "paddle", "bf16", source.name))  # fmt: skip
        if "openvino" in engines:
            if is_float and bf16:
                name, path = derived("openvino-bf16")
                built.append(Candidate(name, link_float_candidate(source, path, "openvino", "bf16"), source.model_file,
                                       "openvino", "bf16", source.name))  # fmt: skip
            # NNCF's accuracy control takes the validation metric as higher-is-better: not for other tasks
            accuracy_control = is_float and eval_args.nncf_accuracy_control and task.higher_is_better
            variants = [("openvino-int8", False)] + ([("openvino-int8-ac", True)] if accuracy_control else [])
            for variant, accuracy_control in variants:
                name, path = derived(variant)
                logger.info(f"NNCF INT8 of {source.name}{' with accuracy control' if accuracy_control else ''}")
                settings = NNCFQuantization(eval_args.nncf_subset_size, accuracy_control, eval_args.max_metric_drop, batch_size)
                quantize_with_nncf(source.path, path, task, tokenizer, examples, max_seq_length, settings, examples)
                built.append(Candidate(name, path, OPENVINO_IR_FILE, "openvino", "int8", source.name))
        if "onnxruntime" in engines and is_float:
            from ernie3.onnx import export_onnx, quantize_onnx_dynamic

            name, path = derived("onnxruntime-int8")
            with atomic_directory(path) as staging:
                onnx_file = export_onnx(source.path, staging)
                quantize_onnx_dynamic(onnx_file, os.path.join(staging, ONNX_FILE))  # the INT8 model replaces the float
                write_candidate_record(staging, "onnxruntime", "int8", ONNX_FILE)
            built.append(Candidate(name, path, ONNX_FILE, "onnxruntime", "int8", source.name))
    return built


def candidate_size_mb(candidate: Candidate) -> float:
    from ernie3.backends import model_size_mb

    if candidate.model_prefix is not None:  # a Paddle program: its .pdmodel and .pdiparams
        return model_size_mb(candidate.path, candidate.model_prefix)
    return model_size_mb(candidate.model_path)


#: dev examples each timing round runs (the metric pass runs them all): bounds the rounds' cost on a large dev set
TIMING_EXAMPLES = 256
#: the share of the machine's available memory the predictors kept alive across timing rounds may take
KEEP_ALIVE_SHARE = 0.5


def available_memory_mb() -> Optional[float]:
    """MemAvailable from /proc/meminfo (Linux), None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def evaluate_candidates(
    task: Task,
    candidates: Sequence[Candidate],
    examples: list[dict],
    batch_size: int,
    num_threads: int,
    timing_rounds: int = DEFAULT_ROUNDS,
    timing: Optional[dict] = None,
    outputs_of: Optional[dict] = None,
) -> list[dict]:
    """Metric, size, agreement with the float model (and with its source), throughput and batch-1 latency of
    each candidate, each through the Predictor on its own backend and precision. The metric takes one pass per
    candidate; throughput and latency come from `timing_rounds` interleaved rounds (median and range), with the
    predictors kept alive across rounds while the memory plan's estimates fit half the available memory, else
    rebuilt (and warmed up) in each round. `timing`, when given, receives how they were timed (for the report);
    `outputs_of`, when given, the per-example results of the candidates it names as keys."""
    from ernie3.predict import Predictor

    def predictor_for(candidate: Candidate) -> Any:
        predictor = Predictor(candidate.path, backend=candidate.backend, precision=candidate.precision,
                              model_prefix=candidate.model_prefix, num_threads=num_threads, batch_size=batch_size)  # fmt: skip
        predictor.predict(examples[:batch_size])  # warm-up: oneDNN/OpenVINO build their kernels on the first runs
        return predictor

    available = available_memory_mb()
    budget_mb = KEEP_ALIVE_SHARE * available if available else 0.0
    kept: Optional[dict[str, Any]] = {}  # None once the predictors no longer fit: rebuilt per round
    kept_mb = 0.0
    results, decisions_of = [], {}
    for candidate in candidates:
        predictor = predictor_for(candidate)
        outputs = predictor.predict(examples)
        metrics = task.score(examples, outputs)
        name, source = candidate.name, candidate.source
        decisions_of[name] = [task.answer(output) for output in outputs]
        if outputs_of is not None and name in outputs_of:
            outputs_of[name] = outputs
        results.append({
            "name": name, "path": candidate.path, "model_file": candidate.model_file, "backend": predictor.backend_name,
            "precision": predictor.precision, "metrics": metrics, "metric": metrics[task.metric_name],
            "size_mb": round(candidate_size_mb(candidate), 3),
            "expected_peak_rss_mb": round(predictor.expected_peak_rss_mb, 1),
            "agreement_with_float": round(agreement(decisions_of[name], decisions_of[FLOAT_DIR]), 4),
            "quantized_from": source,
            "agreement_with_source": round(agreement(decisions_of[name], decisions_of[source]), 4) if source else None,
        })  # fmt: skip
        if kept is not None and kept_mb + predictor.expected_peak_rss_mb <= budget_mb:
            kept[name], kept_mb = predictor, kept_mb + predictor.expected_peak_rss_mb
        else:
            kept = None
        del predictor
    timed_examples = examples[:TIMING_EXAMPLES]
    if timing is not None:
        timing.update(rounds=timing_rounds, examples=len(timed_examples),
                      predictors="kept alive across rounds" if kept is not None else "rebuilt in each round")  # fmt: skip

    def measure(candidate: Candidate) -> Callable[[], dict]:
        def run() -> dict:
            predictor = kept[candidate.name] if kept is not None else predictor_for(candidate)
            started = time.perf_counter()
            predictor.predict(timed_examples)
            throughput = len(timed_examples) / (time.perf_counter() - started)
            return {"throughput": throughput, "latency_ms": batch1_latency_ms(predictor, timed_examples)}
        return run

    spreads = interleaved_figures({c.name: measure(c) for c in candidates}, timing_rounds, settle_seconds=SETTLE_SECONDS)
    kept = None  # the predictors go before the next stage builds its own
    for result in results:
        for key in ("throughput", "latency_ms"):
            spread = spreads[result["name"]][key]
            result[key] = round(spread.median, 3)
            result[f"{key}_spread"] = spread.as_dict()
    return results


def agreement(decisions: Sequence, reference: Sequence) -> float:
    return sum(a == b for a, b in zip(decisions, reference)) / len(reference)


def markdown_report(task: Task, results: list[dict], best: dict, settings: dict) -> str:
    metric_names = list(results[0]["metrics"])
    # "numeric precision" (fp32/bf16/int8): NER's metrics have their own "precision" column
    header = ["candidate", "engine", "numeric precision", *metric_names, "size (MB)", "throughput (seq/s): median (range)",
              "batch-1 latency (ms): median (range)", "peak RSS estimate (MB)", "peak RSS measured (MB)", "agreement with float",
              "agreement with its float source", "best"]  # fmt: skip
    objective = {"throughput": "fastest candidate", "latency": "candidate of lowest batch-1 latency",
                 "size": "smallest candidate on disk", "memory": "candidate of lowest predictor peak RSS"}[
        settings.get("optimize_for", "throughput")]  # fmt: skip
    lines = [
        f"# Compression report: {task.name}",
        "",
        f"Strategy `{settings['strategy']}`, engines {', '.join(settings.get('engines', ['paddle']))}; "
        f"dev examples: {settings['eval_examples']}; CPU "
        f"({settings['num_threads']} threads, batch {settings['batch_size']}, throughput includes tokenization); "
        f"best = {objective} within {settings['max_metric_drop']:.1%} of the float model's {task.metric_name}. "
        "Peak RSS: the memory plan's estimate, and as measured in a child process per candidate after one run of "
        "every shape bucket.",
        *(["", timing] if (timing := timing_sentence(settings.get("timing"))) else []),
        *(["", f"Best: {note}."] if (note := settings.get("tie_note")) else []),
        *vocabulary_report_lines(settings.get("vocabulary")),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in results:
        row = [r["name"], r.get("backend", "paddle"), r["precision"], *(f"{r['metrics'][m]:.4f}" for m in metric_names),
               f"{r['size_mb']:.2f}",
               spread_cell(r, "throughput", 1), spread_cell(r, "latency_ms", 2),
               *(optional(r.get(key), spec) for key, spec in MEMORY_COLUMNS),
               f"{r['agreement_with_float']:.2%}",
               f"{r['agreement_with_source']:.2%}" if r["quantized_from"] else "", "✓" if r is best else ""]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


#: report columns a candidate may lack (a measurement that failed or was not asked for): key, format
MEMORY_COLUMNS = (("expected_peak_rss_mb", ".0f"), ("peak_rss_mb", ".0f"))


def spread_cell(result: dict, key: str, digits: int) -> str:
    """A timed figure's cell: median and range over the timing rounds (a bare number if untimed)."""
    spread = result.get(f"{key}_spread")
    if spread:
        return Spread.from_dict(spread).cell(digits)
    return optional(result.get(key), f".{digits}f")


def timing_sentence(timing: Optional[dict]) -> str:
    if not timing:
        return ""
    return (f"Throughput and batch-1 latency: median and range (lowest–highest) over {timing['rounds']} interleaved "
            f"timing rounds on the first {timing['examples']} dev examples (each round times every candidate once, "
            f"in rotated order; predictors {timing['predictors']}); candidates whose ranges overlap the best's are a "
            "tie, which goes to the better metric, then the smaller model.")  # fmt: skip


def optional(value: Optional[float], spec: str) -> str:
    return "" if value is None else format(value, spec)


def prepare_candidate_dirs(candidates: Sequence[Candidate], tokenizer: Any, task: Task, max_seq_length: int) -> None:
    """Give every candidate directory the tokenizer and task record, so each loads on its own."""
    for directory in (candidate.path for candidate in candidates):
        if not os.path.isfile(os.path.join(directory, TASK_INFO_FILE)):
            save_tokenizer(tokenizer, directory)
            write_task_info(directory, task, max_seq_length, verify_tokenizer=True)


def copy_best(best: dict, output_dir: str) -> str:
    target = os.path.join(output_dir, BEST_DIR)
    with atomic_directory(target) as staging:
        for entry in os.listdir(best["path"]):
            source = os.path.join(best["path"], entry)
            if os.path.isfile(source):
                shutil.copy2(source, staging)
        # which backend and precision run best/: the Predictor (infer.py, deploy, serving) reads it
        with open(os.path.join(staging, CANDIDATE_FILE), "w", encoding="utf-8") as handle:
            json.dump({k: best.get(k, "paddle") for k in ("name", "backend", "model_file", "precision", "metrics")},
                      handle, indent=2)  # fmt: skip
    return target


def run(task_type: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> dict:
    """Compress a fine-tuned model directory; returns the report. `task_type` as for ernie3.train.run."""
    import paddle

    compat.patch_for_compression()
    staging_dirs: list[str] = []
    try:
        with paddle.utils.unique_name.guard(), write_errors_as_user_errors("the compress output"):
            return _run(task_type, argv, staging_dirs)
    finally:  # a failed run leaves the previous output as it was, and no half-built one beside it
        for staging in staging_dirs:
            shutil.rmtree(staging, ignore_errors=True)


def _run(task_type: Optional[str], argv: Optional[Sequence[str]], staging_dirs: list[str]) -> dict:
    from paddlenlp.trainer import Trainer, set_seed
    from paddlenlp.utils.log import logger

    arguments = parse_arguments(argv, task_type, extra_dataclasses=EXTRA_ARGUMENTS, for_compression=True)
    model_args, data_args, args = arguments.model, arguments.data, arguments.training
    eval_args, distill_args = arguments.extra[CandidateEvaluationArguments], arguments.extra[DistillationArguments]
    light = arguments.extra[LightweightArguments]
    set_seed(args.seed)
    model_dir = model_args.model_name_or_path
    if check_model_source(model_dir) is None:
        raise UserError(f"--model_name_or_path: compression needs a local fine-tuned model directory, got '{model_dir}'")
    check_fine_tuned_model(arguments.task, model_dir)
    # the model's own max_seq_length and task options (QA windows), unless a flag overrides them
    task, data_args.max_seq_length = model_settings(arguments)
    model_config = read_model_config(model_dir)
    distilling = "distill" in args.strategy
    check_compression_settings(args, pruned_model_config(model_config, args.strategy, distill_args), eval_args)
    check_strategy(args.strategy, args.width_mult_list)
    output_dir = args.output_dir
    # inputs an --overwrite_output_dir must not delete (a pretrained student may be a previous run's student/)
    student = distill_args.student_model if distilling else None
    data_files = [data_args.train_file, data_args.dev_file, light.vocab_corpus,
                  student if student and os.path.isdir(student) else None]  # fmt: skip
    prepare_compress_output(task, output_dir, model_dir, data_files, args.overwrite_output_dir)
    # said up front: the output is many model copies (candidates, DynaBERT checkpoints), built beside any old one
    need_mb = disk_need_mb(arguments, model_weights_mb(model_dir))
    free_mb, warning = check_disk_space(need_mb, output_dir)
    print(f"compress: about {expected_candidates(arguments)} candidates, about {need_mb:.0f} MB on disk in "
          f"{output_dir} ({free_mb:.0f} MB free{'; ' + warning if warning else ''})", flush=True)  # fmt: skip

    trains = "dynabert" in args.strategy or "qat" in args.strategy
    splits = ["dev", "train"] if trains or distilling or light.prune_vocab else ["dev"]
    data = load_run_data(task, model_dir, data_args.max_seq_length, data_args, splits,
                         model_config.get("max_position_embeddings"))  # fmt: skip
    tokenizer, examples, encoded, datasets = data.tokenizer, data.examples, data.encoded, data.datasets
    if light.prune_vocab:
        from ernie3.vocab import check_max_vocab_size

        check_max_vocab_size(light.max_vocab_size, tokenizer)
    if distilling:
        from ernie3.distill import check_augmentation

        check_augmentation(task, distill_args)
    if distilling and distill_args.student_model and os.path.isdir(distill_args.student_model):
        from ernie3.distill import check_student_vocabulary

        check_student_vocabulary(distill_args.student_model, tokenizer)  # before anything is written
    model = load_model(model_dir, task.model_class())
    from ernie3.logs import attach_run_log

    # every fail-fast check passed (a refused run creates nothing): the libraries' INFO lines (PTQ progress, ...)
    # go to the output dir's log file
    log_file = attach_run_log(os.path.join(output_dir, RUN_LOG_FILE))

    # build the new output beside the old one: a failed or killed run leaves the previous output untouched
    final_output_dir = output_dir
    output_dir = args.output_dir = staging_directory_for(final_output_dir)
    args.logging_dir = os.path.join(output_dir, "runs")
    staging_dirs.append(output_dir)
    write_run_record(output_dir, compress_kind(task.task_type), script=command_for(task, "compress"), task=task.name)
    if trains:
        steps_per_epoch = -(-len(datasets["train"]) // args.per_device_train_batch_size)
        total_steps = args.max_steps if args.max_steps > 0 else int(steps_per_epoch * args.num_train_epochs)
        # paddlenlp evaluates and saves each width only every `save_steps`: make sure that happens at least once
        args.save_steps = min(args.save_steps, max(total_steps, 1))

    started = time.time()
    export_inference_model(model, tokenizer, task, os.path.join(output_dir, FLOAT_DIR), data_args.max_seq_length)
    tokenizers = {FLOAT_DIR: tokenizer}  # NNCF calibrates each float model with its own tokenizer
    vocabulary = None
    if light.prune_vocab:  # the rest of the strategy (distillation included) works on the trimmed model
        model, data, vocabulary = trim_for_compression(model, task, data, data_args, light, output_dir)
        tokenizer, examples, encoded, datasets = data.tokenizer, data.examples, data.encoded, data.datasets
    distillation = None
    if distilling:  # the student replaces the teacher for the rest of the strategy; the teacher stays as float/
        from ernie3.distill import distill

        teacher_export = os.path.join(output_dir, VOCAB_DIR if light.prune_vocab else FLOAT_DIR)
        distillation = distill(task, model, model_dir, data, args, distill_args, output_dir, final_output_dir,
                               data_args.max_seq_length, teacher_export, eval_args.num_threads)  # fmt: skip
        model = distillation.student
    to_quantize = STUDENT_DIR if distilling else VOCAB_DIR if light.prune_vocab else FLOAT_DIR
    if "ptq" in args.strategy and "dynabert" not in args.strategy:
        args.input_infer_model_path = os.path.join(output_dir, to_quantize, STATIC_MODEL_PREFIX)
    compat.use_every_core_for_training()  # DynaBERT's training
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=task.data_collator(tokenizer),
        train_dataset=datasets.get("train"),
        eval_dataset=datasets["dev"],
        tokenizer=tokenizer,
        criterion=task.loss_function(),
    )
    # paddlenlp's DynaBERT computes QA head importance on `eval_examples`: dev features with answer positions
    trainer.eval_examples = datasets["dev"]
    if args.strategy != "distill":
        # DynaBERT distils the full-width model into each width with the task's own loss on the outputs
        with compat.dynabert_logit_loss(lambda student, teacher: task.distillation_loss([student], [teacher], {}, 1.0)):
            trainer.compress(custom_evaluate=make_dynamic_evaluator(task, examples["dev"], encoded["dev"]))
        collect_qat_outputs(output_dir, to_quantize)
    compress_seconds = time.time() - started
    output_dir = args.output_dir = publish_staged_output(output_dir, final_output_dir, COMPRESS_LAYOUT)
    if light.prune_vocab:  # the trimmed tokenizer's vocab files moved with the output
        tokenizer = load_model_tokenizer(os.path.join(output_dir, VOCAB_DIR))

    candidates = compress_candidates(output_dir)
    candidates += qat_candidates(output_dir, candidates)
    prepare_candidate_dirs(candidates, tokenizer, task, data_args.max_seq_length)
    float_candidates = [c for c in candidates if c.source is None]
    for source in float_candidates:
        candidates += build_engine_candidates([source], eval_args.engines, task, tokenizers.get(source.name, tokenizer),
                                              examples["dev"], data_args.max_seq_length, eval_args,
                                              args.per_device_eval_batch_size)  # fmt: skip
    if light.int8_embeddings:
        candidates += build_embedding_candidates(candidates)
    compared = []  # evaluated beside the candidates, never picked: the label-only baseline of distillation
    if distillation is not None and distillation.baseline_dir:
        compared.append(Candidate(STUDENT_BASELINE_DIR, os.path.join(output_dir, STUDENT_BASELINE_DIR),
                                  STATIC_MODEL_PREFIX + ".pdmodel"))  # fmt: skip
    logger.info(f"Evaluating {len(candidates) + len(compared)} models on {len(examples['dev'])} dev examples")
    timing: dict = {}
    # the distilled student's and the baseline's results: their difference is reported with its noise
    outputs_of = {STUDENT_DIR: None, STUDENT_BASELINE_DIR: None} if compared else None
    results = evaluate_candidates(task, candidates + compared, examples["dev"], args.per_device_eval_batch_size,
                                  eval_args.num_threads, eval_args.timing_rounds, timing, outputs_of)  # fmt: skip
    results, compared_results = results[: len(candidates)], results[len(candidates) :]
    def measure_rss_of(chosen: Sequence[int]) -> None:
        if not chosen:
            return
        logger.info(f"Measuring the predictor peak RSS of {len(chosen)} candidates, each in a process of its own")
        for index in chosen:
            results[index]["peak_rss_mb"] = measure_peak_rss(candidates[index], args.per_device_eval_batch_size,
                                                             eval_args.num_threads)  # fmt: skip

    # a probe costs a process (~5 s): every candidate when the pick is by memory, else the float model and the pick
    by_memory = light.optimize_for == "memory"
    if light.measure_rss and by_memory:
        measure_rss_of(range(len(candidates)))
    best, tied_with = pick_best(results, eval_args.max_metric_drop, light.optimize_for, task.higher_is_better)
    if light.measure_rss and light.optimize_for == "size" and tied_with:
        # a size tie goes to the lower peak RSS: measured for every tied candidate (the estimate misses engines)
        tied = sorted(index for index, r in enumerate(results) if r["name"] in {best["name"], *tied_with})
        measure_rss_of(tied)
        best, tied_with = pick_best(results, eval_args.max_metric_drop, light.optimize_for, task.higher_is_better)
    if light.measure_rss and not by_memory:
        measure_rss_of(sorted(index for index in {0, results.index(best)} if results[index].get("peak_rss_mb") is None))
    best_dir = copy_best(best, output_dir)
    settings = {
        "strategy": args.strategy, "eval_examples": len(examples["dev"]), "num_threads": eval_args.num_threads,
        "batch_size": args.per_device_eval_batch_size, "max_metric_drop": eval_args.max_metric_drop,
        "width_mult_list": [str(w) for w in args.width_mult_list or []], "algo_list": args.algo_list,
        "batch_size_list": args.batch_size_list, "batch_num_list": args.batch_num_list, "engines": eval_args.engines,
        "optimize_for": light.optimize_for, "int8_embeddings": light.int8_embeddings, "vocabulary": vocabulary,
        "timing_rounds": eval_args.timing_rounds, "timing": timing,
        "tie_note": tie_note(best, tied_with, OBJECTIVE_FIGURES[light.optimize_for], light.optimize_for),
    }  # fmt: skip
    report = {
        "task": task.name, "model_dir": model_dir, "settings": settings, "compress_seconds": round(compress_seconds, 1),
        "candidates": results, "best": best["name"], "best_tied_with": tied_with, "best_dir": best_dir,
    }  # fmt: skip
    markdown = markdown_report(task, results, best, settings)
    if distillation is not None:
        from ernie3.distill import distillation_markdown, distillation_report

        baseline = compared_results[0] if compared_results else None
        report["distillation"] = distillation_report(results, baseline, distillation.settings, task.metric_name)
        if outputs_of is not None:
            from ernie3.metrics import paired_difference

            report["distillation"]["student_vs_baseline"] = paired_difference(
                task.score, task.metric_name, examples["dev"], outputs_of[STUDENT_DIR], outputs_of[STUDENT_BASELINE_DIR],
                seed=args.seed)  # fmt: skip
        markdown += distillation_markdown(report["distillation"])
    write_json_atomic(os.path.join(output_dir, REPORT_JSON), report)
    write_text_atomic(os.path.join(output_dir, REPORT_MD), markdown)
    logger.info(f"Compression report written to {os.path.join(output_dir, REPORT_MD)}\n{markdown}")
    report["markdown"] = markdown
    report["log_file"], report["dev_file"] = log_file, data_args.dev_file  # for the summary, not report.json
    return report
